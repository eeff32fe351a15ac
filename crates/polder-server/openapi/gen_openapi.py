#!/usr/bin/env python3
"""Generates openapi.json (OpenAPI 3.1) for Polder's REST API from the handlers read in
crates/polder-server/src/http*.rs. Run: python3 gen_openapi.py > openapi.json"""

import json

ENGINEER = (" Needs the engineer or admin role (403 `permission_denied` otherwise; with "
            "authentication off every caller may).")
ADMIN = (" Needs the admin role (403 `permission_denied` otherwise; with authentication off "
         "every caller may).")
AUTH_OFF = (" Answers 400 `invalid_input` when authentication is off on the server "
            "(`auth.enabled = false`).")


def ref(name, kind="schemas"):
    return {"$ref": f"#/components/{kind}/{name}"}


def json_body(schema, description=None):
    out = {"content": {"application/json": {"schema": schema}}}
    if description:
        out["description"] = description
    return out


def ok(description, schema, status="200"):
    return {status: {"description": description, **json_body(schema)}}


def errors(*codes):
    return {str(code): ref(ERROR_RESPONSES[code], "responses") for code in codes}


ERROR_RESPONSES = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    408: "Cancelled",
    409: "Conflict",
    413: "PayloadTooLarge",
    415: "UnsupportedMediaType",
    422: "UnprocessableEntity",
    500: "InternalError",
    503: "Unavailable",
}


def path_param(name, description):
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": {"type": "string"}}


def op(operation_id, summary, description, tags, responses, parameters=None,
       request_body=None, security=None):
    out = {"operationId": operation_id, "summary": summary, "description": description,
           "tags": tags}
    if parameters:
        out["parameters"] = parameters
    if request_body:
        out["requestBody"] = request_body
    out["responses"] = responses
    if security is not None:
        out["security"] = security
    return out


def obj(properties, required=None, additional=None, description=None):
    out = {"type": "object", "properties": properties}
    if required:
        out["required"] = required
    if additional is not None:
        out["additionalProperties"] = additional
    if description:
        out["description"] = description
    return out


STR = {"type": "string"}
INT = {"type": "integer"}
BOOL = {"type": "boolean"}
MILLIS = {"type": "integer", "format": "int64", "description": "Milliseconds since the Unix epoch."}
MILLIS_OR_NULL = {"type": ["integer", "null"], "format": "int64",
                  "description": "Milliseconds since the Unix epoch."}
STR_LIST = {"type": "array", "items": STR}

