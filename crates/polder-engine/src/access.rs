//! Authorization: who may read and change what. Checked where every query path meets — when a
//! table name is resolved to a table — so joins, subqueries, CTEs, views and every listener
//! are covered by one check.
//!
//! A request runs inside [`run_as`]; without it (the CLI on a local data directory, or
//! authentication switched off) the engine runs with full rights.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{
    FromTable, ObjectName, ObjectType, SchemaName, Statement, TableFactor, TableObject,
};
use polder_catalog::{ColumnMaskRecord, GrantRecord, RowPolicyRecord};
use polder_core::{Principal, Privilege, Role};

use crate::error::{EngineError, Result};

tokio::task_local! {
    static ACCESS: Arc<Access>;
}

/// The rights a statement runs with.
#[derive(Debug, Clone)]
pub struct Access {
    /// Whose rights table access is checked with (a view's owner while its definition is
    /// planned).
    pub principal: Principal,
    /// Who asked: row policies and column masks apply to this user even inside views.
    pub reader: Principal,
    /// The table the statement writes (`schema`, `table`) and the privilege that needs.
    pub write_target: Option<(String, String, Privilege)>,
    /// The engine audits the statement as a whole (DDL, DML, grants), refusals included, so a
    /// refused table needs no entry of its own.
    pub statement_audited: bool,
    /// The statement also reads its write target (`INSERT INTO t SELECT ... FROM t`).
    pub reads_write_target: bool,
}

impl Access {
    pub fn new(principal: Principal) -> Self {
        Access {
            reader: principal.clone(),
            principal,
            write_target: None,
            statement_audited: false,
            reads_write_target: false,
        }
    }
}

/// Runs `work` as `principal`: every table it resolves is checked against the principal's
/// role and grants.
pub async fn run_as<F: Future>(principal: Principal, work: F) -> F::Output {
    ACCESS.scope(Arc::new(Access::new(principal)), work).await
}

/// Runs `work` with `access` (nested scopes replace the outer one).
pub(crate) async fn run_with<F: Future>(access: Access, work: F) -> F::Output {
    ACCESS.scope(Arc::new(access), work).await
}

/// Runs `work` with full rights (work the system does on its own behalf, such as building a
/// reflection, which must hold every row whoever asked for it).
pub(crate) async fn run_with_full_rights<F: Future>(work: F) -> F::Output {
    run_with(Access::new(Principal::system()), work).await
}

/// The rights of the running statement; `None` means full rights.
pub fn current() -> Option<Arc<Access>> {
    ACCESS.try_with(|access| access.clone()).ok()
}

/// The principal of the running statement ([`Principal::system`] without one).
pub fn current_principal() -> Principal {
    current()
        .map(|access| access.principal.clone())
        .unwrap_or_else(Principal::system)
}

/// The row policies and column masks of one table.
#[derive(Debug, Default, Clone)]
pub(crate) struct TableRules {
    pub policies: Vec<RowPolicyRecord>,
    pub masks: Vec<ColumnMaskRecord>,
}

/// Users' roles and attributes, the grants, row policies and column masks, as of one catalog
/// generation.
#[derive(Debug, Default)]
pub(crate) struct SecurityListing {
    pub roles: HashMap<String, Role>,
    pub grants: Vec<GrantRecord>,
    /// By (schema, table).
    pub rules: HashMap<(String, String), TableRules>,
    /// user -> attribute -> value, for `current_user_attribute`.
    pub attributes: HashMap<String, std::collections::BTreeMap<String, String>>,
}

impl SecurityListing {
    /// Whether `principal` holds `needed` on `schema.table` by a grant to it or to its role.
    fn granted(&self, principal: &Principal, needed: Privilege, schema: &str, table: &str) -> bool {
        self.grants.iter().any(|grant| {
            let grantee_matches = match grant.grantee_kind.as_str() {
                "user" => grant.grantee == principal.user,
                "role" => grant.grantee == principal.role.as_str(),
                _ => false,
            };
            let object_matches =
                grant.schema == schema && (grant.table.is_empty() || grant.table == table);
            let privilege_covers = grant
                .privilege
                .parse::<Privilege>()
                .is_ok_and(|held| held.covers(needed));
            grantee_matches && object_matches && privilege_covers
        })
    }

    /// Checks that `access` may use `schema.table`: read it, or write it when it is the
    /// statement's write target.
    pub fn check_table(&self, access: &Access, schema: &str, table: &str) -> Result<()> {
        let principal = &access.principal;
        let needed = match &access.write_target {
            Some((target_schema, target_table, privilege))
                if target_schema == schema && target_table == table =>
            {
                *privilege
            }
            _ => Privilege::Select,
        };
        let allowed = match principal.role {
            Role::Admin | Role::Engineer => true,
            Role::Viewer => false,
            // An analyst's own schema is its sandbox; everything else needs a grant.
            Role::Analyst => {
                schema == principal.user || self.granted(principal, needed, schema, table)
            }
        };
        if allowed {
            return Ok(());
        }
        let action = match needed {
            Privilege::Select => "read",
            Privilege::Insert => "insert into",
            Privilege::All => "change",
        };
        Err(EngineError::PermissionDenied(format!(
            "user '{}' ({}) may not {action} {schema}.{table}: it needs {needed} on the table or its schema (GRANT {needed} ON TABLE {schema}.{table} TO {})",
            principal.user, principal.role, principal.user
        )))
    }

