//! Row access policies and column masks.
//!
//! A governed table is replaced, where its name is resolved, by a plan that filters its rows
//! with the policies that apply to the reader and replaces masked columns by their mask. Every
//! query path (joins, subqueries, CTEs, views, time travel, every listener) resolves names
//! through the catalog, so none can reach the raw table. `current_user()`,
//! `current_user_role()` and `current_user_attribute('name')` in a predicate or a mask are bound
//! to the reader's values before planning, so the plan holds only constants.
//!
//! - `CREATE POLICY name ON s.t [TO user_or_role, ...] USING (predicate)` /
//!   `DROP POLICY [IF EXISTS] name ON s.t`: a reader sees the rows that satisfy at least one
//!   policy that applies to it; a table with policies of which none applies shows no rows.
//! - `CREATE COLUMN MASK name ON s.t (column) USING (expression) [EXEMPT user_or_role, ...]` /
//!   `DROP COLUMN MASK [IF EXISTS] name ON s.t` (rewritten to `CALL` statements, see
//!   [`crate::rewrite`]).
//!
//! Admins see raw data (they may do everything); so does a process without authentication.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::arrow::compute::can_cast_types;
use datafusion::catalog::TableProvider;
use datafusion::common::tree_node::TreeNode;
use datafusion::common::{DFSchema, TableReference};
use datafusion::datasource::{ViewTable, provider_as_source};
use datafusion::execution::SessionState;
use datafusion::logical_expr::{Expr, ExprSchemable, LogicalPlanBuilder, cast, lit};
use datafusion::sql::sqlparser::ast::{
    CreatePolicy, DropPolicy, Expr as SqlExpr, Function, FunctionArg, FunctionArgExpr,
    FunctionArguments, Owner, Value, VisitMut, VisitorMut,
};
use datafusion::sql::sqlparser::parser::Parser;
use polder_catalog::{ColumnMaskRecord, RowPolicyRecord, TableKind};
use polder_core::{Principal, Privilege, Role};

use crate::access::{self, Access, SecurityListing, TableRules, schema_and_table};
use crate::dialect::PolderDialect;
use crate::engine::{CommandOutcome, Engine};
use crate::error::{EngineError, Result};

/// `CALL` names the mask statements are rewritten to.
pub(crate) const CREATE_MASK_PROCEDURE: &str = "polder_create_column_mask";
pub(crate) const DROP_MASK_PROCEDURE: &str = "polder_drop_column_mask";

/// Whether `name` (a user or a role) is in `list`.
fn listed(list: &[String], principal: &Principal) -> bool {
    list.iter()
        .any(|entry| entry == &principal.user || entry == principal.role.as_str())
}

/// The provider `access.reader` sees for `schema.table`, which has `rules`.
pub(crate) fn govern(
    provider: Arc<dyn TableProvider>,
    schema: &str,
    table: &str,
    rules: &TableRules,
    access: &Access,
    security: &SecurityListing,
    state: &SessionState,
) -> Result<Arc<dyn TableProvider>> {
    let reader = &access.reader;
    if let Some((target_schema, target_table, privilege)) = &access.write_target
        && target_schema == schema
        && target_table == table
    {
        // INSERT adds rows and shows none; changing or deleting rows would reach rows the
        // policies hide, so those writes are for admins only. An INSERT that also reads the
        // table would read it raw through the same provider: refused too.
        if *privilege == Privilege::Insert && !access.reads_write_target {
            return Ok(provider);
        }
        if *privilege == Privilege::Insert {
            return Err(EngineError::PermissionDenied(format!(
                "user '{}' ({}) may not insert into {schema}.{table} rows selected from {schema}.{table} itself: it has row policies or column masks",
                reader.user, reader.role
            )));
        }
        return Err(EngineError::PermissionDenied(format!(
            "user '{}' ({}) may not update, delete or merge rows of {schema}.{table}: it has row policies or column masks, so only admins change its rows",
            reader.user, reader.role
        )));
    }
    let no_attributes = BTreeMap::new();
    let attributes = security
        .attributes
        .get(&reader.user)
        .unwrap_or(&no_attributes);
    let reference = TableReference::partial(schema, table);
    let mut builder =
        LogicalPlanBuilder::scan(reference.clone(), provider_as_source(provider), None)?;
    let columns = builder.schema().clone();

    if !rules.policies.is_empty() {
        let mut predicate: Option<Expr> = None;
        for policy in rules
            .policies
            .iter()
            .filter(|p| p.applies_to.is_empty() || listed(&p.applies_to, reader))
        {
            let expr = plan_expression(&policy.predicate, reader, attributes, &columns, state)
                .map_err(|e| broken_rule("row policy", &policy.name, schema, table, e))?;
            predicate = Some(match predicate {
                None => expr,
                Some(previous) => previous.or(expr),
            });
        }
        // Policies exist but none is for this reader: it sees no rows.
        builder = builder.filter(predicate.unwrap_or_else(|| lit(false)))?;
    }

    if !rules.masks.is_empty() {
        let mut projection = Vec::with_capacity(columns.fields().len());
        for (qualifier, field) in columns.iter() {
            let column = Expr::Column(datafusion::common::Column::new(
                qualifier.cloned(),
                field.name(),
            ));
            let mask = rules
                .masks
                .iter()
                .find(|m| &m.column == field.name() && !listed(&m.exempt, reader));
            projection.push(match mask {
                Some(mask) => {
                    let expr =
                        plan_expression(&mask.expression, reader, attributes, &columns, state)
                            .map_err(|e| {
                                broken_rule("column mask", &mask.name, schema, table, e)
                            })?;
                    cast(expr, field.data_type().clone()).alias(field.name())
                }
                None => column,
            });
        }
        if rules
            .masks
            .iter()
            .any(|m| columns.field_with_unqualified_name(&m.column).is_err())
        {
            // A masked column that vanished (the table was replaced): refuse rather than guess.
            return Err(EngineError::InvalidInput(format!(
                "{schema}.{table} has a column mask on a column it no longer has; an admin must drop or recreate the mask"
            )));
        }
        builder = builder.project(projection)?;
    }
    let plan = builder.build()?;
    Ok(Arc::new(ViewTable::new(plan, None)))
}