SCHEMAS = {
    "Error": obj({
        "error": obj({
            "code": {"type": "string", "enum": [
                "invalid_input", "not_found", "already_exists", "permission_denied",
                "unauthenticated", "conflict", "unavailable", "cancelled", "internal"],
                "description": "The error's kind; it decides the HTTP status."},
            "message": STR,
            "sqlstate": {"type": "string",
                         "description": "SQLSTATE of an engine error (SQL and catalog)."},
        }, ["code", "message"]),
    }, ["error"], description="Every error Polder itself answers with (`error_response`)."),
    "SqlRequest": obj({
        "sql": {"type": "string", "description": "One or more statements separated by `;`."},
        "format": {"type": ["string", "null"], "enum": ["json", "csv", "arrow", "ipc", "arrow-stream", "parquet", None],
                   "description": "Result format; `?format=` wins over it, and both over `Accept`."},
        "max_rows": {"type": ["integer", "null"], "minimum": 0,
                     "description": "Stop after this many rows; the JSON result then says `truncated: true`. `?max_rows=` wins over it."},
        "acceleration": {"type": ["boolean", "null"],
                         "description": "`false`: run without reflections and without the results cache (default true). `?acceleration=` wins over it."},
    }, ["sql"]),
    "Reflection": obj({
        "name": STR, "source": {"type": "string", "description": "`schema.table_or_view`."},
        "kind": {"type": "string", "enum": ["raw", "aggregate"]},
        "definition": {"type": "string", "description": "The CREATE REFLECTION statement that makes it."},
        "status": {"type": "string", "enum": ["building", "ready", "failed", "invalid"]},
        "status_reason": {"type": ["string", "null"]},
        "refresh_policy": {"type": ["string", "null"], "description": "`on commit`, `every <n> s` or `manual`."},
        "staleness_seconds": {"type": ["integer", "null"]},
        "rows": {"type": ["integer", "null"]}, "size_bytes": {"type": ["integer", "null"]},
        "source_versions": {"type": "string", "description": "JSON object: source table -> Delta version held."},
        "data_version": {"type": ["integer", "null"]},
        "refreshed_at": {"type": ["string", "null"], "format": "date-time"},
        "last_refresh_ms": {"type": ["integer", "null"]},
        "last_refresh_kind": {"type": ["string", "null"], "enum": ["full", "incremental", None]},
        "usage_count": INT, "last_used_at": {"type": ["string", "null"], "format": "date-time"},
        "owner": STR,
    }, ["name", "source", "kind", "status", "usage_count"]),
    "ReflectionRequest": obj({
        "name": STR, "source": {"type": "string", "description": "`schema.table_or_view`."},
        "kind": {"type": "string", "enum": ["raw", "aggregate"]},
        "columns": {"type": "array", "items": STR, "description": "Raw: the columns it holds."},
        "dimensions": {"type": "array", "items": obj({"column": STR, "grain": {
            "type": ["string", "null"], "enum": ["hour", "day", "week", "month", "quarter", "year", None]}}, ["column"]),
            "description": "Aggregate: group keys, optionally truncated to a time grain."},
        "measures": {"type": "array", "items": obj({"column": STR, "functions": {"type": "array", "items": {
            "type": "string", "enum": ["sum", "count", "min", "max"]}}}, ["column", "functions"]),
            "description": "Aggregate: stored measures (avg is derived from sum and count)."},
        "partition_by": {"type": "array", "items": STR}, "sort_by": {"type": "array", "items": STR},
        "refresh": {"description": "`on_commit` (default), `manual`, or `{\"every_seconds\": n}`.",
                    "oneOf": [{"type": "string", "enum": ["on_commit", "manual"]},
                              obj({"every_seconds": {"type": "integer", "minimum": 1}}, ["every_seconds"])]},
        "staleness_seconds": {"type": "integer", "minimum": 0,
                              "description": "How long a reflection behind its source may still answer (default 0: never)."},
    }, ["name", "source", "kind"]),
    "SqlColumn": obj({"name": STR, "type": {"type": "string", "description": "Arrow data type, e.g. `Int64`, `Decimal128(14, 2)`."}},
                     ["name", "type"]),
    "SqlJsonResult": obj({
        "columns": {"type": "array", "items": ref("SqlColumn")},
        "rows": {"type": "array", "items": {"type": "object"},
                 "description": "One object per row, keyed by column name."},
        "row_count": INT,
        "truncated": {"type": "boolean", "const": True, "description": "Present when `max_rows` cut the result."},
        "error": obj({"code": STR, "message": STR}, ["code", "message"],
                     description="Present when execution failed after rows were streamed."),
    }, ["columns", "rows", "row_count"], description="A query's result in the JSON format (streamed)."),
    "SqlCommandResult": obj({
        "command": {"type": "string", "description": "The statement's tag (`INSERT`, `CREATE TABLE`...), or `EMPTY` when there was no statement."},
        "rows_affected": {"type": ["integer", "null"]},
    }, ["command"]),
    "CatalogDescription": obj({
        "catalog": STR,
        "schemas": {"type": "array", "items": ref("SchemaDescription")},
    }, ["catalog", "schemas"]),
    "SchemaDescription": obj({
        "name": STR, "tables": {"type": "array", "items": ref("TableDescription")},
    }, ["name", "tables"]),
    "TableDescription": obj({
        "name": STR,
        "kind": {"type": "string", "enum": ["table", "view"]},
        "columns": {"type": "array", "items": ref("ColumnDescription")},
        "row_count": {"type": ["integer", "null"], "description": "Tables: rows of the latest version, from Delta statistics."},
        "version": {"type": ["integer", "null"], "description": "Tables: latest Delta version."},
        "num_files": {"type": ["integer", "null"]},
        "size_bytes": {"type": ["integer", "null"]},
        "definition": {"type": ["string", "null"], "description": "Views: their SQL."},
        "created_at": STR,
        "error": {"type": ["string", "null"], "description": "Set when the table or view cannot be read right now."},
    }, ["name", "kind", "columns", "created_at"]),
    "ColumnDescription": obj({"name": STR, "data_type": STR, "nullable": BOOL},
                             ["name", "data_type", "nullable"]),
    "ImportBody": obj({
        "source": {"type": "string", "description": "An `s3://`, `http://` or `https://` location (file, prefix or glob)."},
        "table": {"type": "string", "description": "`schema.table`."},
        "format": {"type": ["string", "null"], "enum": ["csv", "json", "jsonl", "ndjson", "parquet", None]},
        "mode": {"type": ["string", "null"], "enum": ["append", "overwrite", "create", None],
                 "description": "Default `append`."},
    }, ["source", "table"]),
    "ImportReport": obj({
        "table": STR, "files": INT, "bytes": INT,
        "rows": {"type": ["integer", "null"], "description": "Rows the commit added, when the Delta statistics tell."},
        "version": {"type": "integer", "description": "The table's new Delta version."},
        "created": BOOL,
    }, ["table", "files", "bytes", "rows", "version", "created"]),
    "LoginRequest": obj({"username": STR, "password": STR}, ["username", "password"]),
    "LoginResponse": obj({
        "token": {"type": "string", "description": "A session token (12 hours): send it as `Authorization: Bearer <token>`."},
        "expires_at": {**MILLIS_OR_NULL, "description": "When the token expires (milliseconds since the Unix epoch)."},
        "user": STR,
        "role": {"type": "string", "enum": ["admin", "engineer", "analyst", "viewer"]},
    }, ["token", "expires_at", "user", "role"]),
    "User": obj({
        "name": STR, "role": STR, "disabled": BOOL, "created_at": MILLIS,
    }, ["name", "role", "disabled", "created_at"]),
    "NewUser": obj({"name": STR, "role": {"type": "string", "description": "A role name (`admin`, `engineer`, ...)."}, "password": STR},
                   ["name", "role", "password"]),
    "UserChange": obj({
        "password": {"type": ["string", "null"]},
        "role": {"type": ["string", "null"]},
        "disabled": {"type": ["boolean", "null"]},
    }),
    "NewToken": obj({
        "label": {"type": "string", "default": ""},
        "days": {"type": ["integer", "null"], "minimum": 0, "description": "Lifetime in days; absent means until revoked."},
    }),
    "IssuedToken": obj({
        "id": STR,
        "token": {"type": "string", "description": "Shown once."},
        "expires_at": {**MILLIS_OR_NULL, "description": "When the token expires (milliseconds since the Unix epoch); null when it does not."},
    }, ["id", "token", "expires_at"]),
    "SecretInfo": obj({
        "name": STR, "description": STR, "created_by": STR, "created_at": MILLIS, "updated_at": MILLIS,
    }, ["name", "description", "created_by", "created_at", "updated_at"],
        description="A stored secret as shown: never its value."),
    "SecretBody": obj({"value": STR, "description": {"type": "string", "default": ""}}, ["value"]),
    "SyncMode": {"type": "string", "enum": ["full_refresh_overwrite", "full_refresh_append",
                                            "incremental_append", "incremental_append_deduped"]},
    "StreamSpec": obj({
        "name": STR,
        "sync_mode": {**ref("SyncMode"), "default": "full_refresh_overwrite"},
        "cursor_field": STR,
        "primary_key": STR_LIST,
    }, ["name"], additional=False),
    "SyncOptions": obj({
        "max_rejects": {"type": "integer", "default": 1000},
        "retries": {"type": "integer", "default": 2},
        "retry_backoff_secs": {"type": "integer", "default": 30},
    }, additional=False),
    "ConnectionSpec": obj({
        "name": {"type": "string", "pattern": "^[a-z][a-z0-9_]{0,47}$"},
        "source": {"type": "string", "enum": ["postgres", "mysql", "files", "http", "airbyte"]},
        "config": {"type": "object", "description": "The source's configuration (see docs/ingestion.md); credentials in it are sealed and replaced by `secret:` references."},
        "streams": {"type": "array", "items": ref("StreamSpec")},
        "schedule": {"type": "string", "description": "A cron expression (5 fields, UTC; 6 with seconds)."},
        "options": ref("SyncOptions"),
    }, ["name", "source"], additional=False),
    "ConnectionPatch": obj({
        "config": {"type": ["object", "null"], "description": "A JSON merge patch of the configuration (`null` removes a field; `********` keeps a stored credential)."},
        "streams": {"type": ["array", "null"], "items": ref("StreamSpec")},
        "schedule": {"type": ["string", "null"], "description": "`null` or an empty string removes the schedule."},
        "options": {"oneOf": [ref("SyncOptions"), {"type": "null"}]},
    }, additional=False, description="Absent fields stay as they are."),
    # Spelled out, not `allOf` of ConnectionSpec: its `additionalProperties: false` would refuse
    # the extra fields.
    "Connection": obj({
        "name": STR,
        "source": {"type": "string", "enum": ["postgres", "mysql", "files", "http", "airbyte"]},
        "config": {"type": "object", "description": "Credentials appear only as `secret:` references."},
        "streams": {"type": "array", "items": ref("StreamSpec")},
        "schedule": {"type": "string", "description": "Absent for manual runs only."},
        "options": ref("SyncOptions"),
        "created_by": STR, "created_at": MILLIS, "updated_at": MILLIS,
    }, ["name", "source", "config", "streams", "options", "created_by", "created_at", "updated_at"],
        description="A stored connection; credentials appear only as references."),
    "DiscoveredStream": obj({
        "name": STR,
        "columns": {"type": "array", "items": {"type": "array", "prefixItems": [STR, STR], "minItems": 2, "maxItems": 2},
                    "description": "`[column, type]` pairs, the type as Polder will store it."},
        "primary_key": STR_LIST,
        "default_cursor": {"type": ["string", "null"]},
        "cursor_candidates": STR_LIST,
        "sync_modes": {"type": "array", "items": ref("SyncMode")},
    }, ["name", "columns", "primary_key", "default_cursor", "cursor_candidates", "sync_modes"]),
    "StreamOutcome": obj({
        "stream": STR, "table": STR, "sync_mode": ref("SyncMode"),
        "status": {"type": "string", "description": "`succeeded`, `up_to_date` or `failed`."},
        "records": INT, "rejects": INT,
        "version": {"type": "integer", "description": "The table's version after the commit."},
        "schema_changes": STR_LIST,
        "error": STR,
    }, ["stream", "table", "sync_mode", "status", "records", "rejects"]),
    "Job": obj({
        "id": STR, "connection": STR,
        "kind": {"type": "string", "description": "`sync`."},
        "trigger": {"type": "string", "description": "`manual:<user>`, `api:<user>`, `schedule`, or `resume` (started again after its coordinator died)."},
        "status": {"type": "string", "enum": ["running", "succeeded", "failed"]},
        "attempt": INT,
        "created_at": MILLIS, "started_at": MILLIS_OR_NULL, "finished_at": MILLIS_OR_NULL,
        "duration_ms": {"type": ["integer", "null"]},
        "records": INT, "bytes": INT, "rejects": INT,
        "streams": {"type": "array", "items": ref("StreamOutcome")},
        "error": {"type": "string", "description": "Absent when empty."},
        "log_tail": {"type": "string", "description": "The connector's last stderr lines (failed Airbyte jobs); absent when empty."},
        "runner": {"type": "string", "description": "`host:pid` of the coordinator that runs or ran it."},
    }, ["id", "connection", "kind", "trigger", "status", "attempt", "created_at", "started_at",
        "finished_at", "duration_ms", "records", "bytes", "rejects", "streams", "runner"]),
    "TransformCommand": {"type": "string", "enum": ["build", "run", "test", "seed"]},
    "ScheduledRun": obj({
        "command": {**ref("TransformCommand"), "default": "build"},
        "select": STR_LIST, "exclude": STR_LIST,
        "full_refresh": {"type": "boolean", "default": False},
        "vars": {"type": "object"},
        "threads": {"type": ["integer", "null"], "minimum": 0},
        "fail_fast": {"type": "boolean", "default": False},
    }, additional=False, description="What a scheduled run of a project does."),
    "Project": obj({
        "name": STR, "root": {"type": "string", "description": "The project's directory on the server."},
        "created_by": STR, "updated_at": MILLIS,
        "schedule": {"type": ["string", "null"], "description": "Cron expression (UTC), or null."},
        "scheduled_run": {"oneOf": [ref("ScheduledRun"), {"type": "null"}]},
    }, ["name", "root", "created_by", "updated_at", "schedule", "scheduled_run"]),
    "ProjectNode": obj({
        "unique_id": STR,
        "resource_type": {"type": "string", "description": "`model`, `seed`, `test`, `source`, ..."},
        "name": STR,
        "relation": {"type": "string", "description": "`schema.name` it builds; empty for tests and exposures."},
        "materialized": STR,
        "depends_on": {"type": ["array", "null"], "items": STR, "description": "Unique ids it depends on."},
        "description": STR, "file_path": STR,
        "last_run": {"oneOf": [obj({
            "status": {"type": "string", "description": "`success`, `error`, `skipped`, `pass`, `warn` or `fail`."},
            "message": STR, "at": MILLIS_OR_NULL,
            "duration_ms": {"type": ["integer", "null"]}, "run_id": STR,
        }, ["status", "message", "at", "duration_ms", "run_id"]), {"type": "null"}],
            "description": "Null when the node never ran."},
    }, ["unique_id", "resource_type", "name", "relation", "materialized", "depends_on",
        "description", "file_path", "last_run"]),
    "ProjectDetail": obj({"name": STR, "nodes": {"type": "array", "items": ref("ProjectNode")}},
                         ["name", "nodes"]),
    "ScheduleRequest": obj({
        "schedule": {"type": ["string", "null"], "description": "A cron expression (UTC); null or empty stops the schedule."},
        "run": ref("ScheduledRun"),
    }, additional=False),
    "ScheduleResponse": obj({
        "name": STR, "schedule": {"type": ["string", "null"]}, "scheduled_run": ref("ScheduledRun"),
    }, ["name", "schedule", "scheduled_run"]),
    "RunRequest": obj({
        "select": STR_LIST, "exclude": STR_LIST,
        "full_refresh": {"type": "boolean", "default": False},
        "vars": {"type": "object", "description": "Project variables (`var()`)."},
        "threads": {"type": ["integer", "null"], "default": 4, "description": "Clamped to 1..64."},
        "fail_fast": {"type": "boolean", "default": False},
    }, additional=False),
    "TransformRun": obj({
        "id": STR, "project": STR, "command": ref("TransformCommand"),
        "args": {"description": "Selection and flags of the run (`which`, `select`, `exclude`, `full_refresh`, `threads`, `fail_fast`, `vars`)."},
        "trigger": {"type": "string", "description": "`api:<user>`, `schedule`, ..."},
        "status": {"type": "string", "enum": ["running", "succeeded", "failed"]},
        "started_at": MILLIS, "finished_at": MILLIS_OR_NULL,
        "summary": {"description": "Counts by status: `PASS`, `WARN`, `ERROR`, `SKIP`, `TOTAL` (`{}` while running)."},
        "results": {"description": "Node results as in dbt's run_results.json (`[]` while running)."},
        "error": {"type": "string", "description": "Why the whole run failed; empty otherwise."},
    }, ["id", "project", "command", "args", "trigger", "status", "started_at", "finished_at",
        "summary", "results", "error"]),
    "RunStarted": obj({"id": STR, "status": {"type": "string", "const": "running"}}, ["id", "status"],
                      description="Answered when the run's record did not appear in time."),
    "Me": obj({"user": STR, "role": {"type": "string", "enum": ["admin", "engineer", "analyst", "viewer"]},
               "auth_enabled": BOOL}, ["user", "role", "auth_enabled"]),
    "TokenInfo": obj({
        "id": STR, "user": STR, "kind": {"type": "string", "enum": ["session", "personal"]}, "label": STR,
        "created_at": {"type": "string", "format": "date-time"},
        "expires_at": {"type": ["string", "null"], "format": "date-time"}, "revoked": BOOL,
    }, ["id", "user", "kind", "label", "created_at", "expires_at", "revoked"], description="A token as listed: never its secret."),
    "SavedQueryRequest": obj({"name": STR, "sql": STR, "description": {"type": "string", "default": ""}},
                             ["name", "sql"], additional=False),
    "SavedQuery": obj({
        "id": STR, "name": STR, "description": STR, "owner": STR, "sql": STR,
        "created_at": {"type": "string", "format": "date-time"}, "updated_at": {"type": "string", "format": "date-time"},
    }, ["id", "name", "description", "owner", "sql", "created_at", "updated_at"]),
    "ChartFilter": obj({
        "column": STR,
        "op": {"type": "string", "enum": ["=", "!=", ">", ">=", "<", "<=", "in", "not_in", "like", "is_null", "not_null", "between"]},
        "value": {"description": "A string, number or boolean; a list for `in`/`not_in`; `[low, high]` for `between`; "
                                 "none for `is_null`/`not_null`. As a dashboard filter, null, \"\" or [] means all."},
    }, ["column", "op"], additional=False),
    "ChartSpec": obj({
        "type": {"type": "string", "enum": ["bar", "stacked_bar", "line", "area", "pie", "scatter", "big_number",
                                            "pivot", "table", "heatmap"]},
        "source": {"oneOf": [obj({"table": {"type": "string", "description": "`schema.table` or `schema.view`."}}, ["table"], additional=False),
                             obj({"saved_query": {"type": "string", "description": "A saved query's id."}}, ["saved_query"], additional=False)]},
        "dimensions": {"type": "array", "items": obj({
            "column": STR,
            "time_grain": {"type": "string", "enum": ["day", "week", "month", "quarter", "year"]},
        }, ["column"], additional=False)},
        "measures": {"type": "array", "items": obj({
            "agg": {"type": "string", "enum": ["sum", "avg", "count", "count_distinct", "min", "max"]},
            "column": {"type": "string", "description": "Absent only for `count` (rows)."},
            "label": {"type": "string", "description": "The result column's name (default `<agg>_<column>`, or `count`)."},
        }, ["agg"], additional=False)},
        "filters": {"type": "array", "items": ref("ChartFilter")},
        "sort": obj({"by": {"type": "string", "description": "A dimension's column or a measure's label."},
                     "desc": {"type": "boolean", "default": False}}, ["by"], additional=False),
        "limit": {"type": "integer", "minimum": 1, "default": 1000, "description": "Capped at 10000."},
        "options": {"type": "object", "description": "Presentation options, kept as sent."},
    }, ["type", "source"], additional=False,
        description="What a chart shows. Each type needs its shape: bar, stacked_bar, line, area: 1–2 dimensions "
                    "(category, series) and ≥1 measure; pie: 1 and 1; scatter: 2 measures (x, y) and ≤2 dimensions (points, colour); "
                    "big_number: 1 measure and ≤1 time dimension (trend); heatmap: 2 dimensions and 1 measure; pivot: "
                    "1–2 dimensions and ≥1 measure; table: any columns."),
    "ChartRequest": obj({"name": STR, "description": {"type": "string", "default": ""}, "spec": ref("ChartSpec")},
                        ["name", "spec"], description="Other fields (those the server sets) are ignored."),
    "Chart": obj({
        "id": STR, "name": STR, "description": STR, "owner": STR, "spec": ref("ChartSpec"),
        "created_at": {"type": "string", "format": "date-time"}, "updated_at": {"type": "string", "format": "date-time"},
    }, ["id", "name", "description", "owner", "spec", "created_at", "updated_at"]),
    "ChartDataRequest": obj({
        "spec": {**ref("ChartSpec"), "description": "Only for `POST /api/v1/charts/data`."},
        "filters": {"type": "array", "items": ref("ChartFilter"),
                    "description": "Dashboard filters: each applies where the chart's source has its column."},
    }, additional=False),
    "ChartData": obj({
        "columns": {"type": "array", "items": ref("SqlColumn")},
        "rows": {"type": "array", "items": {"type": "object"}, "description": "Objects keyed by dimension column and measure label."},
        "row_count": INT,
        "truncated": {"type": "boolean", "description": "More rows than the spec's limit."},
        "sql": {"type": "string", "description": "The query that ran."},
        "elapsed_ms": INT,
        "ignored_filters": {**STR_LIST, "description": "Dashboard filters on columns the source does not have."},
    }, ["columns", "rows", "row_count", "truncated", "sql", "elapsed_ms", "ignored_filters"]),
    "Tile": obj({"chart_id": STR,
                 "x": {"type": "integer", "minimum": 0, "maximum": 11}, "y": {"type": "integer", "minimum": 0},
                 "w": {"type": "integer", "minimum": 1, "maximum": 12}, "h": {"type": "integer", "minimum": 1, "maximum": 24}},
                ["chart_id", "x", "y", "w", "h"], additional=False, description="A chart's place on the 12-column grid."),
    "DashboardFilter": obj({
        "column": STR, "label": {"type": "string", "default": ""},
        "op": {"type": "string", "default": "=", "description": "A `ChartFilter` operator."},
        "default": {"description": "The filter's starting value."},
    }, ["column"], additional=False),
    "DashboardRequest": obj({
        "name": STR, "description": {"type": "string", "default": ""},
        "refresh_seconds": {"type": "integer", "default": 0, "description": "Auto-refresh period; 0 is off, else at least 5."},
        "shared_with": {**STR_LIST, "description": "`user:<name>`, `role:<role>` or `*`."},
        "filters": {"type": "array", "items": ref("DashboardFilter")},
        "tiles": {"type": "array", "items": ref("Tile")},
    }, ["name"], description="Other fields (those the server sets) are ignored."),
    "Dashboard": obj({
        "id": STR, "name": STR, "description": STR, "owner": STR,
        "refresh_seconds": INT, "shared_with": STR_LIST,
        "filters": {"type": "array", "items": ref("DashboardFilter")},
        "tiles": {"type": "array", "items": ref("Tile")},
        "charts": {"type": "array", "items": ref("Chart"), "description": "`GET /api/v1/dashboards/{id}` only: the charts of its tiles."},
        "created_at": {"type": "string", "format": "date-time"}, "updated_at": {"type": "string", "format": "date-time"},
    }, ["id", "name", "description", "owner", "refresh_seconds", "shared_with", "filters", "tiles", "created_at", "updated_at"]),
    "ProbeStatus": obj({"status": {"type": "string", "enum": ["ok", "error"]}, "message": STR}, ["status"]),
    "Readiness": obj({
        "status": {"type": "string", "enum": ["ready", "not_ready"]},
        "catalog": ref("ProbeStatus"), "lake": ref("ProbeStatus"),
    }, ["status", "catalog", "lake"]),
}

