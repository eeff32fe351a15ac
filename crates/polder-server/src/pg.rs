//! The PostgreSQL wire listener (psql, psycopg, JDBC, BI tools).
//!
//! `datafusion-postgres` brings the protocol handling, result encoding and the `pg_catalog`
//! that clients query to discover tables. Polder wraps it in three places:
//! - before parsing, Polder's SQL extensions (time travel, `DESCRIBE HISTORY`) are rewritten
//!   and the engine's catalog view is brought up to date;
//! - a query hook sends statements that change the catalog or write tables to the engine, so
//!   that they become catalog entries and Delta commits and answer with PostgreSQL's tags;
//! - an error handler turns engine and DataFusion errors into SQLSTATE codes.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::common::{DFSchema, ParamValues};
use datafusion::logical_expr::{EmptyRelation, LogicalPlan};
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::Statement;
use datafusion_postgres::hooks::set_show::SetShowHook;
use datafusion_postgres::hooks::transactions::TransactionStatementHook;
use datafusion_postgres::hooks::{HookClient, QueryHook};
use datafusion_postgres::pgwire::api::PgWireConnectionState;
use datafusion_postgres::pgwire::api::auth::StartupHandler;
use datafusion_postgres::pgwire::api::auth::noop::NoopStartupHandler;
use datafusion_postgres::pgwire::api::auth::sasl::SASLAuthStartupHandler;
use datafusion_postgres::pgwire::api::auth::sasl::scram::ScramAuth;
use datafusion_postgres::pgwire::api::auth::{
    AuthSource, DefaultServerParameterProvider, LoginInfo, Password,
};
use datafusion_postgres::pgwire::api::cancel::{CancelHandler, DefaultCancelHandler};
use datafusion_postgres::pgwire::api::portal::{Format, Portal};
use datafusion_postgres::pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use datafusion_postgres::pgwire::api::results::{FieldInfo, Response, Tag};
use datafusion_postgres::pgwire::api::stmt::QueryParser;
use datafusion_postgres::pgwire::api::store::PortalStore;
use datafusion_postgres::pgwire::api::{
    ClientInfo, ClientPortalStore, ConnectionManager, ErrorHandler, PgWireServerHandlers, Type,
};
use datafusion_postgres::pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use datafusion_postgres::pgwire::messages::PgWireBackendMessage;
use datafusion_postgres::pgwire::messages::PgWireFrontendMessage;
use datafusion_postgres::{DfSessionService, Parser};
use futures::Sink;
use polder_core::Principal;
use polder_engine::access;
use polder_engine::{Engine, EngineError, PreparedSql, StatementOutput};

use crate::auth::{AuthError, Authenticator};
use tokio::net::TcpListener;

use crate::drain::{Drain, InFlight};
use crate::metrics::{Interface, StatementRun};
use crate::pg_copy;
use crate::pg_cursor::CursorHook;

/// Everything one PostgreSQL-wire listener needs; cloned into each connection.
pub(crate) struct PgHandlers {
    query: Arc<PolderQueryHandler>,
    connections: Arc<ConnectionManager>,
    auth: Option<Authenticator>,
    cancel: Arc<DefaultCancelHandler>,
    /// With TLS on, the certificate (PEM) for SCRAM channel binding; plain connections are
    /// refused.
    tls_certificate: Option<Vec<u8>>,
    /// Audits connections refused before a login (authentication on).
    pub(crate) refusals: Option<crate::refusals::RefusalLog>,
}

