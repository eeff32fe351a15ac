//! The Arrow Flight SQL listener (ADBC, Flight SQL JDBC): results travel as Arrow, no
//! conversion on either side.
//!
//! Queries are stateless: the ticket carries the SQL, so any replica can serve the `DoGet`.
//! Statements that change something run when they are submitted (`GetFlightInfo` or
//! `DoPut`), and their ticket only reports what they did. Prepared statements live in the
//! process that created them.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use arrow::array::{ArrayRef, RecordBatch, StringArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::ipc::writer::IpcWriteOptions;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightServiceServer;
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, Any, CommandGetCatalogs, CommandGetDbSchemas,
    CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandPreparedStatementQuery,
    CommandPreparedStatementUpdate, CommandStatementQuery, CommandStatementUpdate,
    DoPutPreparedStatementResult, ProstMessageExt, SqlInfo, TicketStatementQuery,
};
use arrow_flight::{
    Action, FlightData, FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest,
    HandshakeResponse, IpcMessage, SchemaAsIpc, Ticket,
};
use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::scalar::ScalarValue;
use datafusion::sql::parser::Statement as DFStatement;
use futures::{Stream, StreamExt, TryStreamExt};
use polder_core::{CATALOG_NAME, ErrorKind, HasErrorKind};
use polder_engine::{Engine, EngineError, StatementOutput};
use prost::Message;
use serde::{Deserialize, Serialize};
use tonic::{Request, Response, Status, Streaming};

use crate::error::grpc_status;
use crate::metrics::{Interface, StatementRun, record_rows};

type DoGetStream = Pin<Box<dyn Stream<Item = Result<FlightData, Status>> + Send + 'static>>;

/// What a ticket asks for.
#[derive(Debug, Serialize, Deserialize)]
enum TicketBody {
    /// Run this query (with these parameters, for a prepared statement).
    Query {
        sql: String,
        params: Option<Vec<serde_json::Value>>,
        /// The plan GetFlightInfo made, kept for this ticket's DoGet (see [`PlannedQueries`]).
        #[serde(default)]
        plan_id: Option<String>,
    },
    /// A statement already ran; report its outcome.
    Done { command: String, rows: Option<u64> },
}

struct Prepared {
    sql: String,
    params: Option<Vec<ScalarValue>>,
}

pub(crate) struct PolderFlightSql {
    engine: Arc<Engine>,
    auth: Option<crate::auth::Authenticator>,
    prepared: Mutex<HashMap<String, Prepared>>,
    planned: PlannedQueries,
    sql_info: SqlInfoData,
}

/// How long a plan waits for its DoGet, and how many may wait at once.
const PLAN_TTL: std::time::Duration = std::time::Duration::from_secs(60);
const MAX_PLANNED: usize = 1024;
/// Plans one user may have waiting (a plan can hold in-memory tables alive).
const MAX_PLANNED_PER_USER: usize = 16;

/// Plans made by GetFlightInfo, each taken once by the DoGet of its ticket, so that a query is
/// planned (and its tables' Delta logs refreshed) once instead of twice. The ticket's SQL stays
/// the fallback: a DoGet that finds no plan (expired, evicted, another server) plans again.
#[derive(Default)]
struct PlannedQueries {
    plans: Mutex<HashMap<String, PlannedQuery>>,
}

struct PlannedQuery {
    plan: LogicalPlan,
    /// The SQL it was planned from: what the history records, whatever the ticket says.
    sql: String,
    /// Only the user who planned it may run it.
    user: String,
    at: std::time::Instant,
}

impl PlannedQueries {
    fn keep(&self, plan: LogicalPlan, sql: &str) -> String {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let user = polder_engine::access::current_principal().user;
        let mut plans = self.plans.lock().expect("planned queries lock");
        plans.retain(|_, planned| planned.at.elapsed() < PLAN_TTL);
        let oldest_of = |plans: &HashMap<String, PlannedQuery>, only: Option<&str>| {
            plans
                .iter()
                .filter(|(_, planned)| only.is_none_or(|user| planned.user == user))
                .min_by_key(|(_, planned)| planned.at)
                .map(|(id, _)| id.clone())
        };
        let mine = plans
            .values()
            .filter(|planned| planned.user == user)
            .count();
        let evict = if mine >= MAX_PLANNED_PER_USER {
            oldest_of(&plans, Some(&user))
        } else if plans.len() >= MAX_PLANNED {
            oldest_of(&plans, None)
        } else {
            None
        };
        if let Some(evicted) = evict {
            plans.remove(&evicted);
        }
        plans.insert(
            id.clone(),
            PlannedQuery {
                plan,
                sql: sql.to_string(),
                user,
                at: std::time::Instant::now(),
            },
        );
        id
    }