    /// The rights a view's definition is planned with: its owner's, so that a view publishes
    /// what its owner may read and an analyst's own view reaches only what the analyst may.
    ///
    /// The reader stays the reader: row policies and masks under the view apply to it.
    pub fn owner_access(&self, owner: Option<&str>, reader: Option<Principal>) -> Access {
        let mut access = match owner.and_then(|name| self.roles.get(name).map(|role| (name, *role)))
        {
            Some((name, role)) => Access::new(Principal::new(name, role, "view owner")),
            None => Access::new(Principal::system()),
        };
        if let Some(reader) = reader {
            access.reader = reader;
        }
        access
    }

    /// The rules of `schema.table`, when it has any.
    pub fn rules_of(&self, schema: &str, table: &str) -> Option<&TableRules> {
        self.rules.get(&(schema.to_string(), table.to_string()))
    }
}

/// Statements that change the catalog: admins and engineers; analysts only in their own
/// schema (views and the schema itself).
///
/// `analyst_may` says whether this change is one an analyst may make in its own schema
/// (creating the schema itself, creating or dropping a view).
pub(crate) fn check_catalog_change(schema: &str, what: &str, analyst_may: bool) -> Result<()> {
    let Some(access) = current() else {
        return Ok(());
    };
    let principal = &access.principal;
    let allowed = principal.is_engineer_or_admin()
        || (principal.role == Role::Analyst && schema == principal.user && analyst_may);
    if allowed {
        return Ok(());
    }
    Err(EngineError::PermissionDenied(format!(
        "user '{}' ({}) may not {what}: catalog changes need the engineer or admin role{}",
        principal.user,
        principal.role,
        if principal.role == Role::Analyst {
            format!(
                " (an analyst may create views in its own schema '{}')",
                principal.user
            )
        } else {
            String::new()
        }
    )))
}

/// Refuses SQL to roles that may not run it.
pub(crate) fn check_may_run_sql() -> Result<()> {
    match current() {
        Some(access) if !access.principal.may_run_sql() => {
            Err(EngineError::PermissionDenied(format!(
                "user '{}' has the viewer role, which opens dashboards but does not run SQL",
                access.principal.user
            )))
        }
        _ => Ok(()),
    }
}

/// Only admins change grants and read the audit log.
pub(crate) fn check_admin(what: &str) -> Result<()> {
    match current() {
        Some(access) if !access.principal.is_admin() => {
            Err(EngineError::PermissionDenied(format!(
                "user '{}' ({}) may not {what}: that needs the admin role",
                access.principal.user, access.principal.role
            )))
        }
        _ => Ok(()),
    }
}

/// `s.t` (or `t` in the default schema) as (schema, table), as the engine names tables.
pub(crate) fn schema_and_table(name: &ObjectName) -> Result<(String, String)> {
    let name = crate::engine::Engine::table_name(&crate::engine::object_name_to_reference(name)?)?;
    Ok((name.schema, name.table))
}

/// The name of a schema or a user (the last part, `polder.gold` is `gold`), normalized as
/// DataFusion normalizes identifiers; the engine checks the catalog part itself.
pub(crate) fn plain_name(name: &ObjectName) -> Result<String> {
    Ok(crate::engine::object_name_to_reference(name)?
        .table()
        .to_string())
}

fn table_factor_name(factor: &TableFactor) -> Option<&ObjectName> {
    match factor {
        TableFactor::Table { name, .. } => Some(name),
        _ => None,
    }
}

fn write_target(
    name: Option<&ObjectName>,
    privilege: Privilege,
) -> Result<Option<(String, String, Privilege)>> {
    name.map(|name| {
        let (schema, table) = schema_and_table(name)?;
        Ok((schema, table, privilege))
    })
    .transpose()
}