PLAIN = {"text/plain": {"schema": {"type": "string"}}}
ERR_JSON = {"application/json": {"schema": ref("Error")}}

RESPONSES = {
    "BadRequest": {"description": "`invalid_input`. Extractor rejections of axum (a malformed query string, malformed JSON in a `Json` body) answer plain text instead.",
                   "content": {**ERR_JSON, **PLAIN}},
    "Unauthorized": {"description": "`unauthenticated`: no, wrong or expired credentials (authentication on).", "content": ERR_JSON},
    "Forbidden": {"description": "`permission_denied`: the caller's role may not do this.", "content": ERR_JSON},
    "NotFound": {"description": "`not_found`.", "content": ERR_JSON},
    "Cancelled": {"description": "`cancelled`.", "content": ERR_JSON},
    "Conflict": {"description": "`already_exists` or `conflict`.", "content": ERR_JSON},
    "PayloadTooLarge": {"description": "The body is over the 2 MB limit (axum's, plain text).", "content": PLAIN},
    "UnsupportedMediaType": {"description": "A JSON body without `Content-Type: application/json` (axum's, plain text).", "content": PLAIN},
    "UnprocessableEntity": {"description": "Well-formed JSON of the wrong shape (axum's, plain text).", "content": PLAIN},
    "InternalError": {"description": "`internal`.", "content": ERR_JSON},
    "Unavailable": {"description": "`unavailable`: the catalog store or the lake does not answer.", "content": ERR_JSON},
}

