//! Server-side cursors (`DECLARE c CURSOR FOR ...`, `FETCH n FROM c`, `CLOSE c`), as psycopg's
//! named cursors and other ETL tools use them to pull large results in chunks.
//!
//! `datafusion-postgres` has a cursor hook, but it keeps no plan for a declared cursor, so a
//! client that describes the cursor (psycopg does, right after `DECLARE`) gets no columns, and a
//! `FETCH` sent over the extended protocol answers rows without a row description. This hook
//! keeps the plan with the cursor and remembers each connection's cursor schemas, so that both
//! describe like PostgreSQL does.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::common::{DFSchemaRef, ParamValues};
use datafusion::logical_expr::{EmptyRelation, LogicalPlan};
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{CloseCursor, DeclareType, FetchDirection, Statement, Value};
use datafusion_postgres::arrow_pg::datatypes::df;
use datafusion_postgres::hooks::{HookClient, QueryHook};
use datafusion_postgres::pgwire::api::ClientInfo;
use datafusion_postgres::pgwire::api::portal::{Format, Portal};
use datafusion_postgres::pgwire::api::results::{Response, Tag};
use datafusion_postgres::pgwire::api::stmt::StoredStatement;
use datafusion_postgres::pgwire::api::store::PortalStore;
use datafusion_postgres::pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use polder_engine::{Engine, StatementOutput};

pub(crate) struct CursorHook {
    engine: Arc<Engine>,
    /// Result schema of each open cursor, per connection, for describing `FETCH` statements.
    schemas: Mutex<HashMap<(SocketAddr, String), DFSchemaRef>>,
}

fn user_error(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_string(),
        code.to_string(),
        message,
    )))
}

fn empty_plan(schema: DFSchemaRef) -> LogicalPlan {
    LogicalPlan::EmptyRelation(EmptyRelation {
        produce_one_row: false,
        schema,
    })
}

impl CursorHook {
    pub fn new(engine: Arc<Engine>) -> Self {
        CursorHook {
            engine,
            schemas: Mutex::new(HashMap::new()),
        }
    }

    async fn declare(
        &self,
        statement: &Statement,
        client: &mut dyn HookClient,
    ) -> PgWireResult<Response> {
        let Statement::Declare { stmts } = statement else {
            unreachable!("called for DECLARE only");
        };
        for declare in stmts {
            if declare.declare_type != Some(DeclareType::Cursor) {
                return Err(user_error(
                    "0A000",
                    "only DECLARE ... CURSOR FOR is supported".to_string(),
                ));
            }
            if declare.scroll == Some(true) {
                return Err(user_error(
                    "0A000",
                    "cursors scroll forward only (NO SCROLL)".to_string(),
                ));
            }
            let Some(name) = declare.names.first().map(|n| n.value.clone()) else {
                return Err(user_error(
                    "42601",
                    "DECLARE needs a cursor name".to_string(),
                ));
            };
            let Some(query) = &declare.for_query else {
                return Err(user_error(
                    "42601",
                    "DECLARE CURSOR needs FOR <query>".to_string(),
                ));
            };
            let query_statement = Statement::Query(query.clone());
            let plan = self
                .engine
                .plan(DFStatement::Statement(Box::new(query_statement.clone())))
                .await
                .map_err(|e| user_error(e.sqlstate(), e.to_string()))?;
            let schema = plan.schema().clone();
            let frame = match self.engine.execute_plan(plan.clone()).await {
                Ok(StatementOutput::Query(frame)) => frame,
                Ok(StatementOutput::Command(_)) => {
                    return Err(user_error("42601", "a cursor needs a query".to_string()));
                }
                Err(err) => return Err(user_error(err.sqlstate(), err.to_string())),
            };
            let response = df::encode_dataframe(frame, &Format::UnifiedText, None).await?;
            let stored = Arc::new(StoredStatement::new(
                name.clone(),
                (query.to_string(), Some((query_statement, plan))),
                vec![],
            ));
            let portal = Portal::new_cursor(name.clone(), stored);
            portal.start(response).await;
            client.portal_store().put_portal(Arc::new(portal));
            self.schemas
                .lock()
                .expect("cursor schemas lock")
                .insert((client.socket_addr(), name), schema);
        }
        Ok(Response::Execution(Tag::new("DECLARE CURSOR")))
    }

    async fn fetch(
        &self,
        statement: &Statement,
        client: &mut dyn HookClient,
    ) -> PgWireResult<Response> {
        let Statement::Fetch {
            name, direction, ..
        } = statement
        else {
            unreachable!("called for FETCH only");
        };
        let count = |value: &Value| match value {
            Value::Number(text, _) => text.parse::<usize>().ok(),
            _ => None,
        };
        let max_rows = match direction {
            FetchDirection::Next | FetchDirection::Forward { limit: None } => 1,
            FetchDirection::Forward { limit: Some(v) } | FetchDirection::Count { limit: v } => {
                count(v).ok_or_else(|| user_error("22023", format!("bad FETCH count {v}")))?
            }
            // pgwire fetches everything that is left for 0.
            FetchDirection::ForwardAll | FetchDirection::All => 0,
            _ => {
                return Err(user_error(
                    "0A000",
                    "cursors scroll forward only".to_string(),
                ));
            }
        };
        let portal = client
            .portal_store()
            .get_portal(&name.value)
            .and_then(|entry| entry.value().cloned())
            .ok_or_else(|| {
                user_error("34000", format!("cursor \"{}\" does not exist", name.value))
            })?;
        let result = portal.fetch(max_rows).await?;
        Ok(Response::Query(result.response))
    }

    fn close(&self, statement: &Statement, client: &mut dyn HookClient) -> PgWireResult<Response> {
        let Statement::Close { cursor } = statement else {
            unreachable!("called for CLOSE only");
        };
        let address = client.socket_addr();
        let mut schemas = self.schemas.lock().expect("cursor schemas lock");
        match cursor {
            CloseCursor::All => {
                client.portal_store().clear_portals();
                schemas.retain(|(owner, _), _| *owner != address);
            }
            CloseCursor::Specific { name } => {
                client.portal_store().rm_portal(&name.value);
                schemas.remove(&(address, name.value.clone()));
            }
        }
        Ok(Response::Execution(Tag::new("CLOSE CURSOR")))
    }

    async fn run(
        &self,
        statement: &Statement,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        match statement {
            Statement::Declare { .. } => Some(self.declare(statement, client).await),
            Statement::Fetch { .. } => Some(self.fetch(statement, client).await),
            Statement::Close { .. } => Some(self.close(statement, client)),
            _ => None,
        }
    }
}

#[async_trait]
impl QueryHook for CursorHook {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        _session: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        self.run(statement, client).await
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        _session: &SessionContext,
        client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        match statement {
            Statement::Declare { .. } | Statement::Close { .. } => Some(Ok(empty_plan(Arc::new(
                datafusion::common::DFSchema::empty(),
            )))),
            // A FETCH describes as the rows of its cursor.
            Statement::Fetch { name, .. } => {
                let schema = self
                    .schemas
                    .lock()
                    .expect("cursor schemas lock")
                    .get(&(client.socket_addr(), name.value.clone()))
                    .cloned()
                    .unwrap_or_else(|| Arc::new(datafusion::common::DFSchema::empty()));
                Some(Ok(empty_plan(schema)))
            }
            _ => None,
        }
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        _plan: &LogicalPlan,
        _params: &ParamValues,
        _session: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        self.run(statement, client).await
    }
}