    /// The plan and its SQL, once, for the user who planned it.
    fn take(&self, id: &str) -> Option<(LogicalPlan, String)> {
        let planned = self
            .plans
            .lock()
            .expect("planned queries lock")
            .remove(id)?;
        let caller = polder_engine::access::current_principal().user;
        (planned.user == caller && planned.at.elapsed() < PLAN_TTL)
            .then_some((planned.plan, planned.sql))
    }
}

fn status(err: EngineError) -> Status {
    grpc_status(err.kind(), err.to_string())
}

fn internal<E: std::fmt::Display>(err: E) -> Status {
    Status::internal(err.to_string())
}

impl PolderFlightSql {
    pub fn new(engine: Arc<Engine>, auth: Option<crate::auth::Authenticator>) -> Self {
        let mut info = SqlInfoDataBuilder::new();
        info.append(SqlInfo::FlightSqlServerName, "Polder");
        info.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
        info.append(SqlInfo::FlightSqlServerArrowVersion, "1.3");
        info.append(SqlInfo::FlightSqlServerReadOnly, false);
        info.append(SqlInfo::FlightSqlServerSql, true);
        info.append(SqlInfo::FlightSqlServerSubstrait, false);
        info.append(SqlInfo::FlightSqlServerTransaction, 0i32);
        info.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
        PolderFlightSql {
            engine,
            auth,
            prepared: Mutex::new(HashMap::new()),
            planned: PlannedQueries::default(),
            sql_info: info.build().expect("static sql info"),
        }
    }

    pub fn into_service(self) -> FlightServiceServer<PolderFlightSql> {
        FlightServiceServer::new(self)
            .max_decoding_message_size(64 * 1024 * 1024)
            .max_encoding_message_size(64 * 1024 * 1024)
    }

    /// Parses SQL that must be exactly one statement.
    fn single_statement(&self, sql: &str) -> Result<DFStatement, Status> {
        let mut statements = self.engine.parse(sql).map_err(status)?;
        if statements.len() != 1 {
            return Err(Status::invalid_argument(format!(
                "expected one SQL statement, got {}",
                statements.len()
            )));
        }
        Ok(statements.remove(0))
    }

    fn is_query(statement: &DFStatement) -> bool {
        match statement {
            DFStatement::Statement(ast) => !Engine::is_engine_statement(ast),
            DFStatement::Explain(_) => true,
            _ => false,
        }
    }

    /// Runs a statement that changes something and returns its ticket.
    async fn run_command(&self, statement: DFStatement) -> Result<TicketBody, Status> {
        let run = StatementRun::start(&self.engine, Interface::FlightSql, &statement.to_string());
        let result = self.engine.execute(statement).await;
        let rows = match &result {
            Ok(StatementOutput::Command(outcome)) => outcome.rows,
            _ => None,
        };
        run.finish(&result, rows, |e| e.kind());
        match result.map_err(status)? {
            StatementOutput::Command(outcome) => Ok(TicketBody::Done {
                command: outcome.tag,
                rows: outcome.rows,
            }),
            StatementOutput::Query(_) => Err(Status::internal("a command returned rows")),
        }
    }

    fn flight_info(
        &self,
        schema: &Schema,
        ticket: &TicketBody,
        descriptor: FlightDescriptor,
    ) -> Result<FlightInfo, Status> {
        let handle = serde_json::to_vec(ticket).map_err(internal)?;
        let ticket = Ticket {
            ticket: TicketStatementQuery {
                statement_handle: handle.into(),
            }
            .as_any()
            .encode_to_vec()
            .into(),
        };
        FlightInfo::new()
            .try_with_schema(schema)
            .map_err(internal)
            .map(|info| {
                info.with_endpoint(FlightEndpoint::new().with_ticket(ticket))
                    .with_descriptor(descriptor)
                    .with_total_records(-1)
                    .with_total_bytes(-1)
            })
    }