OPEN = []  # no credentials needed, even with authentication on
# Errors every store-backed handler may give (authentication on / catalog down).
COMMON = (401, 500, 503)
# Errors of a handler taking `Json<T>` directly (axum's rejection).
JSON_REJECT = (400, 413, 415, 422)

PATHS = {}


def route(path, method, operation):
    PATHS.setdefault(path, {})[method] = operation


route("/", "get", op("index", "The web UI", "The web UI's page (static, embedded in the binary; it logs in through "
                     "`POST /api/v1/login`). Sent with a Content-Security-Policy that allows scripts only from this server. Open.",
                     ["ui"], {"200": {"description": "HTML.", "content": {"text/html": {"schema": STR}}}}, security=OPEN))
UI_FILE = path_param("path", "The file's path under the folder.")
UI_FILE_RESPONSES = {
    "200": {"description": "The file, gzip-compressed when the client accepts it; `ETag` and `Cache-Control: no-cache`.",
            "content": {"*/*": {"schema": STR}}},
    "304": {"description": "Not modified (`If-None-Match` matched the `ETag`)."},
    "404": ref("NotFound", "responses"),
}
route("/assets/{path}", "get", op("uiAsset", "A web UI file", "The UI's own scripts and styles. Open.", ["ui"],
                                  UI_FILE_RESPONSES, parameters=[UI_FILE], security=OPEN))
