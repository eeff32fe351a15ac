//! The audit log of statements that change something: DDL, DML and grants, with the user, the
//! client and the outcome. Written only when a principal is set (authentication on).

use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::Statement;
use polder_catalog::{AuditRecord, CatalogStore};
use polder_core::{ErrorKind, HasErrorKind};

use crate::access;
use crate::error::EngineError;

/// The audit action of `statement`, or `None` for statements that are not audited (queries).
pub(crate) fn audited_action(statement: &DFStatement) -> Option<&'static str> {
    let DFStatement::Statement(ast) = statement else {
        return None;
    };
    match ast.as_ref() {
        Statement::Insert(_)
        | Statement::Update(_)
        | Statement::Delete(_)
        | Statement::Merge(_)
        | Statement::Truncate(_) => Some("dml"),
        Statement::CreateTable(_)
        | Statement::CreateView(_)
        | Statement::CreateSchema { .. }
        | Statement::Drop { .. }
        | Statement::AlterTable(_) => Some("ddl"),
        Statement::Grant(_) | Statement::Revoke(_) => Some("grant"),
        _ => None,
    }
}

/// Appends one entry; a failure to write the log is logged, never the statement's failure.
pub(crate) async fn record(
    store: &CatalogStore,
    action: &str,
    statement: &str,
    error: Option<&EngineError>,
) {
    let Some(current) = access::current() else {
        return;
    };
    let principal = &current.principal;
    let action = match error {
        Some(error) if error.kind() == ErrorKind::PermissionDenied => "denied",
        _ => action,
    };
    let mut entry = AuditRecord::new(&principal.user, &principal.client, action, statement);
    if let Some(error) = error {
        entry = entry.failed(&error.to_string());
    }
    if let Err(err) = store.append_audit(&entry).await {
        tracing::warn!(error = %err, "cannot write the audit log");
    }
}
