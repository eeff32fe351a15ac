//! Polder's transformations: dbt projects run natively, with no Python and no adapter.
//!
//! - [`Project::load`] reads `dbt_project.yml`, models, seeds, macros, tests and YAML
//!   properties, resolving configs as dbt does ([`project`]);
//! - [`Project::compile`] renders a node's Jinja (minijinja with dbt's context: `ref`, `source`,
//!   `config`, `var`, `is_incremental`, macros, `dbt.*` cross-database macros) ([`jinja`]);
//! - [`Graph`] checks the DAG (cycles, missing refs, duplicates) and applies dbt's selection
//!   syntax ([`graph`]);
//! - [`run()`] materializes models (view, table, incremental, ephemeral), loads seeds and runs
//!   tests on the engine, in DAG order on N threads ([`run`](mod@run));
//! - [`Transformations`] is what the CLI and the HTTP API call: runs recorded in the catalog,
//!   `target/manifest.json` and `target/run_results.json` written in dbt's shapes, and a docs
//!   site with the lineage graph ([`docs_site`]).

pub mod artifacts;
mod builtin_macros;
pub mod compile;
pub mod docs_site;
mod error;
pub mod freshness;
pub mod graph;
pub mod jinja;
pub mod project;
pub mod run;
mod seeds;
mod service;

#[cfg(test)]
mod test_support;

pub use artifacts::NodeResult;
pub use compile::{
    CompileContext, CompiledNode, QueryResult, QueryRunner, RelationKind, RelationLookup,
    test_query,
};
pub use error::{Result, TransformError};
pub use freshness::FreshnessResult;
pub use graph::Graph;
pub use project::{
    ColumnInfo, Exposure, LoadOptions, Node, NodeConfig, Project, ResourceType, SourceTable,
    Target, TestInfo,
};
pub use run::{Command, Progress, RunOptions, RunReport};
pub use service::{LoadedProject, RunOutcome, ScheduledRun, Transformations, new_run_id};