route("/vendor/{path}", "get", op("uiVendor", "A vendored library file",
                                  "Third-party libraries at pinned versions, with their licenses (`ui/vendor.sh`). Open.",
                                  ["ui"], UI_FILE_RESPONSES, parameters=[UI_FILE], security=OPEN))
route("/health", "get", op("health", "Liveness probe", "200 while the process serves. Open.", ["probes"],
                           ok("Alive.", obj({"status": {"type": "string", "const": "ok"}}, ["status"])), security=OPEN))
route("/ready", "get", op("ready", "Readiness probe",
                          "Ready when both the catalog store and the lake answer; 503 says which failed. Open.", ["probes"],
                          {"200": {"description": "Ready.", **json_body(ref("Readiness"))},
                           "503": {"description": "Not ready.", **json_body(ref("Readiness"))}}, security=OPEN))
route("/metrics", "get", op("metrics", "Prometheus metrics",
                            "Prometheus text format. Open unless the server protects metrics (`protect_metrics`), "
                            "then it needs credentials like `/api/v1`.", ["probes"],
                            {"200": {"description": "Metrics.", "content": {"text/plain": {"schema": STR}}},
                             "401": ref("Unauthorized", "responses")},
                            security=[{}, {"basic": []}, {"bearer": []}]))
route("/api/v1/openapi.json", "get", op("openapi", "This document", "The OpenAPI 3.1 description of the REST API.", ["meta"],
                                        {"200": {"description": "The document.", **json_body({"type": "object"})},
                                         "401": ref("Unauthorized", "responses")}))

FORMAT_PARAM = {"name": "format", "in": "query", "required": False,
                "description": "Result format; wins over the body's `format` and the `Accept` header.",
                "schema": {"type": "string", "enum": ["json", "csv", "arrow", "ipc", "arrow-stream", "parquet"]}}
MAX_ROWS_PARAM = {"name": "max_rows", "in": "query", "required": False,
                  "description": "Stop after this many rows (JSON says `truncated: true`); wins over the body's `max_rows`.",
                  "schema": {"type": "integer", "minimum": 0}}
route("/api/v1/sql", "post", op(
    "runSql", "Run SQL",
    "Runs the statements and answers with the last one's result, streamed. The format comes from `?format=`, "
    "else the body's `format`, else `Accept` (default JSON). An error before the first rows gets a 4xx/5xx; "
    "an error after that ends the stream (JSON closes with an `error` member). Statements without rows answer "
    "`{\"command\", \"rows_affected\"}`. The body is read as JSON whatever its `Content-Type`.",
    ["sql"],
    {"200": {"description": "The last statement's result.", "content": {
        "application/json": {"schema": {"oneOf": [ref("SqlJsonResult"), ref("SqlCommandResult")]}},
        "text/csv": {"schema": STR},
        "application/vnd.apache.arrow.stream": {"schema": {"type": "string", "contentMediaType": "application/vnd.apache.arrow.stream"}},
        "application/vnd.apache.parquet": {"schema": {"type": "string", "contentMediaType": "application/vnd.apache.parquet"}}}},
     **errors(400, 401, 403, 404, 408, 409, 413, 500, 503)},
    parameters=[FORMAT_PARAM, MAX_ROWS_PARAM,
                {"name": "acceleration", "in": "query", "required": False,
                 "description": "`false`: no reflections, no results cache.", "schema": {"type": "boolean"}},
                {"name": "Accept", "in": "header", "required": False,
                 "description": "`application/json`, `text/csv`, `application/vnd.apache.arrow.stream` or `application/vnd.apache.parquet`.",
                 "schema": STR}],
    request_body={"required": True, **json_body(ref("SqlRequest"))}))
# Reflections.
REFLECTION = path_param("name", "Reflection name.")
route("/api/v1/reflections", "get", op(
    "listReflections", "List reflections", "Every reflection with its status, size, freshness and use (as `system.reflections`).",
    ["reflections"], {**ok("Reflections.", obj({"reflections": {"type": "array", "items": ref("Reflection")}}, ["reflections"])),
                      **errors(*COMMON)}))
route("/api/v1/reflections", "post", op(
    "createReflection", "Create a reflection",
    "Makes a raw or aggregate reflection of a table or view and builds it before answering (audited)." + ENGINEER,
    ["reflections"], {**ok("Created and built.", ref("Reflection"), "201"), **errors(*JSON_REJECT, 403, 404, 409, *COMMON)},
    request_body={"required": True, **json_body(ref("ReflectionRequest"))}))
route("/api/v1/reflections/{name}", "get", op(
    "getReflection", "One reflection", "A reflection's status, size, freshness and use.", ["reflections"],
    {**ok("The reflection.", ref("Reflection")), **errors(404, *COMMON)}, parameters=[REFLECTION]))