impl PgHandlers {
    /// With `auth`, clients log in with SCRAM-SHA-256 and every statement runs as its user;
    /// with `tls_certificate`, only TLS connections are accepted.
    pub fn new(
        engine: Arc<Engine>,
        auth: Option<Authenticator>,
        tls_certificate: Option<&[u8]>,
        refusals: Option<crate::refusals::RefusalLog>,
        drain: Arc<Drain>,
    ) -> Result<PgHandlers, crate::ServerError> {
        if let Some(pem) = tls_certificate {
            // Checked once here so that each connection's copy cannot fail.
            ScramAuth::new(Arc::new(NoPasswords))
                .configure_certificate(pem)
                .map_err(|e| crate::ServerError::Tls {
                    message: format!("the certificate cannot be used for channel binding: {e}"),
                })?;
        }
        let hooks: Vec<Arc<dyn QueryHook>> = vec![
            Arc::new(CursorHook::new(engine.clone())),
            Arc::new(SetShowHook),
            Arc::new(TransactionStatementHook),
            Arc::new(EngineHook {
                engine: engine.clone(),
            }),
        ];
        let session = Arc::new(engine.session().clone());
        let inner = Arc::new(DfSessionService::new_with_hooks(session, hooks));
        let principals = Arc::new(PgPrincipals { auth: auth.clone() });
        let parser = Arc::new(PolderQueryParser {
            engine: engine.clone(),
            inner: inner.query_parser(),
            principals: principals.clone(),
        });
        let connections = Arc::new(ConnectionManager::new());
        Ok(PgHandlers {
            query: Arc::new(PolderQueryHandler {
                engine,
                inner,
                parser,
                principals,
                drain,
            }),
            connections: connections.clone(),
            auth,
            cancel: Arc::new(DefaultCancelHandler::new(connections)),
            tls_certificate: tls_certificate.map(<[u8]>::to_vec),
            refusals,
        })
    }
}

/// Only for checking a certificate: never asked for a password.
#[derive(Debug)]
struct NoPasswords;

#[async_trait]
impl AuthSource for NoPasswords {
    async fn get_password(&self, _login: &LoginInfo) -> PgWireResult<Password> {
        Err(login_error(AuthError::InvalidCredentials))
    }
}

impl PgWireServerHandlers for PgHandlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.query.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.query.clone()
    }

    /// Called once per connection: SASL keeps the state of one exchange.
    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        let sasl = self.auth.clone().map(|auth| {
            let mut scram = ScramAuth::new(Arc::new(ScramSource { auth: auth.clone() }));
            scram.set_iterations(crate::auth::SCRAM_ITERATIONS);
            if let Some(pem) = &self.tls_certificate {
                // Offers SCRAM-SHA-256-PLUS: the login is bound to this TLS session.
                let _ = scram.configure_certificate(pem);
            }
            (
                SASLAuthStartupHandler::new(Arc::new(DefaultServerParameterProvider::default()))
                    .with_scram(scram)
                    .with_connection_manager(self.connections.clone()),
                auth,
            )
        });
        Arc::new(PolderStartup {
            open: OpenStartup {
                connections: self.connections.clone(),
            },
            sasl,
            tls_required: self.tls_certificate.is_some(),
            refusals: self.refusals.clone(),
        })
    }

    fn error_handler(&self) -> Arc<impl ErrorHandler> {
        Arc::new(SqlStateErrors)
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        self.cancel.clone()
    }
}

/// Accepts every connection: used only when authentication is off (loopback only).
struct OpenStartup {
    connections: Arc<ConnectionManager>,
}

impl NoopStartupHandler for OpenStartup {
    fn connection_manager(&self) -> Option<Arc<ConnectionManager>> {
        Some(self.connections.clone())
    }
}

/// SCRAM-SHA-256 login when authentication is on; every outcome goes to the audit log.
struct PolderStartup {
    open: OpenStartup,
    sasl: Option<(
        SASLAuthStartupHandler<DefaultServerParameterProvider>,
        Authenticator,
    )>,
    /// TLS is on: plain-text connections are refused (like `hostssl` in `pg_hba.conf`).
    tls_required: bool,
    refusals: Option<crate::refusals::RefusalLog>,
}

fn describe_client<C: ClientInfo>(client: &C) -> String {
    format!("postgres {}", client.socket_addr())
}