/// Checks a statement against the running principal's role and returns the rights it runs
/// with (its write target set); `None` when no principal is set (full rights).
pub(crate) fn authorize_statement(statement: &DFStatement) -> Result<Option<Access>> {
    let Some(current) = current() else {
        return Ok(None);
    };
    check_may_run_sql()?;
    if let DFStatement::Explain(explain) = statement {
        // EXPLAIN ANALYZE runs what it explains: it needs that statement's rights.
        return authorize_statement(&explain.statement);
    }
    let mut access = (*current).clone();
    let DFStatement::Statement(ast) = statement else {
        return Ok(Some(access));
    };
    match ast.as_ref() {
        Statement::Insert(insert) => {
            let name = match &insert.table {
                TableObject::TableName(name) => Some(name),
                _ => None,
            };
            access.write_target = write_target(name, Privilege::Insert)?;
            if let (Some((schema, table, _)), Some(source)) = (&access.write_target, &insert.source)
            {
                let mut reads_target = false;
                let _ = datafusion::sql::sqlparser::ast::visit_relations(source, |relation| {
                    // Time travel names (`t@v3`, after rewriting) read the same table.
                    let read = crate::engine::object_name_to_reference(relation).ok();
                    if let Some(read) = read {
                        let read_schema = read.schema().unwrap_or(polder_core::DEFAULT_SCHEMA);
                        let read_table = read.table().split('@').next().unwrap_or_default();
                        if read_schema == schema && read_table == table {
                            reads_target = true;
                        }
                    }
                    std::ops::ControlFlow::<()>::Continue(())
                });
                access.reads_write_target = reads_target;
            }
        }
        Statement::Update(update) => {
            access.write_target =
                write_target(table_factor_name(&update.table.relation), Privilege::All)?;
        }
        Statement::Delete(delete) => {
            let tables = match &delete.from {
                FromTable::WithFromKeyword(tables) | FromTable::WithoutKeyword(tables) => tables,
            };
            let first = tables.first().and_then(|t| table_factor_name(&t.relation));
            access.write_target = write_target(first, Privilege::All)?;
        }
        Statement::Merge(merge) => {
            access.write_target = write_target(table_factor_name(&merge.table), Privilege::All)?;
        }
        Statement::Truncate(truncate) => {
            let first = truncate.table_names.first().map(|t| &t.name);
            access.write_target = write_target(first, Privilege::All)?;
        }
        Statement::CreateSchema { schema_name, .. } => {
            let name = match schema_name {
                SchemaName::Simple(name) | SchemaName::NamedAuthorization(name, _) => {
                    plain_name(name)?
                }
                SchemaName::UnnamedAuthorization(ident) => ident.value.clone(),
            };
            check_catalog_change(&name, &format!("create schema {name}"), true)?;
        }
        Statement::CreateTable(create) => {
            let (schema, table) = schema_and_table(&create.name)?;
            check_catalog_change(&schema, &format!("create table {schema}.{table}"), false)?;
        }
        Statement::CreateView(create) => {
            let (schema, table) = schema_and_table(&create.name)?;
            check_catalog_change(&schema, &format!("create view {schema}.{table}"), true)?;
        }
        Statement::AlterTable(alter) => {
            let (schema, table) = schema_and_table(&alter.name)?;
            check_catalog_change(&schema, &format!("alter {schema}.{table}"), false)?;
        }
        Statement::Drop {
            object_type, names, ..
        } => {
            for name in names {
                let schema = match object_type {
                    ObjectType::Schema => plain_name(name)?,
                    _ => schema_and_table(name)?.0,
                };
                let is_view = matches!(object_type, ObjectType::View);
                check_catalog_change(&schema, &format!("drop {object_type} {name}"), is_view)?;
            }
        }
        Statement::Grant(_) | Statement::Revoke(_) => check_admin("change grants")?,
        // Reflections are checked by the engine (engineers may manage them).
        Statement::Call(call)
            if call
                .name
                .to_string()
                .eq_ignore_ascii_case(crate::reflection::manage::REFLECTION_PROCEDURE) => {}
        Statement::CreatePolicy(_) | Statement::DropPolicy(_) | Statement::Call(_) => {
            check_admin("change row policies and column masks")?
        }
        _ => {}
    }
    Ok(Some(access))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(kind: &str, grantee: &str, privilege: &str, schema: &str, table: &str) -> GrantRecord {
        GrantRecord {
            grantee_kind: kind.to_string(),
            grantee: grantee.to_string(),
            privilege: privilege.to_string(),
            schema: schema.to_string(),
            table: table.to_string(),
            granted_by: "admin".to_string(),
            created_at: 0,
        }
    }

    #[test]
    fn analysts_need_grants_and_viewers_get_nothing() {
        let listing = SecurityListing {
            rules: HashMap::new(),
            attributes: HashMap::new(),
            roles: HashMap::new(),
            grants: vec![
                grant("user", "ann", "SELECT", "gold", ""),
                grant("role", "analyst", "INSERT", "silver", "events"),
            ],
        };
        let ann = Access::new(Principal::new("ann", Role::Analyst, "test"));
        assert!(listing.check_table(&ann, "gold", "orders").is_ok());
        assert!(listing.check_table(&ann, "ann", "mine").is_ok());
        let err = listing.check_table(&ann, "bronze", "raw").unwrap_err();
        assert!(err.to_string().contains("may not read bronze.raw"), "{err}");
        // INSERT on silver.events is granted to the role; reading it is not.
        assert!(listing.check_table(&ann, "silver", "events").is_err());
        let mut writing = ann.clone();
        writing.write_target = Some(("silver".into(), "events".into(), Privilege::Insert));
        assert!(listing.check_table(&writing, "silver", "events").is_ok());
        writing.write_target = Some(("silver".into(), "events".into(), Privilege::All));
        assert!(listing.check_table(&writing, "silver", "events").is_err());

        let viewer = Access::new(Principal::new("vic", Role::Viewer, "test"));
        assert!(listing.check_table(&viewer, "gold", "orders").is_err());
        let engineer = Access::new(Principal::new("eve", Role::Engineer, "test"));
        assert!(listing.check_table(&engineer, "bronze", "raw").is_ok());
    }
}
