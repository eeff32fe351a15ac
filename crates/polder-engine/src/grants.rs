//! `GRANT` and `REVOKE` on schemas and tables, to users or roles.

use datafusion::sql::sqlparser::ast::{
    Action, Grant, GrantObjects, Grantee, GranteeName, GranteesType, Privileges, Revoke,
};
use polder_catalog::GrantRecord;
use polder_core::{Privilege, Role};

use crate::access::{self, plain_name, schema_and_table};
use crate::engine::{CommandOutcome, Engine};
use crate::error::{EngineError, Result};

impl Engine {
    pub(crate) async fn grant(&self, grant: &Grant) -> Result<CommandOutcome> {
        access::check_admin("change grants")?;
        let records =
            self.grant_records(&grant.privileges, grant.objects.as_ref(), &grant.grantees)?;
        self.catalog.store.add_grants(&records).await?;
        self.catalog.reload().await?;
        Ok(CommandOutcome::new("GRANT"))
    }

    pub(crate) async fn revoke(&self, revoke: &Revoke) -> Result<CommandOutcome> {
        access::check_admin("change grants")?;
        let records = self.grant_records(
            &revoke.privileges,
            revoke.objects.as_ref(),
            &revoke.grantees,
        )?;
        self.catalog.store.remove_grants(&records).await?;
        self.catalog.reload().await?;
        Ok(CommandOutcome::new("REVOKE"))
    }

    /// One record per (privilege, object, grantee), with every name checked.
    fn grant_records(
        &self,
        privileges: &Privileges,
        objects: Option<&GrantObjects>,
        grantees: &[Grantee],
    ) -> Result<Vec<GrantRecord>> {
        let privileges: Vec<Privilege> = match privileges {
            Privileges::All { .. } => vec![Privilege::All],
            Privileges::Actions(actions) => actions
                .iter()
                .map(|action| match action {
                    Action::Select { .. } => Ok(Privilege::Select),
                    Action::Insert { .. } => Ok(Privilege::Insert),
                    other => Err(EngineError::Unsupported(format!(
                        "privilege {other}; Polder grants SELECT, INSERT and ALL"
                    ))),
                })
                .collect::<Result<_>>()?,
        };
        let listing = self.catalog.listing();
        let mut objects_named: Vec<(String, String)> = Vec::new();
        match objects {
            Some(GrantObjects::Schemas(schemas)) => {
                for schema in schemas {
                    let schema = plain_name(schema)?;
                    if !listing.schemas.contains_key(&schema) {
                        return Err(EngineError::NotFound(format!(
                            "schema '{schema}' does not exist"
                        )));
                    }
                    objects_named.push((schema, String::new()));
                }
            }
            Some(GrantObjects::Tables(tables)) | Some(GrantObjects::Views(tables)) => {
                for table in tables {
                    let (schema, name) = schema_and_table(table)?;
                    if listing.entry(&schema, &name).is_none() {
                        return Err(EngineError::NotFound(format!(
                            "table or view '{schema}.{name}' does not exist"
                        )));
                    }
                    objects_named.push((schema, name));
                }
            }
            _ => {
                return Err(EngineError::Unsupported(
                    "this grant object; use ON SCHEMA s or ON TABLE s.t".to_string(),
                ));
            }
        }
        let security = self.catalog.security();
        let mut named_grantees = Vec::new();
        for grantee in grantees {
            let name = match &grantee.name {
                Some(GranteeName::ObjectName(name)) => plain_name(name)?,
                _ => {
                    return Err(EngineError::InvalidInput(format!(
                        "grantee '{grantee}': name a user or a role"
                    )));
                }
            };
            let is_role = name.parse::<Role>().is_ok();
            let kind = match grantee.grantee_type {
                GranteesType::Role => "role",
                GranteesType::User => "user",
                _ if is_role => "role",
                _ => "user",
            };
            if kind == "role" && !is_role {
                return Err(EngineError::InvalidInput(format!(
                    "role '{name}' does not exist; roles are admin, engineer, analyst, viewer"
                )));
            }
            if kind == "user" && !security.roles.contains_key(&name) {
                return Err(EngineError::NotFound(format!(
                    "user '{name}' does not exist"
                )));
            }
            named_grantees.push((kind, name));
        }
        let granted_by = access::current_principal().user;
        let mut records = Vec::new();
        for privilege in &privileges {
            for (schema, table) in &objects_named {
                for (kind, grantee) in &named_grantees {
                    records.push(GrantRecord {
                        grantee_kind: kind.to_string(),
                        grantee: grantee.clone(),
                        privilege: privilege.as_str().to_string(),
                        schema: schema.clone(),
                        table: table.clone(),
                        granted_by: granted_by.clone(),
                        created_at: chrono::Utc::now().timestamp_millis(),
                    });
                }
            }
        }
        Ok(records)
    }
}