#[async_trait]
impl StartupHandler for PolderStartup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if self.tls_required && !client.is_secure() {
            tracing::info!(peer = %client.socket_addr(), "plain-text postgres connection refused: TLS is on");
            if let Some(refusals) = &self.refusals {
                refusals.record(
                    "postgres",
                    Some(client.socket_addr()),
                    "plain-text connection to a TLS-only server",
                );
            }
            return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                "FATAL".to_string(),
                "28000".to_string(),
                "this server accepts only TLS connections: connect with sslmode=require"
                    .to_string(),
            ))));
        }
        let Some((sasl, auth)) = &self.sasl else {
            return self.open.on_startup(client, message).await;
        };
        let is_password = matches!(message, PgWireFrontendMessage::PasswordMessageFamily(_));
        let result = sasl.on_startup(client, message).await;
        let login = client.metadata().get("user").cloned().unwrap_or_default();
        match &result {
            Err(err) if is_password => {
                let failure = AuthError::InvalidCredentials;
                tracing::debug!(error = %err, "postgres login failed");
                auth.audit_pg_login(&login, &describe_client(client), Some(&failure))
                    .await;
            }
            Ok(())
                if is_password
                    && matches!(client.state(), PgWireConnectionState::ReadyForQuery) =>
            {
                auth.audit_pg_login(&login, &describe_client(client), None)
                    .await;
            }
            _ => {}
        }
        result
    }
}

/// SCRAM keys from the catalog: of a user, or of a token whose id is the login name.
#[derive(Debug)]
struct ScramSource {
    auth: Authenticator,
}

fn login_error(err: AuthError) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "FATAL".to_string(),
        "28000".to_string(),
        err.to_string(),
    )))
}

#[async_trait]
impl AuthSource for ScramSource {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        let user = login.user().unwrap_or_default();
        let (salt, salted) = self
            .auth
            .scram_keys_or_decoy(user)
            .await
            .map_err(login_error)?;
        Ok(Password::new(Some(salt), salted))
    }
}

/// The user each statement of a session runs as (the authenticator keeps recent answers, so
/// this costs a catalog read only every few seconds per login).
struct PgPrincipals {
    auth: Option<Authenticator>,
}

impl PgPrincipals {
    /// `None` when authentication is off.
    async fn of<C: ClientInfo>(&self, client: &C) -> PgWireResult<Option<Principal>> {
        let Some(auth) = &self.auth else {
            return Ok(None);
        };
        let login = client.metadata().get("user").cloned().unwrap_or_default();
        let principal = auth
            .pg_principal(&login, &describe_client(client))
            .await
            .map_err(login_error)?;
        Ok(Some(principal))
    }
}

/// Runs `work` as `principal` (with full rights when authentication is off).
async fn as_principal<F: std::future::Future>(principal: Option<Principal>, work: F) -> F::Output {
    match principal {
        Some(principal) => access::run_as(principal, work).await,
        None => work.await,
    }
}

/// Whether the first bytes a client sent open a PostgreSQL conversation (a startup message,
/// an SSL/GSS/cancel request, or a direct TLS handshake); `None` when too little arrived to
/// tell. Only peeks: the protocol library reads the same bytes afterwards.
async fn looks_like_postgres(socket: &tokio::net::TcpStream) -> Option<bool> {
    const SSL_REQUEST: u32 = 80_877_103;
    const GSS_REQUEST: u32 = 80_877_104;
    const CANCEL_REQUEST: u32 = 80_877_102;
    let mut head = [0u8; 8];
    let peeked = tokio::time::timeout(std::time::Duration::from_secs(10), socket.peek(&mut head))
        .await
        .ok()?
        .ok()?;
    if peeked >= 1 && head[0] == 0x16 {
        return Some(true);
    }
    if peeked < 8 {
        return None;
    }
    let length = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    let code = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
    let request = matches!(code, SSL_REQUEST | GSS_REQUEST | CANCEL_REQUEST);
    // Protocol 3.x startup packets are small (user, database, a few options).
    let startup = code >> 16 == 3 && (8..=65_536).contains(&length);
    Some(request || startup)
}