    fn command_schema() -> Schema {
        Schema::new(vec![
            Field::new("command", DataType::Utf8, false),
            Field::new("rows_affected", DataType::UInt64, true),
        ])
    }

    /// The flight info of `sql`: a query's result schema, or a command run now.
    async fn info_for_sql(
        &self,
        sql: &str,
        params: Option<Vec<ScalarValue>>,
        descriptor: FlightDescriptor,
    ) -> Result<FlightInfo, Status> {
        self.engine.sync().await.map_err(status)?;
        let statement = self.single_statement(sql)?;
        if !Self::is_query(&statement) {
            let ticket = match params {
                Some(values) => {
                    let rows = self.run_with_parameters(statement, vec![values]).await?;
                    TicketBody::Done {
                        command: "OK".to_string(),
                        rows: Some(rows),
                    }
                }
                None => self.run_command(statement).await?,
            };
            return self.flight_info(&Self::command_schema(), &ticket, descriptor);
        }
        let plan = self.plan(statement, params.as_ref()).await?;
        let schema = plan.schema().as_arrow().clone();
        let ticket = TicketBody::Query {
            sql: sql.to_string(),
            params: params.map(|p| p.iter().map(scalar_to_json).collect()),
            plan_id: Some(self.planned.keep(plan, sql)),
        };
        self.flight_info(&schema, &ticket, descriptor)
    }

    /// Runs a statement once per parameter row and returns the rows it changed in all.
    async fn run_with_parameters(
        &self,
        statement: DFStatement,
        rows: Vec<Vec<ScalarValue>>,
    ) -> Result<u64, Status> {
        let run = StatementRun::start(&self.engine, Interface::FlightSql, &statement.to_string());
        let mut changed = 0u64;
        for values in rows {
            let params = ParamValues::List(values.iter().cloned().map(Into::into).collect());
            let result = self
                .engine
                .execute_with_params(statement.clone(), (!values.is_empty()).then_some(&params))
                .await;
            let result = match result {
                Err(err) => {
                    run.failed(err.kind(), &err.to_string());
                    return Err(status(err));
                }
                Ok(output) => output,
            };
            match result {
                StatementOutput::Command(outcome) => changed += outcome.rows.unwrap_or(0),
                StatementOutput::Query(_) => {
                    return Err(Status::invalid_argument(
                        "use a query execution for a SELECT",
                    ));
                }
            }
        }
        run.ok(Some(changed));
        Ok(changed)
    }

    async fn plan(
        &self,
        statement: DFStatement,
        params: Option<&Vec<ScalarValue>>,
    ) -> Result<LogicalPlan, Status> {
        let plan = self.engine.plan(statement).await.map_err(status)?;
        match params {
            Some(values) => plan
                .replace_params_with_values(&ParamValues::List(
                    values.iter().cloned().map(Into::into).collect(),
                ))
                .map_err(|e| status(EngineError::from(e))),
            None => Ok(plan),
        }
    }

    /// Streams a query's result.
    async fn stream_query(
        &self,
        sql: &str,
        params: Option<Vec<ScalarValue>>,
        plan_id: Option<&str>,
    ) -> Result<DoGetStream, Status> {
        let kept = plan_id.and_then(|id| self.planned.take(id));
        // The history records what was planned, not what a (client-built) ticket claims.
        let recorded = kept
            .as_ref()
            .map_or(sql, |(_, planned_sql)| planned_sql.as_str());
        let run = StatementRun::start(&self.engine, Interface::FlightSql, recorded);
        let planned = async {
            if let Some((plan, _)) = kept {
                return Ok(plan);
            }
            self.engine.sync().await.map_err(status)?;
            let statement = self.single_statement(sql)?;
            self.plan(statement, params.as_ref()).await
        }
        .await;
        let plan = match planned {
            Ok(plan) => plan,
            Err(refused) => {
                run.failed(status_kind(&refused), refused.message());
                return Err(refused);
            }
        };
        let output = self.engine.execute_plan(plan).await;
        let frame = match output {
            Ok(StatementOutput::Query(frame)) => frame,
            Ok(StatementOutput::Command(_)) => return Err(Status::invalid_argument("not a query")),
            Err(err) => {
                run.failed(err.kind(), &err.to_string());
                return Err(status(err));
            }
        };
        let stream = frame
            .execute_stream()
            .await
            .map_err(|e| status(EngineError::from(e)))?;
        let schema = stream.schema();
        let counted = CountedStream::new(stream, run);
        let flight = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(counted)
            .map_err(|e| match e {
                FlightError::Tonic(status) => *status,
                other => Status::internal(other.to_string()),
            });
        Ok(Box::pin(flight))
    }