fn broken_rule(kind: &str, name: &str, schema: &str, table: &str, err: EngineError) -> EngineError {
    EngineError::InvalidInput(format!(
        "{kind} '{name}' on {schema}.{table} cannot be applied (the table may have changed): {err}"
    ))
}

/// Replaces `current_user()`, `session_user`, `current_user_role()` and
/// `current_user_attribute('name')` by the reader's values.
struct BindReader<'a> {
    reader: &'a Principal,
    attributes: &'a BTreeMap<String, String>,
    error: Option<String>,
}

fn string_literal(value: Option<&str>) -> SqlExpr {
    match value {
        Some(value) => SqlExpr::Value(Value::SingleQuotedString(value.to_string()).into()),
        None => SqlExpr::Value(Value::Null.into()),
    }
}

fn function_arguments(function: &Function) -> Vec<&FunctionArgExpr> {
    match &function.args {
        FunctionArguments::List(list) => list
            .args
            .iter()
            .map(|arg| match arg {
                FunctionArg::Unnamed(expr)
                | FunctionArg::Named { arg: expr, .. }
                | FunctionArg::ExprNamed { arg: expr, .. } => expr,
            })
            .collect(),
        _ => Vec::new(),
    }
}

impl VisitorMut for BindReader<'_> {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut SqlExpr) -> ControlFlow<()> {
        let SqlExpr::Function(function) = expr else {
            return ControlFlow::Continue(());
        };
        let name = function.name.to_string().to_ascii_lowercase();
        let replacement = match name.as_str() {
            "current_user" | "session_user" | "user" => {
                Some(string_literal(Some(&self.reader.user)))
            }
            "current_user_role" | "current_role" => {
                Some(string_literal(Some(self.reader.role.as_str())))
            }
            "current_user_attribute" => match function_arguments(function).as_slice() {
                [FunctionArgExpr::Expr(SqlExpr::Value(value))] => match &value.value {
                    Value::SingleQuotedString(attribute) => Some(string_literal(
                        self.attributes.get(attribute).map(String::as_str),
                    )),
                    _ => None,
                },
                _ => None,
            }
            .or_else(|| {
                self.error = Some(
                    "current_user_attribute takes one attribute name in single quotes".to_string(),
                );
                None
            }),
            _ => None,
        };
        if let Some(replacement) = replacement {
            *expr = SqlExpr::Nested(Box::new(replacement));
        }
        ControlFlow::Continue(())
    }
}

/// Plans a policy or mask expression over `columns`, bound to `reader`.
fn plan_expression(
    sql: &str,
    reader: &Principal,
    attributes: &BTreeMap<String, String>,
    columns: &DFSchema,
    state: &SessionState,
) -> Result<Expr> {
    let dialect = PolderDialect::default();
    let mut ast = Parser::new(&dialect)
        .try_with_sql(sql)
        .and_then(|mut parser| parser.parse_expr())
        .map_err(|e| EngineError::Syntax(e.to_string()))?;
    let mut binder = BindReader {
        reader,
        attributes,
        error: None,
    };
    let _ = ast.visit(&mut binder);
    if let Some(error) = binder.error {
        return Err(EngineError::InvalidInput(error));
    }
    let expr = state.create_logical_expr(&ast.to_string(), columns)?;
    if contains_subquery(&expr) {
        return Err(EngineError::Unsupported(
            "subqueries in row policies and column masks; use the table's columns and current_user_attribute()".to_string(),
        ));
    }
    Ok(expr)
}