/// Serves connections until the listener fails or draining begins.
pub(crate) async fn serve(
    listener: TcpListener,
    handlers: Arc<PgHandlers>,
    tls: Option<datafusion_postgres::pgwire::tokio::TlsAcceptor>,
    drain: Arc<Drain>,
) -> std::io::Result<()> {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            // Draining: no new connections; running statements finish on theirs.
            () = drain.begun() => return Ok(()),
        };
        let (socket, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of file descriptors and the like: keep the listener, wait a little.
                tracing::warn!(error = %err, "postgres accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let handlers = handlers.clone();
        let tls = tls.clone();
        // Every statement of the connection runs in this span: its log lines carry the id.
        let span = tracing::info_span!(
            "pg_connection",
            session_id = %crate::request_id::new_id(),
            %peer
        );
        let connection = async move {
            let refusals = handlers.refusals.clone();
            if looks_like_postgres(&socket).await == Some(false) {
                tracing::info!(%peer, "not a PostgreSQL client: connection closed");
                if let Some(refusals) = &refusals {
                    refusals.record(
                        "postgres",
                        Some(peer),
                        "not a PostgreSQL client: the first bytes are no startup, TLS or cancel request",
                    );
                }
                return;
            }
            if let Err(err) =
                datafusion_postgres::pgwire::tokio::process_socket(socket, tls, handlers).await
            {
                tracing::debug!(%peer, error = %err, "postgres connection ended with an error");
                // Protocol garbage and failed TLS handshakes end here; a client that simply
                // went away is not a refusal.
                let went_away = matches!(
                    err.kind(),
                    std::io::ErrorKind::ConnectionReset
                        | std::io::ErrorKind::BrokenPipe
                        | std::io::ErrorKind::UnexpectedEof
                        | std::io::ErrorKind::ConnectionAborted
                );
                if let Some(refusals) = refusals.filter(|_| !went_away) {
                    refusals.record("postgres", Some(peer), &format!("connection error: {err}"));
                }
            }
        };
        tokio::spawn(tracing::Instrument::instrument(connection, span));
    }
}

struct PolderQueryHandler {
    engine: Arc<Engine>,
    inner: Arc<DfSessionService>,
    parser: Arc<PolderQueryParser>,
    principals: Arc<PgPrincipals>,
    drain: Arc<Drain>,
}

/// Counts a statement in for a graceful shutdown, or refuses it as PostgreSQL does while it
/// shuts down (57P01), so that a pool reconnects to another coordinator.
fn enter_statement(drain: &Arc<Drain>) -> PgWireResult<Arc<InFlight>> {
    drain.enter().map(Arc::new).ok_or_else(|| {
        PgWireError::UserError(Box::new(ErrorInfo::new(
            "FATAL".to_string(),
            "57P01".to_string(),
            "the server is shutting down; connect again (to another coordinator)".to_string(),
        )))
    })
}

/// Keeps `in_flight` until the response's last row was sent (rows stream after `do_query`).
fn hold_until_sent(response: Response, in_flight: &Arc<InFlight>) -> Response {
    match response {
        Response::Query(query) => {
            let held = in_flight.clone();
            let command_tag = query.command_tag.clone();
            let rows = futures::StreamExt::map(query.data_rows, move |row| {
                let _ = &held;
                row
            });
            let mut held_query = datafusion_postgres::pgwire::api::results::QueryResponse::new(
                query.row_schema,
                rows,
            );
            held_query.set_command_tag(&command_tag);
            Response::Query(held_query)
        }
        other => other,
    }
}

/// Syncs the catalog view and rewrites Polder's extensions; errors become SQLSTATE errors.
async fn prepare_sql(engine: &Engine, sql: &str) -> PgWireResult<PreparedSql> {
    engine.sync().await.map_err(engine_error)?;
    engine.rewrite_sql(sql).await.map_err(engine_error)
}

#[async_trait]
impl SimpleQueryHandler for PolderQueryHandler {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let in_flight = enter_statement(&self.drain)?;
        let principal = self.principals.of(client).await?;
        let responses = as_principal(principal, self.simple_query(client, query)).await?;
        Ok(responses
            .into_iter()
            .map(|response| hold_until_sent(response, &in_flight))
            .collect())
    }
}

impl PolderQueryHandler {
    async fn simple_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let run = StatementRun::start(&self.engine, Interface::Postgres, query);
        if let Some((copy_query, options)) = pg_copy::parse_copy_to_stdout(query) {
            let result = match self.engine.sync().await {
                Ok(()) => pg_copy::copy_to_stdout(&self.engine, &copy_query, &options).await,
                Err(err) => Err(engine_error(err)),
            };
            run.finish(&result, None, error_kind);
            return result.map(|response| vec![response]);
        }
        let prepared = match prepare_sql(&self.engine, query).await {
            Ok(prepared) => prepared,
            Err(err) => {
                run.failed(error_kind(&err), &err.to_string());
                return Err(err);
            }
        };
        let sql = prepared.sql(query);
        let result = SimpleQueryHandler::do_query(self.inner.as_ref(), client, sql).await;
        run.finish(&result, None, error_kind);
        result
    }
}