    fn batch_stream(schema: SchemaRef, batch: RecordBatch) -> DoGetStream {
        let stream = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(futures::stream::once(async move { Ok(batch) }))
            .map_err(|e| Status::internal(e.to_string()));
        Box::pin(stream)
    }

    /// Every (schema, table, kind) the catalog holds, with the table's Arrow schema when asked.
    async fn tables(
        &self,
        with_schema: bool,
    ) -> Result<Vec<(String, String, &'static str, Schema)>, Status> {
        self.engine.sync().await.map_err(status)?;
        let description = self.engine.describe_catalog().await.map_err(status)?;
        let mut tables = Vec::new();
        for schema in description.schemas {
            for table in schema.tables {
                let kind = if table.kind == "view" {
                    "VIEW"
                } else {
                    "TABLE"
                };
                let arrow_schema = if with_schema {
                    let reference = datafusion::common::TableReference::partial(
                        schema.name.as_str(),
                        table.name.as_str(),
                    );
                    match self.engine.session().table_provider(reference).await {
                        Ok(provider) => provider.schema().as_ref().clone(),
                        Err(_) => Schema::empty(),
                    }
                } else {
                    Schema::empty()
                };
                tables.push((schema.name.clone(), table.name.clone(), kind, arrow_schema));
            }
        }
        Ok(tables)
    }
}

/// Counts rows and bytes of a result stream for the metrics, and records the statement when
/// the stream ends.
struct CountedStream {
    inner: datafusion::execution::SendableRecordBatchStream,
    /// Taken when the stream ends; dropped unfinished it records a cancellation.
    run: Option<StatementRun>,
    rows: u64,
    bytes: u64,
}

impl CountedStream {
    fn new(inner: datafusion::execution::SendableRecordBatchStream, run: StatementRun) -> Self {
        CountedStream {
            inner,
            run: Some(run),
            rows: 0,
            bytes: 0,
        }
    }
}

impl Stream for CountedStream {
    type Item = Result<RecordBatch, FlightError>;

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        let polled = self.inner.poll_next_unpin(cx);
        match polled {
            std::task::Poll::Ready(Some(Ok(batch))) => {
                self.rows += batch.num_rows() as u64;
                self.bytes += batch.get_array_memory_size() as u64;
                std::task::Poll::Ready(Some(Ok(batch)))
            }
            std::task::Poll::Ready(Some(Err(err))) => {
                let err = EngineError::from(err);
                if let Some(run) = self.run.take() {
                    run.failed(err.kind(), &err.to_string());
                }
                std::task::Poll::Ready(Some(Err(FlightError::Tonic(Box::new(status(err))))))
            }
            std::task::Poll::Ready(None) => {
                if let Some(run) = self.run.take() {
                    record_rows(Interface::FlightSql, self.rows, self.bytes);
                    run.ok(Some(self.rows));
                }
                std::task::Poll::Ready(None)
            }
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    }
}

/// The error kind a gRPC status stands for (the reverse of [`crate::grpc_status`]).
fn status_kind(status: &Status) -> ErrorKind {
    match status.code() {
        tonic::Code::InvalidArgument => ErrorKind::InvalidInput,
        tonic::Code::NotFound => ErrorKind::NotFound,
        tonic::Code::AlreadyExists => ErrorKind::AlreadyExists,
        tonic::Code::Aborted => ErrorKind::Conflict,
        tonic::Code::PermissionDenied => ErrorKind::PermissionDenied,
        tonic::Code::Unauthenticated => ErrorKind::Unauthenticated,
        tonic::Code::Unavailable => ErrorKind::Unavailable,
        tonic::Code::Cancelled => ErrorKind::Cancelled,
        _ => ErrorKind::Internal,
    }
}

fn scalar_to_json(value: &ScalarValue) -> serde_json::Value {
    // Parameters travel inside the ticket as typed text: the type name and the value's text.
    serde_json::json!({"type": value.data_type().to_string(), "value": if value.is_null() { None } else { Some(value.to_string()) }})
}