route("/api/v1/reflections/{name}", "delete", op(
    "deleteReflection", "Drop a reflection", "Drops it and deletes its data (audited)." + ENGINEER, ["reflections"],
    {"204": {"description": "Dropped."}, **errors(403, 404, *COMMON)}, parameters=[REFLECTION]))
route("/api/v1/reflections/{name}/refresh", "post", op(
    "refreshReflection", "Refresh a reflection",
    "Refreshes it now: incremental when the source only appended since the last refresh, full otherwise or with "
    "`?full=true`; nothing when it is up to date." + ENGINEER, ["reflections"],
    {**ok("The reflection after the refresh.", ref("Reflection")), **errors(400, 403, 404, 409, *COMMON)},
    parameters=[REFLECTION, {"name": "full", "in": "query", "required": False, "schema": {"type": "boolean"}}]))
route("/api/v1/catalog", "get", op(
    "describeCatalog", "Describe the catalog",
    "Every schema, table and view with columns and types; tables with their latest Delta version, row count, "
    "file count and size; views with their SQL. A table that cannot be read carries `error`.",
    ["sql"], {**ok("The catalog.", ref("CatalogDescription")), **errors(*COMMON)}))
route("/api/v1/import", "post", op(
    "importFile", "Load a file into a table",
    "Either an upload (the file is the body, `?table=` required, streamed to disk, no size limit) or, with "
    "`Content-Type: application/json`, a body naming an `s3://` or `http(s)://` source (at most 1 MB). "
    "Local paths of the server are refused (400). One commit." + ENGINEER,
    ["sql"],
    {**ok("Loaded.", ref("ImportReport")), **errors(400, 401, 403, 404, 409, 500, 503)},
    parameters=[
        {"name": "table", "in": "query", "required": False, "description": "`schema.table`; required for uploads.", "schema": STR},
        {"name": "format", "in": "query", "required": False, "description": "Uploads: the file's format (else told from `filename`, else csv).",
         "schema": {"type": "string", "enum": ["csv", "json", "jsonl", "ndjson", "parquet"]}},
        {"name": "mode", "in": "query", "required": False, "description": "Uploads: default `append`.",
         "schema": {"type": "string", "enum": ["append", "overwrite", "create"]}},
        {"name": "filename", "in": "query", "required": False, "description": "Uploads: the file's name, to tell its format and compression.", "schema": STR},
    ],
    request_body={"required": True, "content": {
        "application/json": {"schema": ref("ImportBody")},
        "application/octet-stream": {"schema": {"type": "string", "contentMediaType": "application/octet-stream"}},
        "text/csv": {"schema": STR}}}))

# Authentication.
route("/api/v1/login", "post", op(
    "login", "Log in", "Exchanges a user name and password for a 12-hour session token. Open." + AUTH_OFF,
    ["auth"], {**ok("Logged in.", ref("LoginResponse")), **errors(400, 401, 500, 503)},
    request_body={"required": True, **json_body(ref("LoginRequest"))}, security=OPEN))
route("/api/v1/users", "get", op(
    "listUsers", "List users", "All users." + ADMIN + AUTH_OFF, ["auth"],
    {**ok("Users.", obj({"users": {"type": "array", "items": ref("User")}}, ["users"])), **errors(400, 403, *COMMON)}))
route("/api/v1/users", "post", op(
    "addUser", "Add a user", "Adds a user with a role and password (audited)." + ADMIN + AUTH_OFF, ["auth"],
    {**ok("Added.", obj({"name": STR, "role": STR}, ["name", "role"]), "201"),
     **errors(*JSON_REJECT, 403, 409, *COMMON)},
    request_body={"required": True, **json_body(ref("NewUser"))}))
route("/api/v1/users/{name}", "patch", op(
    "changeUser", "Change a user",
    "Changes password, role or disabled flag (audited). Admins change anything; a user may change its own "
    "password (403 otherwise)." + AUTH_OFF, ["auth"],
    {**ok("Changed.", obj({"name": STR, "changed": STR_LIST}, ["name", "changed"])),
     **errors(*JSON_REJECT, 403, 404, *COMMON)},
    parameters=[path_param("name", "User name.")],
    request_body={"required": True, **json_body(ref("UserChange"))}))
route("/api/v1/users/{name}", "delete", op(
    "deleteUser", "Delete a user",
    "Deletes the user with its tokens, grants and attributes (audited); an admin cannot delete itself (400)." + ADMIN + AUTH_OFF,
    ["auth"], {**ok("Deleted.", obj({"deleted": STR}, ["deleted"])), **errors(400, 403, 404, *COMMON)},
    parameters=[path_param("name", "User name.")]))
route("/api/v1/users/{name}/attributes", "put", op(
    "setUserAttributes", "Set user attributes",
    "Sets attributes read by row policies (`current_user_attribute`); `null` removes one. Names: letters, digits, `_` (audited)."
    + ADMIN + AUTH_OFF, ["auth"],
    {**ok("Set.", obj({"name": STR, "attributes": {"type": "object", "additionalProperties": {"type": ["string", "null"]}}},
                      ["name", "attributes"])),
     **errors(*JSON_REJECT, 403, 404, *COMMON)},
    parameters=[path_param("name", "User name.")],
    request_body={"required": True, **json_body({"type": "object", "additionalProperties": {"type": ["string", "null"]}})}))
route("/api/v1/tokens", "post", op(
    "createToken", "Create a personal access token",
    "A token for the caller, shown once; `days` sets its lifetime (none: until revoked)." + AUTH_OFF, ["auth"],
    {**ok("Created.", ref("IssuedToken"), "201"), **errors(*JSON_REJECT, *COMMON)},
    request_body={"required": True, **json_body(ref("NewToken"))}))
route("/api/v1/tokens/{id}", "delete", op(
    "revokeToken", "Revoke a token", "The token's owner or an admin revokes it (403 otherwise)." + AUTH_OFF, ["auth"],
    {**ok("Revoked.", obj({"revoked": STR}, ["revoked"])), **errors(400, 403, 404, *COMMON)},
    parameters=[path_param("id", "Token id.")]))

route("/api/v1/tokens", "get", op(
    "listTokens", "List tokens", "The caller's tokens (admins: everyone's), never their secrets." + AUTH_OFF, ["auth"],
    {**ok("Tokens.", obj({"tokens": {"type": "array", "items": ref("TokenInfo")}}, ["tokens"])), **errors(400, *COMMON)}))
route("/api/v1/me", "get", op(
    "me", "Who am I", "The caller's user name and role, and whether the server asks for credentials.", ["auth"],
    {**ok("The caller.", ref("Me")), **errors(*COMMON)}))

# Saved queries, charts and dashboards (the web UI's objects).
VISIBILITY = (" Saved queries are their owner's (admins see all). Charts and dashboards are visible to their owner, "
              "engineers and admins, and dashboards to the users and roles in `shared_with`; a chart is visible through "
              "any dashboard showing it. Only the owner or an admin changes or deletes. Viewers may only read dashboards "
              "and draw their charts (403 otherwise). Invisible objects answer 404.")