#[async_trait]
impl ExtendedQueryHandler for PolderQueryHandler {
    type Statement = <DfSessionService as ExtendedQueryHandler>::Statement;
    type QueryParser = PolderQueryParser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        self.parser.clone()
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Self::Statement>,
        max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let in_flight = enter_statement(&self.drain)?;
        let principal = self.principals.of(client).await?;
        let run = StatementRun::start_as(
            &self.engine,
            Interface::Postgres,
            principal.clone(),
            &portal.statement.statement.0,
        );
        let result = as_principal(
            principal,
            ExtendedQueryHandler::do_query(self.inner.as_ref(), client, portal, max_rows),
        )
        .await;
        run.finish(&result, None, error_kind);
        result.map(|response| hold_until_sent(response, &in_flight))
    }
}

pub(crate) struct PolderQueryParser {
    engine: Arc<Engine>,
    inner: Arc<Parser>,
    principals: Arc<PgPrincipals>,
}

#[async_trait]
impl QueryParser for PolderQueryParser {
    type Statement = <Parser as QueryParser>::Statement;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        types: &[Option<Type>],
    ) -> PgWireResult<Option<Self::Statement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let principal = self.principals.of(client).await?;
        let parsed = as_principal(principal.clone(), async {
            let prepared = prepare_sql(&self.engine, sql).await?;
            let text = prepared.sql(sql).to_string();
            // Planned here already: with the rights it will run with (a write's target needs
            // the write privilege, not just SELECT).
            prepared
                .run_with_rights(self.inner.parse_sql(client, &text, types))
                .await
                .map_err(engine_error)?
        })
        .await;
        if let Err(err) = &parsed {
            // Refused before it could run (syntax, unknown column, no grant): still history.
            StatementRun::start_as(&self.engine, Interface::Postgres, principal, sql)
                .failed(error_kind(err), &err.to_string());
        }
        parsed
    }

    fn get_parameter_types(&self, statement: &Self::Statement) -> PgWireResult<Vec<Type>> {
        self.inner.get_parameter_types(statement)
    }

    fn get_result_schema(
        &self,
        statement: &Self::Statement,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        self.inner.get_result_schema(statement, column_format)
    }
}

/// Sends catalog changes and table writes to the engine.
struct EngineHook {
    engine: Arc<Engine>,
}

impl EngineHook {
    /// Statements DataFusion cannot even plan; they get a placeholder plan when prepared.
    fn needs_sql_text(statement: &Statement) -> bool {
        matches!(
            statement,
            Statement::CreateView(_)
                | Statement::AlterTable(_)
                | Statement::CreatePolicy(_)
                | Statement::DropPolicy(_)
                | Statement::Call(_)
        )
    }

    async fn run_statement(&self, statement: &Statement) -> PgWireResult<Response> {
        let output = self
            .engine
            .execute(DFStatement::Statement(Box::new(statement.clone())))
            .await
            .map_err(engine_error)?;
        respond(output)
    }
}

fn respond(output: StatementOutput) -> PgWireResult<Response> {
    match output {
        StatementOutput::Command(outcome) => {
            let mut tag = Tag::new(&outcome.tag);
            if outcome.tag == "INSERT" {
                tag = tag.with_oid(0);
            }
            if let Some(rows) = outcome.rows {
                tag = tag.with_rows(rows as usize);
            }
            Ok(Response::Execution(tag))
        }
        StatementOutput::Query(_) => Err(PgWireError::UserError(Box::new(ErrorInfo::new(
            "ERROR".to_string(),
            "XX000".to_string(),
            "a catalog statement returned rows".to_string(),
        )))),
    }
}