fn scalar_from_json(value: &serde_json::Value) -> Result<ScalarValue, Status> {
    let type_name = value["type"].as_str().unwrap_or("Utf8");
    let data_type: DataType = type_name
        .parse()
        .map_err(|_| Status::invalid_argument(format!("bad parameter type {type_name}")))?;
    match value["value"].as_str() {
        None => ScalarValue::try_from(&data_type).map_err(internal),
        Some(text) => ScalarValue::try_from_string(text.to_string(), &data_type).map_err(internal),
    }
}

/// Parameter rows bound by a client: one column per parameter, one row per execution.
fn parameter_rows(batches: &[RecordBatch]) -> Result<Vec<Vec<ScalarValue>>, Status> {
    let mut rows = Vec::new();
    for batch in batches {
        for row in 0..batch.num_rows() {
            let values = batch
                .columns()
                .iter()
                .map(|column| ScalarValue::try_from_array(column, row).map_err(internal))
                .collect::<Result<Vec<_>, _>>()?;
            rows.push(values);
        }
    }
    Ok(rows)
}

/// The one row of parameters of a query execution.
fn parameters_from_batches(batches: &[RecordBatch]) -> Result<Vec<ScalarValue>, Status> {
    let mut rows = parameter_rows(batches)?;
    match rows.len() {
        0 => Ok(vec![]),
        1 => Ok(rows.remove(0)),
        n => Err(Status::invalid_argument(format!(
            "a query runs with one row of parameters (got {n}); run statements that change data for many rows"
        ))),
    }
}

async fn read_batches(stream: PeekableFlightDataStream) -> Result<Vec<RecordBatch>, Status> {
    let stream = arrow_flight::decode::FlightRecordBatchStream::new_from_flight_data(
        stream.map_err(FlightError::from),
    );
    stream
        .try_collect()
        .await
        .map_err(|e| Status::invalid_argument(e.to_string()))
}

fn schema_bytes(schema: &Schema) -> Result<bytes::Bytes, Status> {
    let message: IpcMessage = SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(internal)?;
    Ok(message.0)
}

#[tonic::async_trait]
impl FlightSqlService for PolderFlightSql {
    type FlightService = PolderFlightSql;

    /// Basic authentication (`authorization: Basic ...`) answered with a session token in
    /// `authorization: Bearer ...`, which the client sends on every later call.
    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<
        Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>,
        Status,
    > {
        let response = HandshakeResponse {
            protocol_version: 0,
            payload: Default::default(),
        };
        let stream = futures::stream::once(async move { Ok(response) });
        let mut reply = Response::new(Box::pin(stream) as _);
        if let Some(auth) = &self.auth {
            let client = format!(
                "flight {}",
                request
                    .remote_addr()
                    .map(|a| a.to_string())
                    .unwrap_or_default()
            );
            let token = crate::flight_auth::handshake(auth, request.metadata(), &client).await?;
            let value = format!("Bearer {token}")
                .parse()
                .map_err(|_| Status::internal("token is not a valid header"))?;
            reply.metadata_mut().insert("authorization", value);
        }
        Ok(reply)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let info = self
            .info_for_sql(&query.query, None, request.into_inner())
            .await?;
        Ok(Response::new(info))
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let body: TicketBody = serde_json::from_slice(&ticket.statement_handle)
            .map_err(|e| Status::invalid_argument(format!("invalid ticket: {e}")))?;
        match body {
            TicketBody::Query {
                sql,
                params,
                plan_id,
            } => {
                let params = match params {
                    Some(values) => Some(
                        values
                            .iter()
                            .map(scalar_from_json)
                            .collect::<Result<Vec<_>, _>>()?,
                    ),
                    None => None,
                };
                Ok(Response::new(
                    self.stream_query(&sql, params, plan_id.as_deref()).await?,
                ))
            }
            TicketBody::Done { command, rows } => {
                let schema = Arc::new(Self::command_schema());
                let columns: Vec<ArrayRef> = vec![
                    Arc::new(StringArray::from(vec![command])),
                    Arc::new(UInt64Array::from(vec![rows])),
                ];
                let batch = RecordBatch::try_new(schema.clone(), columns).map_err(internal)?;
                Ok(Response::new(Self::batch_stream(schema, batch)))
            }
        }
    }