ID = path_param("id", "The object's id.")
ANY_BODY = lambda name: {"required": True, **json_body(ref(name))}
for path, kind, schema, request, tag in [
        ("/api/v1/saved-queries", "saved_queries", "SavedQuery", "SavedQueryRequest", "savedQueries"),
        ("/api/v1/charts", "charts", "Chart", "ChartRequest", "charts"),
        ("/api/v1/dashboards", "dashboards", "Dashboard", "DashboardRequest", "dashboards")]:
    noun = schema[0].lower() + "".join(" " + c.lower() if c.isupper() else c for c in schema[1:])
    route(path, "get", op(f"list{schema}s", f"List {noun}s", f"The {noun}s the caller may see." + VISIBILITY,
                          ["ui objects"], {**ok(f"{schema}s.", obj({kind: {"type": "array", "items": ref(schema)}}, [kind])),
                                           **errors(403, *COMMON)}))
    route(path, "post", op(f"create{schema}", f"Create a {noun}", f"The caller becomes its owner." + VISIBILITY,
                           ["ui objects"], {**ok("Created.", ref(schema), "201"), **errors(400, 403, *COMMON)},
                           request_body=ANY_BODY(request)))
    route(path + "/{id}", "get", op(f"get{schema}", f"Get a {noun}",
                                    (f"The {noun}" + (" and the charts of its tiles." if schema == "Dashboard" else ".")) + VISIBILITY,
                                    ["ui objects"], {**ok(f"The {noun}.", ref(schema)), **errors(404, *COMMON)},
                                    parameters=[ID]))
    route(path + "/{id}", "put", op(f"update{schema}", f"Replace a {noun}", "Name, description and content." + VISIBILITY,
                                    ["ui objects"], {**ok("Replaced.", ref(schema)), **errors(400, 403, 404, *COMMON)},
                                    parameters=[ID], request_body=ANY_BODY(request)))
    route(path + "/{id}", "delete", op(f"delete{schema}", f"Delete a {noun}", "Deleted for everyone." + VISIBILITY,
                                       ["ui objects"], {**ok("Deleted.", obj({"deleted": STR}, ["deleted"])),
                                                        **errors(403, 404, *COMMON)}, parameters=[ID]))
route("/api/v1/charts/data", "post", op(
    "previewChartData", "Draw an unsaved chart",
    "Runs `spec` with the caller's own rights (the chart builder's preview); `filters` as on a dashboard. "
    "A spec of the wrong shape, an unknown column or a failing query answer 4xx with the reason. Not for viewers.",
    ["ui objects"], {**ok("The chart's rows.", ref("ChartData")), **errors(400, 403, 404, *COMMON)},
    request_body=ANY_BODY("ChartDataRequest")))
route("/api/v1/charts/{id}/data", "post", op(
    "chartData", "Draw a saved chart",
    "Runs the chart with its owner's table rights while row policies and column masks apply to the caller "
    "(as a view does), with the dashboard's `filters` where the source has their columns. The body is optional.",
    ["ui objects"], {**ok("The chart's rows.", ref("ChartData")), **errors(400, 403, 404, *COMMON)},
    parameters=[ID], request_body={"required": False, **json_body(ref("ChartDataRequest"))}))
route("/api/v1/dashboards/{id}/values", "get", op(
    "dashboardFilterValues", "Values for a dashboard filter",
    "Up to 500 distinct non-null values of `column`, from the first chart of the dashboard whose source has it "
    "(with that chart's owner's rights); empty when none has it.",
    ["ui objects"], {**ok("Values.", obj({"values": {"type": "array"}}, ["values"])), **errors(400, 403, 404, *COMMON)},
    parameters=[ID, {"name": "column", "in": "query", "required": True, "schema": STR}]))

# Secrets.
route("/api/v1/secrets", "get", op(
    "listSecrets", "List secrets", "Names and descriptions of stored secrets, never values." + ENGINEER, ["secrets"],
    {**ok("Secrets.", obj({"secrets": {"type": "array", "items": ref("SecretInfo")}}, ["secrets"])), **errors(403, *COMMON)}))
route("/api/v1/secrets/{name}", "put", op(
    "putSecret", "Store or replace a secret", "201 when created, 200 when replaced (audited without the value)." + ENGINEER,
    ["secrets"],
    {**ok("Replaced.", obj({"name": STR, "replaced": {"type": "boolean", "const": True}}, ["name", "replaced"])),
     **ok("Created.", obj({"name": STR, "replaced": {"type": "boolean", "const": False}}, ["name", "replaced"]), "201"),
     **errors(*JSON_REJECT, 403, *COMMON)},
    parameters=[path_param("name", "Secret name: letters, digits, `_`, `-`, `.`; at most 100.")],
    request_body={"required": True, **json_body(ref("SecretBody"))}))
route("/api/v1/secrets/{name}", "delete", op(
    "deleteSecret", "Delete a secret", "Deletes a stored secret (audited)." + ENGINEER, ["secrets"],
    {**ok("Deleted.", obj({"deleted": STR}, ["deleted"])), **errors(400, 403, 404, *COMMON)},
    parameters=[path_param("name", "Secret name.")]))

# Connections and jobs.
CONN = path_param("name", "Connection name.")
route("/api/v1/connections", "get", op(
    "listConnections", "List connections", "Every connection, credentials as `secret:` references." + ENGINEER,
    ["connections"],
    {**ok("Connections.", obj({"connections": {"type": "array", "items": ref("Connection")}}, ["connections"])),
     **errors(403, *COMMON)}))
route("/api/v1/connections", "post", op(
    "createConnection", "Create a connection",
    "Credentials in `config` are sealed in the secret vault (audited)." + ENGINEER, ["connections"],
    {**ok("Created.", ref("Connection"), "201"), **errors(400, 403, 409, *COMMON)},
    request_body={"required": True, **json_body(ref("ConnectionSpec"))}))
route("/api/v1/connections/{name}", "get", op(
    "getConnection", "Get a connection", "The connection, credentials as references." + ENGINEER, ["connections"],
    {**ok("The connection.", ref("Connection")), **errors(403, 404, *COMMON)}, parameters=[CONN]))
route("/api/v1/connections/{name}", "patch", op(
    "editConnection", "Edit a connection", "Absent fields stay; `config` is a JSON merge patch (audited)." + ENGINEER,
    ["connections"], {**ok("The changed connection.", ref("Connection")), **errors(400, 403, 404, 409, *COMMON)},
    parameters=[CONN], request_body={"required": True, **json_body(ref("ConnectionPatch"))}))
route("/api/v1/connections/{name}", "delete", op(
    "deleteConnection", "Delete a connection",
    "Deletes it and its sealed credentials; its tables and jobs stay (audited)." + ENGINEER, ["connections"],
    {**ok("Deleted.", obj({"deleted": STR}, ["deleted"])), **errors(403, 404, 409, *COMMON)}, parameters=[CONN]))
