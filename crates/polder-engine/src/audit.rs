//! The audit log of statements that change something: DDL, DML and grants, with the user, the
//! client and the outcome. Written only when a principal is set (authentication on).

use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::Statement;
use polder_catalog::{AuditRecord, CatalogStore};
use polder_core::{ErrorKind, HasErrorKind};

use crate::access::{self, Access};
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
        Statement::CreatePolicy(_) | Statement::DropPolicy(_) | Statement::Call(_) => {
            Some("policy")
        }
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

/// Records a table refused to a query. The query fails whether or not the log is written, so
/// the write runs beside it instead of holding it up.
pub(crate) fn record_refused_table(
    store: &CatalogStore,
    access: &Access,
    schema: &str,
    table: &str,
    error: &EngineError,
) {
    let entry = AuditRecord::new(
        &access.principal.user,
        &access.principal.client,
        "denied",
        &format!("{schema}.{table}"),
    )
    .failed(&error.to_string());
    let store = store.clone();
    tokio::spawn(async move {
        if let Err(err) = store.append_audit(&entry).await {
            tracing::warn!(error = %err, "cannot write the audit log");
        }
    });
}