    async fn do_put_statement_update(
        &self,
        command: CommandStatementUpdate,
        _request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        self.engine.sync().await.map_err(status)?;
        let statement = self.single_statement(&command.query)?;
        match self.run_command(statement).await? {
            TicketBody::Done { rows, .. } => Ok(rows.map(|r| r as i64).unwrap_or(-1)),
            TicketBody::Query { .. } => Err(Status::internal("unexpected query ticket")),
        }
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        _request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        self.engine.sync().await.map_err(status)?;
        let statement = self.single_statement(&query.query)?;
        let (dataset_schema, parameter_schema) = if Self::is_query(&statement) {
            let plan = self.engine.plan(statement).await.map_err(status)?;
            let parameters = plan
                .get_parameter_types()
                .map_err(|e| status(EngineError::from(e)))?;
            let mut names: Vec<_> = parameters.into_iter().collect();
            names.sort_by_key(|(name, _)| {
                name.trim_start_matches('$')
                    .parse::<usize>()
                    .unwrap_or(usize::MAX)
            });
            let fields: Vec<Field> = names
                .into_iter()
                .map(|(name, data_type)| {
                    Field::new(name, data_type.unwrap_or(DataType::Utf8), true)
                })
                .collect();
            (plan.schema().as_arrow().clone(), Schema::new(fields))
        } else {
            (Self::command_schema(), Schema::empty())
        };
        let handle = uuid::Uuid::new_v4().simple().to_string();
        self.prepared.lock().expect("prepared lock").insert(
            handle.clone(),
            Prepared {
                sql: query.query,
                params: None,
            },
        );
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: handle.into_bytes().into(),
            dataset_schema: schema_bytes(&dataset_schema)?,
            parameter_schema: schema_bytes(&parameter_schema)?,
        })
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        _request: Request<Action>,
    ) -> Result<(), Status> {
        let handle = String::from_utf8_lossy(&query.prepared_statement_handle).to_string();
        self.prepared.lock().expect("prepared lock").remove(&handle);
        Ok(())
    }

    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let handle = String::from_utf8_lossy(&query.prepared_statement_handle).to_string();
        let batches = read_batches(request.into_inner()).await?;
        let params = parameters_from_batches(&batches)?;
        let mut prepared = self.prepared.lock().expect("prepared lock");
        let entry = prepared
            .get_mut(&handle)
            .ok_or_else(|| Status::not_found(format!("no prepared statement {handle}")))?;
        entry.params = Some(params);
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(handle.into_bytes().into()),
        })
    }

    async fn get_flight_info_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let handle = String::from_utf8_lossy(&query.prepared_statement_handle).to_string();
        let (sql, params) = {
            let prepared = self.prepared.lock().expect("prepared lock");
            let entry = prepared
                .get(&handle)
                .ok_or_else(|| Status::not_found(format!("no prepared statement {handle}")))?;
            (entry.sql.clone(), entry.params.clone())
        };
        let info = self
            .info_for_sql(&sql, params, request.into_inner())
            .await?;
        Ok(Response::new(info))
    }

    async fn do_put_prepared_statement_update(
        &self,
        query: CommandPreparedStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let handle = String::from_utf8_lossy(&query.prepared_statement_handle).to_string();
        let sql = {
            let prepared = self.prepared.lock().expect("prepared lock");
            prepared
                .get(&handle)
                .map(|entry| entry.sql.clone())
                .ok_or_else(|| Status::not_found(format!("no prepared statement {handle}")))?
        };
        let batches = read_batches(request.into_inner()).await?;
        let mut rows = parameter_rows(&batches)?;
        if rows.is_empty() {
            rows.push(vec![]);
        }
        self.engine.sync().await.map_err(status)?;
        let statement = self.single_statement(&sql)?;
        let changed = self.run_with_parameters(statement, rows).await?;
        Ok(changed as i64)
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        metadata_info(
            &query.into_builder().schema(),
            query_ticket(CommandGetCatalogs {}.as_any()),
            request,
        )
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let mut builder = query.into_builder();
        builder.append(CATALOG_NAME);
        let schema = builder.schema();
        let batch = builder.build().map_err(internal)?;
        Ok(Response::new(Self::batch_stream(schema, batch)))
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        metadata_info(&schema, query_ticket(query.as_any()), request)
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.engine.sync().await.map_err(status)?;
        let mut builder = query.into_builder();
        if let Some(catalog) = self.engine.session().catalog(CATALOG_NAME) {
            let mut names = catalog.schema_names();
            names.sort();
            for name in names {
                builder.append(CATALOG_NAME, name);
            }
        }
        let schema = builder.schema();
        let batch = builder.build().map_err(internal)?;
        Ok(Response::new(Self::batch_stream(schema, batch)))
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        metadata_info(&schema, query_ticket(query.as_any()), request)
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let tables = self.tables(query.include_schema).await?;
        let mut builder = query.into_builder();
        for (schema_name, table_name, kind, arrow_schema) in tables {
            builder
                .append(CATALOG_NAME, schema_name, table_name, kind, &arrow_schema)
                .map_err(internal)?;
        }
        let schema = builder.schema();
        let batch = builder.build().map_err(internal)?;
        Ok(Response::new(Self::batch_stream(schema, batch)))
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        metadata_info(
            &schema,
            query_ticket(CommandGetTableTypes {}.as_any()),
            request,
        )
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let mut builder = query.into_builder();
        builder.append("TABLE");
        builder.append("VIEW");
        let schema = builder.schema();
        let batch = builder.build().map_err(internal)?;
        Ok(Response::new(Self::batch_stream(schema, batch)))
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder(&self.sql_info).schema();
        metadata_info(&schema, query_ticket(query.as_any()), request)
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let builder = query.into_builder(&self.sql_info);
        let schema = builder.schema();
        let batch = builder.build().map_err(internal)?;
        Ok(Response::new(Self::batch_stream(schema, batch)))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

fn query_ticket(command: Any) -> Ticket {
    Ticket {
        ticket: command.encode_to_vec().into(),
    }
}

fn metadata_info(
    schema: &Schema,
    ticket: Ticket,
    request: Request<FlightDescriptor>,
) -> Result<Response<FlightInfo>, Status> {
    let info = FlightInfo::new()
        .try_with_schema(schema)
        .map_err(internal)?
        .with_endpoint(FlightEndpoint::new().with_ticket(ticket))
        .with_descriptor(request.into_inner());
    Ok(Response::new(info))
}

#[cfg(test)]
mod tests {
    use super::*;
    use polder_core::{Principal, Role};
    use polder_engine::access::run_as;

    fn empty_plan() -> LogicalPlan {
        LogicalPlan::EmptyRelation(datafusion::logical_expr::EmptyRelation {
            produce_one_row: true,
            schema: Arc::new(datafusion::common::DFSchema::empty()),
        })
    }

    #[tokio::test]
    async fn a_kept_plan_is_taken_once_and_only_by_its_user() {
        let planned = PlannedQueries::default();
        let ann = Principal::new("ann", Role::Analyst, "test");
        let bob = Principal::new("bob", Role::Analyst, "test");
        let id = run_as(ann.clone(), async {
            planned.keep(empty_plan(), "SELECT 1")
        })
        .await;
        // Someone else's ticket does not carry the plan (that DoGet plans again, as its user).
        assert!(
            run_as(bob.clone(), async { planned.take(&id) })
                .await
                .is_none()
        );
        let id = run_as(ann.clone(), async {
            planned.keep(empty_plan(), "SELECT 1")
        })
        .await;
        let (_, sql) = run_as(ann.clone(), async { planned.take(&id) })
            .await
            .unwrap();
        assert_eq!(sql, "SELECT 1");
        assert!(
            run_as(ann.clone(), async { planned.take(&id) })
                .await
                .is_none()
        );
        // One user cannot fill the cache: its oldest plans make room for its new ones.
        let ids: Vec<String> = run_as(ann.clone(), async {
            (0..MAX_PLANNED_PER_USER + 4)
                .map(|_| planned.keep(empty_plan(), "SELECT 2"))
                .collect()
        })
        .await;
        let bobs = run_as(bob.clone(), async {
            planned.keep(empty_plan(), "SELECT 3")
        })
        .await;
        assert_eq!(
            planned.plans.lock().unwrap().len(),
            MAX_PLANNED_PER_USER + 1
        );
        assert!(
            run_as(ann.clone(), async { planned.take(&ids[0]) })
                .await
                .is_none()
        );
        assert!(
            run_as(ann, async { planned.take(ids.last().unwrap()) })
                .await
                .is_some()
        );
        assert!(run_as(bob, async { planned.take(&bobs) }).await.is_some());
    }
}