route("/api/v1/connections/{name}/check", "post", op(
    "checkConnection", "Check a connection", "Tries to reach the source with the stored configuration." + ENGINEER,
    ["connections"],
    {**ok("Reachable.", obj({"ok": {"type": "boolean", "const": True}, "message": STR}, ["ok", "message"])),
     **errors(400, 403, 404, *COMMON)}, parameters=[CONN]))
route("/api/v1/connections/{name}/discover", "post", op(
    "discoverConnection", "Discover streams", "The source's streams with columns, keys, cursor candidates and sync modes." + ENGINEER,
    ["connections"],
    {**ok("Streams.", obj({"streams": {"type": "array", "items": ref("DiscoveredStream")}}, ["streams"])),
     **errors(400, 403, 404, *COMMON)}, parameters=[CONN]))
WAIT_SYNC = {"name": "wait", "in": "query", "required": False,
             "description": "Answer when the run has finished (200) instead of when it has started (202).",
             "schema": {"type": "boolean", "default": False}}
route("/api/v1/connections/{name}/sync", "post", op(
    "syncConnection", "Sync a connection",
    "Starts a sync: 202 with the job as soon as it is recorded; with `?wait=true`, 200 with the finished job "
    "(a failed run is still 200 with `status: failed`; errors before the run starts are 4xx). A second sync "
    "of the same connection while one runs is refused (audited)." + ENGINEER,
    ["connections"],
    {**ok("Finished (`wait=true`).", ref("Job")), **ok("Started.", ref("Job"), "202"),
     **errors(400, 403, 404, 408, 409, *COMMON)}, parameters=[CONN, WAIT_SYNC]))
route("/api/v1/jobs", "get", op(
    "listJobs", "List jobs", "Sync jobs, newest first." + ENGINEER, ["connections"],
    {**ok("Jobs.", obj({"jobs": {"type": "array", "items": ref("Job")}}, ["jobs"])), **errors(400, 403, *COMMON)},
    parameters=[{"name": "connection", "in": "query", "required": False, "description": "Only this connection's jobs.", "schema": STR},
                {"name": "limit", "in": "query", "required": False, "description": "At most this many (clamped to 1..10000).",
                 "schema": {"type": "integer", "default": 100}}]))
route("/api/v1/jobs/{id}", "get", op(
    "getJob", "Get a job", "One job in full." + ENGINEER, ["connections"],
    {**ok("The job.", ref("Job")), **errors(403, 404, *COMMON)}, parameters=[path_param("id", "Job id.")]))

# Transformation projects.
PROJECT = path_param("name", "Project name (known once a run command has run it on this catalog).")
route("/api/v1/projects", "get", op(
    "listProjects", "List transformation projects", "The known projects with their schedules." + ENGINEER,
    ["projects"],
    {**ok("Projects.", obj({"projects": {"type": "array", "items": ref("Project")}}, ["projects"])), **errors(403, *COMMON)}))
route("/api/v1/projects/{name}", "get", op(
    "getProject", "Get a project's nodes", "Its nodes: type, relation, materialization, `depends_on`, last run." + ENGINEER,
    ["projects"], {**ok("The project.", ref("ProjectDetail")), **errors(403, 404, *COMMON)}, parameters=[PROJECT]))
route("/api/v1/projects/{name}", "patch", op(
    "scheduleProject", "Set or clear a project's schedule",
    "`schedule` is a cron expression (UTC), null to stop; `run` says what a scheduled run does (audited). "
    "A malformed body answers 400 with the Error shape." + ENGINEER,
    ["projects"], {**ok("Scheduled.", ref("ScheduleResponse")), **errors(400, 403, 404, *COMMON)},
    parameters=[PROJECT], request_body={"required": True, **json_body(ref("ScheduleRequest"))}))
route("/api/v1/projects/{name}/runs", "get", op(
    "listRuns", "List a project's runs", "Runs, newest first: status, summary counts, node results." + ENGINEER,
    ["projects"],
    {**ok("Runs.", obj({"runs": {"type": "array", "items": ref("TransformRun")}}, ["runs"])), **errors(400, 403, *COMMON)},
    parameters=[PROJECT, {"name": "limit", "in": "query", "required": False,
                          "description": "At most this many (clamped to 1..1000).", "schema": {"type": "integer", "default": 20}}]))
route("/api/v1/projects/{name}/runs/{id}", "get", op(
    "getRun", "Get a run", "One run of the project." + ENGINEER, ["projects"],
    {**ok("The run.", ref("TransformRun")), **errors(403, 404, *COMMON)},
    parameters=[PROJECT, path_param("id", "Run id.")]))
route("/api/v1/projects/{name}/{command}", "post", op(
    "runProject", "Run a project command",
    "Runs `build`, `run`, `test` or `seed` (another command: 404). The body is optional (without a "
    "`Content-Type` the defaults apply). 202 with the run once it is recorded; with `?wait=true`, 200 with "
    "the finished run (a failed run is 200 with `status: failed`). A second run of the project while one "
    "runs in this server is refused with 409 (audited)." + ENGINEER,
    ["projects"],
    {**ok("Finished (`wait=true`).", ref("TransformRun")),
     **ok("Started.", {"oneOf": [ref("TransformRun"), ref("RunStarted")]}, "202"),
     **errors(*JSON_REJECT, 403, 404, 409, *COMMON)},
    parameters=[PROJECT, {"name": "command", "in": "path", "required": True, "description": "The dbt command.",
                          "schema": ref("TransformCommand")},
                {"name": "wait", "in": "query", "required": False, "description": "Answer when the run has finished.",
                 "schema": {"type": "boolean", "default": False}}],
    request_body={"required": False, **json_body(ref("RunRequest"))}))

DOC = {
    "openapi": "3.1.0",
    "info": {
        "title": "Polder",
        "version": "0.1.0",
        "description": "Polder's REST API (port 9047). Every `/api/v1` call except `POST /api/v1/login` needs "
                       "`Authorization: Bearer <token>` (a session token from login or a personal access token) "
                       "or HTTP basic credentials, unless authentication is off on the server. Errors are "
                       "`{\"error\": {\"code\", \"message\", \"sqlstate\"?}}` with the status of their kind. "
                       "Request bodies are limited to 2 MB (413), except uploads to `/api/v1/import`. "
                       "Unknown paths answer 404 `not_found` (401 first when authentication is on).",
    },
    "servers": [{"url": "/"}],
    "security": [{"basic": []}, {"bearer": []}],
    "tags": [{"name": n} for n in ["ui", "probes", "meta", "sql", "auth", "ui objects", "secrets", "connections", "projects", "reflections"]],
    "paths": PATHS,
    "components": {
        "securitySchemes": {
            "basic": {"type": "http", "scheme": "basic", "description": "User name and password on every request."},
            "bearer": {"type": "http", "scheme": "bearer",
                       "description": "A session token from `POST /api/v1/login` (12 hours) or a personal access token from `POST /api/v1/tokens`."},
        },
        "schemas": SCHEMAS,
        "responses": RESPONSES,
    },
}

if __name__ == "__main__":
    print(json.dumps(DOC, indent=2, ensure_ascii=False))