#[async_trait]
impl QueryHook for EngineHook {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        _session: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        if let Some(tag) = savepoint_tag(statement) {
            return Some(Ok(Response::Execution(Tag::new(tag))));
        }
        if !Engine::is_engine_statement(statement) {
            return None;
        }
        Some(self.run_statement(statement).await)
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        _session: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        if !Self::needs_sql_text(statement) && savepoint_tag(statement).is_none() {
            return None;
        }
        Some(Ok(LogicalPlan::EmptyRelation(EmptyRelation {
            produce_one_row: false,
            schema: Arc::new(DFSchema::empty()),
        })))
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        plan: &LogicalPlan,
        params: &ParamValues,
        _session: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        if let Some(tag) = savepoint_tag(statement) {
            return Some(Ok(Response::Execution(Tag::new(tag))));
        }
        if !Engine::is_engine_statement(statement) {
            return None;
        }
        if Self::needs_sql_text(statement) {
            return Some(self.run_statement(statement).await);
        }
        // Planned again with the parameters, authorized and audited as the statement it is.
        let _ = plan;
        let result = self
            .engine
            .execute_with_params(
                DFStatement::Statement(Box::new(statement.clone())),
                Some(params),
            )
            .await
            .map_err(engine_error)
            .and_then(respond);
        Some(result)
    }
}

/// Savepoints are accepted and do nothing, like transactions: every statement is one atomic
/// Delta commit of its own. Clients open them on their own (psycopg's nested transactions,
/// SQLAlchemy's first connection), so refusing them would refuse those clients.
fn savepoint_tag(statement: &Statement) -> Option<&'static str> {
    match statement {
        Statement::Savepoint { .. } => Some("SAVEPOINT"),
        Statement::ReleaseSavepoint { .. } => Some("RELEASE"),
        _ => None,
    }
}

/// An engine error as a PostgreSQL error with its SQLSTATE.
fn engine_error(err: EngineError) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_string(),
        err.sqlstate().to_string(),
        err.to_string(),
    )))
}

/// Gives errors raised inside `datafusion-postgres` (which reports them without a code) the
/// SQLSTATE of their cause, and logs them.
struct SqlStateErrors;

impl ErrorHandler for SqlStateErrors {
    fn on_error<C>(&self, _client: &C, error: &mut PgWireError)
    where
        C: ClientInfo,
    {
        if let PgWireError::ApiError(source) = error {
            let converted =
                if let Some(df) = source.downcast_ref::<datafusion::error::DataFusionError>() {
                    let (kind, sqlstate) = polder_engine::classify(df);
                    tracing::debug!(kind = %kind, "postgres statement failed");
                    Some(ErrorInfo::new(
                        "ERROR".to_string(),
                        sqlstate.to_string(),
                        polder_engine::datafusion_message(df),
                    ))
                } else if let Some(parse) =
                    source.downcast_ref::<datafusion::sql::sqlparser::parser::ParserError>()
                {
                    Some(ErrorInfo::new(
                        "ERROR".to_string(),
                        "42601".to_string(),
                        format!("syntax error: {parse}"),
                    ))
                } else {
                    source.downcast_ref::<EngineError>().map(|engine| {
                        ErrorInfo::new(
                            "ERROR".to_string(),
                            engine.sqlstate().to_string(),
                            engine.to_string(),
                        )
                    })
                };
            if let Some(info) = converted {
                *error = PgWireError::UserError(Box::new(info));
            }
        }
        if let PgWireError::UserError(info) = error {
            tracing::debug!(sqlstate = %info.code, message = %info.message, "postgres error");
        }
    }
}

/// The error kind of a failed statement, for metrics.
fn error_kind(error: &PgWireError) -> polder_core::ErrorKind {
    use polder_core::ErrorKind;
    match error {
        PgWireError::UserError(info) => match &info.code[..2.min(info.code.len())] {
            "40" => ErrorKind::Conflict,
            "53" | "58" | "08" => ErrorKind::Unavailable,
            "57" => ErrorKind::Cancelled,
            "XX" => ErrorKind::Internal,
            _ if info.code == "42P01" => ErrorKind::NotFound,
            _ => ErrorKind::InvalidInput,
        },
        PgWireError::ApiError(source) => {
            match source.downcast_ref::<datafusion::error::DataFusionError>() {
                Some(df) => polder_engine::classify(df).0,
                None => ErrorKind::Internal,
            }
        }
        _ => ErrorKind::Internal,
    }
}