fn contains_subquery(expr: &Expr) -> bool {
    let mut found = false;
    let _ = expr.apply(|e| {
        if matches!(
            e,
            Expr::ScalarSubquery(_) | Expr::Exists(_) | Expr::InSubquery(_)
        ) {
            found = true;
        }
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    });
    found
}

/// Users and roles named in `TO` / `EXEMPT`: each must be a role or an existing user.
fn principals_named(names: &[String], security: &SecurityListing) -> Result<Vec<String>> {
    names
        .iter()
        .map(|name| {
            let name = name.to_lowercase();
            if name == "public" {
                return Ok(None);
            }
            if name.parse::<Role>().is_ok() || security.roles.contains_key(&name) {
                Ok(Some(name))
            } else {
                Err(EngineError::NotFound(format!(
                    "'{name}' is neither a role (admin, engineer, analyst, viewer) nor a user"
                )))
            }
        })
        .filter_map(|r| r.transpose())
        .collect()
}

impl Engine {
    /// A table (not a view) the rules can be attached to, and its columns.
    async fn governed_table(&self, schema: &str, table: &str) -> Result<DFSchema> {
        let listing = self.catalog.listing();
        let entry = listing.entry(schema, table).ok_or_else(|| {
            EngineError::NotFound(format!("table '{schema}.{table}' does not exist"))
        })?;
        if entry.kind != TableKind::Table {
            return Err(EngineError::InvalidInput(format!(
                "'{schema}.{table}' is a view: put row policies and column masks on the tables it reads"
            )));
        }
        let provider = self
            .session
            .table_provider(TableReference::partial(schema, table))
            .await?;
        Ok(DFSchema::try_from_qualified_schema(
            TableReference::partial(schema, table),
            &provider.schema(),
        )?)
    }

    /// Plans a policy or mask expression once, as a sample reader, and returns its type: a
    /// typo fails when the rule is created, not in someone's dashboard.
    fn expression_type(
        &self,
        sql: &str,
        columns: &DFSchema,
    ) -> Result<datafusion::arrow::datatypes::DataType> {
        let sample = Principal::new("rule_check", Role::Analyst, "check");
        let expr = plan_expression(
            sql,
            &sample,
            &BTreeMap::new(),
            columns,
            &self.session.state(),
        )?;
        Ok(expr.to_field(columns)?.1.data_type().clone())
    }

    pub(crate) async fn create_policy(&self, policy: &CreatePolicy) -> Result<CommandOutcome> {
        access::check_admin("create row policies")?;
        if policy.command.is_some() || policy.with_check.is_some() {
            return Err(EngineError::Unsupported(
                "FOR and WITH CHECK in CREATE POLICY: a Polder policy filters what readers see"
                    .to_string(),
            ));
        }
        if let Some(kind) = &policy.policy_type
            && kind.to_string().eq_ignore_ascii_case("restrictive")
        {
            return Err(EngineError::Unsupported(
                "AS RESTRICTIVE: policies are permissive (a row is visible when one applicable policy allows it); combine conditions in one predicate".to_string(),
            ));
        }
        let predicate = policy.using.as_ref().ok_or_else(|| {
            EngineError::InvalidInput("CREATE POLICY needs USING (predicate)".to_string())
        })?;
        let (schema, table) = schema_and_table(&policy.table_name)?;
        let columns = self.governed_table(&schema, &table).await?;
        let security = self.catalog.security();
        let named: Vec<String> = policy
            .to
            .iter()
            .flatten()
            .map(|owner| match owner {
                Owner::Ident(ident) => ident.value.clone(),
                other => other.to_string(),
            })
            .collect();
        let applies_to = principals_named(&named, &security)?;
        let predicate = predicate.to_string();
        let data_type = self.expression_type(&predicate, &columns)?;
        if data_type != datafusion::arrow::datatypes::DataType::Boolean {
            return Err(EngineError::InvalidInput(format!(
                "a policy's USING must be a condition (boolean), not {data_type}"
            )));
        }
        let principal = access::current_principal();
        self.catalog
            .store
            .create_row_policy(&RowPolicyRecord {
                schema,
                table,
                name: crate::engine::normalize_ident(&policy.name),
                predicate,
                applies_to,
                created_by: principal.user,
                created_at: polder_catalog::now(),
            })
            .await?;
        self.catalog.reload().await?;
        Ok(CommandOutcome::new("CREATE POLICY"))
    }

    pub(crate) async fn drop_policy(&self, drop: &DropPolicy) -> Result<CommandOutcome> {
        access::check_admin("drop row policies")?;
        let (schema, table) = schema_and_table(&drop.table_name)?;
        let name = crate::engine::normalize_ident(&drop.name);
        let dropped = self
            .catalog
            .store
            .drop_row_policy(&schema, &table, &name)
            .await?;
        if !dropped && !drop.if_exists {
            return Err(EngineError::NotFound(format!(
                "row policy '{name}' on {schema}.{table} does not exist"
            )));
        }
        self.catalog.reload().await?;
        Ok(CommandOutcome::new("DROP POLICY"))
    }

    /// `CALL polder_create_column_mask(name, s.t, column, (expression), exempt...)` and
    /// `CALL polder_drop_column_mask(name, s.t, if_exists)`; `None` for other procedures.
    pub(crate) async fn column_mask_call(&self, call: &Function) -> Result<Option<CommandOutcome>> {
        let procedure = call.name.to_string().to_ascii_lowercase();
        if procedure != CREATE_MASK_PROCEDURE && procedure != DROP_MASK_PROCEDURE {
            return Ok(None);
        }
        let args = function_arguments(call);
        let identifier = |index: usize| -> Result<String> {
            match args.get(index) {
                Some(FunctionArgExpr::Expr(SqlExpr::Identifier(ident))) => {
                    Ok(crate::engine::normalize_ident(ident))
                }
                _ => Err(EngineError::Syntax(
                    "expected CREATE COLUMN MASK name ON schema.table (column) USING (expression) [EXEMPT user_or_role, ...]".to_string(),
                )),
            }
        };
        let table_name = |index: usize| -> Result<(String, String)> {
            let name = match args.get(index) {
                Some(FunctionArgExpr::Expr(SqlExpr::CompoundIdentifier(parts))) => {
                    datafusion::sql::sqlparser::ast::ObjectName::from(parts.clone())
                }
                Some(FunctionArgExpr::Expr(SqlExpr::Identifier(ident))) => {
                    datafusion::sql::sqlparser::ast::ObjectName::from(vec![ident.clone()])
                }
                _ => return Err(EngineError::Syntax("expected a table name".to_string())),
            };
            schema_and_table(&name)
        };
        access::check_admin("change column masks")?;
        let name = identifier(0)?;
        let (schema, table) = table_name(1)?;
        if procedure == DROP_MASK_PROCEDURE {
            let if_exists = matches!(args.get(2), Some(FunctionArgExpr::Expr(SqlExpr::Value(v))) if v.value == Value::Boolean(true));
            let dropped = self
                .catalog
                .store
                .drop_column_mask(&schema, &table, &name)
                .await?;
            if !dropped && !if_exists {
                return Err(EngineError::NotFound(format!(
                    "column mask '{name}' on {schema}.{table} does not exist"
                )));
            }
            self.catalog.reload().await?;
            return Ok(Some(CommandOutcome::new("DROP COLUMN MASK")));
        }
        let column = identifier(2)?;
        let expression = match args.get(3) {
            Some(FunctionArgExpr::Expr(SqlExpr::Nested(inner))) => inner.to_string(),
            Some(FunctionArgExpr::Expr(other)) => other.to_string(),
            _ => {
                return Err(EngineError::Syntax(
                    "a column mask needs USING (expression)".to_string(),
                ));
            }
        };
        let exempt_names = (4..args.len())
            .map(identifier)
            .collect::<Result<Vec<_>>>()?;
        let columns = self.governed_table(&schema, &table).await?;
        let field = columns
            .field_with_unqualified_name(&column)
            .map_err(|_| {
                EngineError::NotFound(format!("{schema}.{table} has no column '{column}'"))
            })?
            .clone();
        let security = self.catalog.security();
        let exempt = principals_named(&exempt_names, &security)?;
        let data_type = self.expression_type(&expression, &columns)?;
        // Anything reads as text; otherwise the mask must already have the column's kind, so
        // that a mask like '***' on a number fails here and not in every query.
        let target = field.data_type();
        let fits = data_type == *target
            || data_type == datafusion::arrow::datatypes::DataType::Null
            || matches!(
                target,
                datafusion::arrow::datatypes::DataType::Utf8
                    | datafusion::arrow::datatypes::DataType::LargeUtf8
                    | datafusion::arrow::datatypes::DataType::Utf8View
            )
            || (data_type.is_numeric() && target.is_numeric())
            || (data_type.is_temporal() && target.is_temporal());
        if !fits || !can_cast_types(&data_type, target) {
            return Err(EngineError::InvalidInput(format!(
                "the mask of {column} gives {data_type}, which cannot stand in for the column's {}",
                field.data_type()
            )));
        }
        let principal = access::current_principal();
        self.catalog
            .store
            .create_column_mask(&ColumnMaskRecord {
                schema,
                table,
                name,
                column,
                expression,
                exempt,
                created_by: principal.user,
                created_at: polder_catalog::now(),
            })
            .await?;
        self.catalog.reload().await?;
        Ok(Some(CommandOutcome::new("CREATE COLUMN MASK")))
    }
}
