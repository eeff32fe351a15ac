//! Transparent substitution: planner rules that answer (part of) a query from a reflection.
//!
//! - [`SubstituteAggregates`] (an analyzer rule, after type coercion): an `Aggregate` over
//!   filters and projections of one source table becomes a re-aggregation of an aggregate
//!   reflection — exact groups, roll-ups to coarser dimensions or time grains, filters on
//!   dimensions, measures derived from stored ones (count from row counts, avg from sum and
//!   count, count distinct of a dimension). Every output keeps its name, qualifier and type.
//! - [`SubstituteScans`] (an optimizer rule, last): a table scan whose needed columns a raw
//!   reflection holds reads the reflection (sorted / partitioned, so filters prune more).
//!
//! Both apply anywhere in a plan (subqueries, either side of a join), only to tables read at a
//! version the reflection holds, and never to tables that row policies or column masks govern
//! for the reader (those are not plain table scans by the time the planner sees them).

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchema, Result as DfResult, ScalarValue, TableReference};
use datafusion::datasource::provider_as_source;
use datafusion::functions_aggregate::expr_fn::{count_distinct, max, min, sum};
use datafusion::logical_expr::expr::{AggregateFunction, ScalarFunction};
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{
    Aggregate, Expr, LogicalPlan, LogicalPlanBuilder, SubqueryAlias, TableScan, cast, lit,
};
use datafusion::optimizer::analyzer::AnalyzerRule;
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};

use super::definition::{Grain, MeasureFn, Stored};
use super::{
    Loaded, Registry, acceleration_enabled, explaining, note, scanned_table, scanned_tables,
};

/// The source relation under an aggregate: a plain table scan of a Polder table.
struct Source<'a> {
    name: String,
    versions: Vec<(String, i64, String)>,
    schema: &'a DFSchema,
}

fn strip_casts(expr: &Expr) -> &Expr {
    match expr {
        Expr::Cast(c) => strip_casts(&c.expr),
        Expr::TryCast(c) => strip_casts(&c.expr),
        Expr::Alias(a) => strip_casts(&a.expr),
        other => other,
    }
}

fn unalias(expr: &Expr) -> &Expr {
    match expr {
        Expr::Alias(a) => unalias(&a.expr),
        other => other,
    }
}

/// Maps expressions over the source's columns to expressions over one reflection's columns.
struct Mapper<'a> {
    loaded: &'a Loaded,
}

impl Mapper<'_> {
    fn raw_dimension(&self, column: &str) -> Option<&str> {
        self.loaded
            .stored
            .iter()
            .find_map(|(name, what)| match what {
                Stored::Column(c) if c == column => Some(name.as_str()),
                _ => None,
            })
    }

    fn truncated(&self, column: &str) -> Vec<(Grain, &str)> {
        self.loaded
            .stored
            .iter()
            .filter_map(|(name, what)| match what {
                Stored::Truncated(c, grain) if c == column => Some((*grain, name.as_str())),
                _ => None,
            })
            .collect()
    }

    fn measure(&self, column: &str, function: MeasureFn) -> Option<&str> {
        self.loaded
            .stored
            .iter()
            .find_map(|(name, what)| match what {
                Stored::Measure(c, f) if c == column && *f == function => Some(name.as_str()),
                _ => None,
            })
    }

    fn rows(&self) -> Option<&str> {
        self.loaded
            .stored
            .iter()
            .find_map(|(name, what)| match what {
                Stored::Rows => Some(name.as_str()),
                _ => None,
            })
    }

    /// An expression over dimensions (a group key, a filter) in the reflection's columns.
    fn dimension_expr(&self, expr: &Expr) -> Result<Expr, String> {
        let mut problem: Option<String> = None;
        let mapped = expr
            .clone()
            .transform_down(|node| {
                if let Expr::ScalarFunction(ScalarFunction { func, args }) = &node
                    && func.name() == "date_trunc"
                    && args.len() == 2
                    && let Expr::Literal(
                        ScalarValue::Utf8(Some(grain))
                        | ScalarValue::Utf8View(Some(grain))
                        | ScalarValue::LargeUtf8(Some(grain)),
                        _,
                    ) = unalias(&args[0])
                    && let Some(wanted) = Grain::parse(grain)
                    && let Expr::Column(column) = strip_casts(&args[1])
                    && self.raw_dimension(&column.name).is_none()
                {
                    let stored = self
                        .truncated(&column.name)
                        .into_iter()
                        .find(|(held, _)| wanted.rolls_up_from(*held));
                    return match stored {
                        Some((_, name)) => {
                            let mut args = args.clone();
                            args[1] = Expr::Column(Column::from_name(name));
                            Ok(Transformed::new(
                                Expr::ScalarFunction(ScalarFunction {
                                    func: func.clone(),
                                    args,
                                }),
                                true,
                                TreeNodeRecursion::Jump,
                            ))
                        }
                        None => {
                            problem.get_or_insert_with(|| {
                                format!(
                                    "'{}' is not held at a grain that rolls up to {}",
                                    column.name,
                                    wanted.as_str()
                                )
                            });
                            Ok(Transformed::new(node, false, TreeNodeRecursion::Jump))
                        }
                    };
                }
                match &node {
                    Expr::Column(column) => match self.raw_dimension(&column.name) {
                        Some(name) => Ok(Transformed::yes(Expr::Column(Column::from_name(name)))),
                        None => {
                            problem.get_or_insert_with(|| {
                                if self.truncated(&column.name).is_empty() {
                                    format!("column '{}' is not a dimension of it", column.name)
                                } else {
                                    format!(
                                        "column '{}' is held only truncated to a time grain",
                                        column.name
                                    )
                                }
                            });
                            Ok(Transformed::no(node))
                        }
                    },
                    Expr::ScalarSubquery(_)
                    | Expr::Exists(_)
                    | Expr::InSubquery(_)
                    | Expr::OuterReferenceColumn(..) => {
                        problem.get_or_insert_with(|| "it has a subquery".to_string());
                        Ok(Transformed::new(node, false, TreeNodeRecursion::Jump))
                    }
                    Expr::ScalarFunction(ScalarFunction { func, .. })
                        if func.signature().volatility
                            == datafusion::logical_expr::Volatility::Volatile =>
                    {
                        problem.get_or_insert_with(|| format!("{} is volatile", func.name()));
                        Ok(Transformed::no(node))
                    }
                    _ => Ok(Transformed::no(node)),
                }
            })
            .map_err(|e| e.to_string())?
            .data;
        match problem {
            Some(problem) => Err(problem),
            None => Ok(mapped),
        }
    }

    /// One aggregate of the query as a re-aggregation of stored measures.
    fn aggregate(&self, expr: &Expr, source: &Source<'_>) -> Result<Expr, String> {
        let Expr::AggregateFunction(AggregateFunction { func, params }) = unalias(expr) else {
            return Err(format!("'{expr}' is not a plain aggregate"));
        };
        if params.filter.is_some() || !params.order_by.is_empty() {
            return Err(format!("{} has a FILTER or ORDER BY", func.name()));
        }
        let name = func.name().to_ascii_lowercase();
        let arg = params.args.first().map(strip_casts);
        let column = match arg {
            Some(Expr::Column(c)) => Some(c.name.as_str()),
            _ => None,
        };
        let rows = || {
            self.rows()
                .map(|r| Expr::Column(Column::from_name(r)))
                .ok_or_else(|| "it holds no row counts".to_string())
        };
        let measure = |f: MeasureFn| -> Result<Expr, String> {
            let column = column.ok_or_else(|| format!("{name} of an expression, not a column"))?;
            self.measure(column, f)
                .map(|m| Expr::Column(Column::from_name(m)))
                .ok_or_else(|| format!("it does not hold {}({column})", f.as_str()))
        };
        let zero_if_null = |e: Expr| datafusion::functions::expr_fn::coalesce(vec![e, lit(0i64)]);
        match name.as_str() {
            "count" if params.distinct => {
                let arg = params
                    .args
                    .first()
                    .ok_or("count(DISTINCT) without an argument")?;
                Ok(count_distinct(self.dimension_expr(arg)?))
            }
            "count" => match arg {
                None => Ok(zero_if_null(sum(rows()?))),
                Some(Expr::Literal(value, _)) if !value.is_null() => Ok(zero_if_null(sum(rows()?))),
                _ => Ok(zero_if_null(sum(measure(MeasureFn::Count)?))),
            },
            "sum" if !params.distinct => Ok(sum(measure(MeasureFn::Sum)?)),
            "min" | "max" => {
                let function = if name == "min" {
                    MeasureFn::Min
                } else {
                    MeasureFn::Max
                };
                let stored = measure(function).or_else(|missing| {
                    params
                        .args
                        .first()
                        .ok_or(missing.clone())
                        .and_then(|a| self.dimension_expr(a).map_err(|_| missing))
                })?;
                Ok(if function == MeasureFn::Min {
                    min(stored)
                } else {
                    max(stored)
                })
            }
            "avg" | "mean" if !params.distinct => {
                let column =
                    column.ok_or_else(|| "avg of an expression, not a column".to_string())?;
                if let Ok(field) = source.schema.field_with_unqualified_name(column)
                    && matches!(
                        field.data_type(),
                        DataType::Decimal32(..)
                            | DataType::Decimal64(..)
                            | DataType::Decimal128(..)
                            | DataType::Decimal256(..)
                    )
                {
                    return Err(format!(
                        "avg({column}) of a DECIMAL is not derived (its exact scale rules differ from sum/count)"
                    ));
                }
                let total = cast(sum(measure(MeasureFn::Sum)?), DataType::Float64);
                let count = cast(sum(measure(MeasureFn::Count)?), DataType::Float64);
                Ok(total / count)
            }
            other => Err(format!(
                "{other}{} cannot be derived from it",
                if params.distinct { " DISTINCT" } else { "" }
            )),
        }
    }
}

/// Layers between an aggregate and its table: filters, and projections to see through.
enum Layer {
    Filter(Expr),
    Project(HashMap<String, Expr>),
}

fn inline(expr: &Expr, projection: &HashMap<String, Expr>) -> Expr {
    expr.clone()
        .transform(|node| match &node {
            Expr::Column(c) => match projection.get(&c.name) {
                Some(inner) => Ok(Transformed::yes(inner.clone())),
                None => Ok(Transformed::no(node)),
            },
            _ => Ok(Transformed::no(node)),
        })
        .map(|t| t.data)
        .unwrap_or_else(|_| expr.clone())
}

/// The analyzer rule for aggregate reflections.
#[derive(Debug)]
pub(crate) struct SubstituteAggregates {
    pub registry: Arc<Registry>,
}

impl AnalyzerRule for SubstituteAggregates {
    fn name(&self) -> &str {
        "polder_reflections_aggregate"
    }

    fn analyze(&self, plan: LogicalPlan, config: &ConfigOptions) -> DfResult<LogicalPlan> {
        if !acceleration_enabled() || self.registry.all().is_empty() {
            return Ok(plan);
        }
        plan.transform_down_with_subqueries(|node| {
            let LogicalPlan::Aggregate(aggregate) = &node else {
                return Ok(Transformed::no(node));
            };
            match self.rewrite(aggregate, config)? {
                Some(replaced) => Ok(Transformed::new(replaced, true, TreeNodeRecursion::Jump)),
                None => Ok(Transformed::no(node)),
            }
        })
        .map(|t| t.data)
    }
}

/// Where the walk under an aggregate ended: a table scan, or an inlined view.
enum Leaf<'a> {
    Table(&'a TableScan),
    View(String, &'a SubqueryAlias),
}

impl SubstituteAggregates {
    /// `schema.view` when `alias` names (schema-qualified, as an inlined view is) the source
    /// of an aggregate reflection. A bare alias may be the user's own name for anything.
    fn reflected_view(&self, alias: &TableReference) -> Option<String> {
        let name = match alias {
            TableReference::Partial { schema, table } => format!("{schema}.{table}"),
            TableReference::Full { schema, table, .. } => format!("{schema}.{table}"),
            TableReference::Bare { .. } => return None,
        };
        self.registry
            .of_source(&name)
            .iter()
            .any(|r| matches!(r.definition.kind, super::Kind::Aggregate { .. }))
            .then_some(name)
    }

    fn rewrite(
        &self,
        aggregate: &Aggregate,
        config: &ConfigOptions,
    ) -> DfResult<Option<LogicalPlan>> {
        // Walk down to the table, collecting filters and seeing through projections.
        let mut groups: Vec<Expr> = aggregate.group_expr.clone();
        let mut aggregates: Vec<Expr> = aggregate.aggr_expr.clone();
        let mut filters: Vec<Expr> = Vec::new();
        let mut node = aggregate.input.as_ref();
        let mut layers = Vec::new();
        let leaf = loop {
            match node {
                LogicalPlan::Filter(filter) => {
                    layers.push(Layer::Filter(filter.predicate.clone()));
                    node = filter.input.as_ref();
                }
                LogicalPlan::SubqueryAlias(alias) => {
                    if let Some(view) = self.reflected_view(&alias.alias) {
                        break Leaf::View(view, alias);
                    }
                    node = alias.input.as_ref()
                }
                LogicalPlan::Projection(projection) => {
                    let mut names = HashMap::new();
                    for (expr, field) in projection.expr.iter().zip(projection.schema.fields()) {
                        names.insert(field.name().clone(), unalias(expr).clone());
                    }
                    layers.push(Layer::Project(names));
                    node = projection.input.as_ref();
                }
                LogicalPlan::TableScan(scan) => break Leaf::Table(scan),
                _ => return Ok(None),
            }
        };
        let (name, versions, schema) = match leaf {
            Leaf::Table(scan) => {
                if !scan.filters.is_empty() || scan.fetch.is_some() {
                    return Ok(None);
                }
                let Some((name, version, id)) = scanned_table(scan) else {
                    return Ok(None);
                };
                (
                    name.clone(),
                    vec![(name, version, id)],
                    scan.projected_schema.as_ref(),
                )
            }
            Leaf::View(name, alias) => {
                // Every table under the view must be a plain table scan: a governed table
                // (row policies, masks for this reader) is not, and then nothing is served.
                let (versions, plain) = scanned_tables(&alias.input);
                if !plain {
                    for candidate in self.registry.of_source(&name) {
                        note(format!(
                            "reflection {} not used: the view reads a table governed for this reader",
                            candidate.record.name
                        ));
                    }
                    return Ok(None);
                }
                (name, versions, alias.schema.as_ref())
            }
        };
        let candidates: Vec<_> = self
            .registry
            .of_source(&name)
            .into_iter()
            .filter(|r| matches!(r.definition.kind, super::Kind::Aggregate { .. }))
            .collect();
        if candidates.is_empty() {
            return Ok(None);
        }
        if groups.iter().any(|g| matches!(g, Expr::GroupingSet(_))) {
            for candidate in &candidates {
                note(format!(
                    "reflection {} not used: GROUPING SETS, ROLLUP and CUBE are not derived",
                    candidate.record.name
                ));
            }
            return Ok(None);
        }
        for layer in &layers {
            match layer {
                Layer::Filter(predicate) => filters.push(predicate.clone()),
                Layer::Project(names) => {
                    groups = groups.iter().map(|e| inline(e, names)).collect();
                    aggregates = aggregates.iter().map(|e| inline(e, names)).collect();
                    filters = filters.iter().map(|e| inline(e, names)).collect();
                }
            }
        }
        let source = Source {
            name: name.clone(),
            versions,
            schema,
        };
        for candidate in candidates {
            match self.try_candidate(
                aggregate,
                &candidate,
                &source,
                &groups,
                &aggregates,
                &filters,
                config,
            ) {
                Ok(plan) => {
                    served(
                        &self.registry,
                        &candidate,
                        &format!("aggregate on {}", source.name),
                    );
                    return Ok(Some(plan));
                }
                Err(reason) => not_used(&candidate, &reason),
            }
        }
        Ok(None)
    }

    #[allow(clippy::too_many_arguments)]
    fn try_candidate(
        &self,
        aggregate: &Aggregate,
        loaded: &Loaded,
        source: &Source<'_>,
        groups: &[Expr],
        aggregates: &[Expr],
        filters: &[Expr],
        config: &ConfigOptions,
    ) -> Result<LogicalPlan, String> {
        let table = loaded.usable()?;
        loaded.fresh_for(&source.versions)?;
        let mapper = Mapper { loaded };
        let mapped_filters = filters
            .iter()
            .map(|f| {
                mapper
                    .dimension_expr(f)
                    .map_err(|e| format!("a filter: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mapped_groups = groups
            .iter()
            .map(|g| {
                mapper
                    .dimension_expr(g)
                    .map_err(|e| format!("a group key: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mapped_aggregates = aggregates
            .iter()
            .enumerate()
            .map(|(i, a)| {
                mapper
                    .aggregate(a, source)
                    .map(|e| e.alias(format!("polder_a{i}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let build = || -> DfResult<LogicalPlan> {
            let mut builder = LogicalPlanBuilder::scan(
                table.reference(),
                provider_as_source(table.clone() as Arc<dyn datafusion::catalog::TableProvider>),
                None,
            )?;
            if let Some(predicate) = conjunction(mapped_filters.clone()) {
                builder = builder.filter(predicate)?;
            }
            let grouped = builder
                .aggregate(
                    mapped_groups
                        .iter()
                        .enumerate()
                        .map(|(i, g)| g.clone().alias(format!("polder_g{i}"))),
                    mapped_aggregates.clone(),
                )?
                .build()?;
            // Same names, qualifiers and types as the aggregate it replaces.
            let grouped_schema = grouped.schema().clone();
            let outputs = aggregate
                .schema
                .iter()
                .enumerate()
                .map(|(i, (qualifier, field))| {
                    let (new_qualifier, new_field) = grouped_schema.qualified_field(i);
                    let column =
                        Expr::Column(Column::new(new_qualifier.cloned(), new_field.name()));
                    let typed = if new_field.data_type() == field.data_type() {
                        column
                    } else {
                        cast(column, field.data_type().clone())
                    };
                    typed.alias_qualified(qualifier.cloned(), field.name())
                })
                .collect::<Vec<_>>();
            let plan = LogicalPlanBuilder::from(grouped)
                .project(outputs)?
                .build()?;
            // The new expressions meet new column types: coerce them as the planner would.
            datafusion::optimizer::analyzer::type_coercion::TypeCoercion::new()
                .analyze(plan, config)
        };
        let plan = build().map_err(|e| format!("could not plan it ({e})"))?;
        if plan.schema().fields().len() != aggregate.schema.fields().len() {
            return Err("its plan has another shape".to_string());
        }
        Ok(plan)
    }
}

/// The optimizer rule for raw reflections.
#[derive(Debug)]
pub(crate) struct SubstituteScans {
    pub registry: Arc<Registry>,
}

impl OptimizerRule for SubstituteScans {
    fn name(&self) -> &str {
        "polder_reflections_raw"
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> DfResult<Transformed<LogicalPlan>> {
        if !acceleration_enabled() || self.registry.all().is_empty() {
            return Ok(Transformed::no(plan));
        }
        plan.transform_up_with_subqueries(|node| {
            let LogicalPlan::TableScan(scan) = &node else {
                return Ok(Transformed::no(node));
            };
            match self.replace(scan)? {
                Some(replaced) => Ok(Transformed::yes(replaced)),
                None => Ok(Transformed::no(node)),
            }
        })
    }
}

impl SubstituteScans {
    fn replace(&self, scan: &TableScan) -> DfResult<Option<LogicalPlan>> {
        let Some((name, version, id)) = scanned_table(scan) else {
            return Ok(None);
        };
        let candidates: Vec<_> = self
            .registry
            .of_source(&name)
            .into_iter()
            .filter(|r| matches!(r.definition.kind, super::Kind::Raw { .. }))
            .collect();
        if candidates.is_empty() {
            return Ok(None);
        }
        let mut needed: Vec<String> = scan
            .projected_schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        for filter in &scan.filters {
            for column in filter.column_refs() {
                if !needed.contains(&column.name) {
                    needed.push(column.name.clone());
                }
            }
        }
        let versions = vec![(name.clone(), version, id)];
        for candidate in candidates {
            let attempt = (|| -> Result<LogicalPlan, String> {
                let table = candidate.usable()?;
                candidate.fresh_for(&versions)?;
                let schema = datafusion::catalog::TableProvider::schema(table.as_ref());
                let source_schema = scan.source.schema();
                // Every column the scan needs, with the type the query expects.
                let mut wanted = Vec::with_capacity(needed.len());
                let mut same_types = true;
                for column in &needed {
                    let index = schema
                        .index_of(column)
                        .map_err(|_| format!("column '{column}' is not in it"))?;
                    let expected = source_schema
                        .field_with_name(column)
                        .map_err(|_| format!("column '{column}' is not in the source"))?
                        .data_type()
                        .clone();
                    same_types &= schema.field(index).data_type() == &expected;
                    wanted.push((index, column.clone(), expected));
                }
                let reference = table.reference();
                let source = provider_as_source(
                    table.clone() as Arc<dyn datafusion::catalog::TableProvider>
                );
                if same_types {
                    let projection = scan
                        .projected_schema
                        .fields()
                        .iter()
                        .map(|f| schema.index_of(f.name()).map_err(|e| e.to_string()))
                        .collect::<Result<Vec<_>, _>>()?;
                    let filters = scan
                        .filters
                        .iter()
                        .map(|f| requalify(f, &reference))
                        .collect::<Vec<_>>();
                    let replaced =
                        datafusion::logical_expr::TableScanBuilder::new(reference, source)
                            .with_projection(Some(projection))
                            .with_filters(filters)
                            .with_fetch(scan.fetch)
                            .build()
                            .map_err(|e| e.to_string())?;
                    return SubqueryAlias::try_new(
                        Arc::new(LogicalPlan::TableScan(replaced)),
                        scan.table_name.clone(),
                    )
                    .map(LogicalPlan::SubqueryAlias)
                    .map_err(|e| e.to_string());
                }
                // Some column is stored in another type (a partition column comes back
                // dictionary-encoded): read, cast back, then filter as the scan would have.
                let build = || -> DfResult<LogicalPlan> {
                    let read =
                        datafusion::logical_expr::TableScanBuilder::new(reference.clone(), source)
                            .with_projection(Some(wanted.iter().map(|(i, _, _)| *i).collect()))
                            .build()?;
                    let cast_back = wanted
                        .iter()
                        .map(|(_, name, expected)| {
                            cast(
                                Expr::Column(Column::new(Some(reference.clone()), name)),
                                expected.clone(),
                            )
                            .alias_qualified(Some(scan.table_name.clone()), name)
                        })
                        .collect::<Vec<_>>();
                    let mut builder = LogicalPlanBuilder::from(LogicalPlan::TableScan(read))
                        .project(cast_back)?;
                    if let Some(predicate) = conjunction(scan.filters.clone()) {
                        builder = builder.filter(predicate)?;
                    }
                    let outputs = scan
                        .projected_schema
                        .fields()
                        .iter()
                        .map(|f| Expr::Column(Column::new(Some(scan.table_name.clone()), f.name())))
                        .collect::<Vec<_>>();
                    builder = builder.project(outputs)?;
                    if let Some(fetch) = scan.fetch {
                        builder = builder.limit(0, Some(fetch))?;
                    }
                    builder.build()
                };
                build().map_err(|e| format!("could not plan it ({e})"))
            })();
            match attempt {
                Ok(plan) => {
                    served(&self.registry, &candidate, &format!("raw on {name}"));
                    return Ok(Some(plan));
                }
                Err(reason) => not_used(&candidate, &reason),
            }
        }
        Ok(None)
    }
}

/// Says (to `EXPLAIN`) that `loaded` served, and counts the use outside `EXPLAIN`.
fn served(registry: &Registry, loaded: &Loaded, how: &str) {
    note(format!(
        "served by reflection {} ({how})",
        loaded.record.name
    ));
    if !explaining() {
        registry.used(&loaded.record.name);
    }
}

fn not_used(loaded: &Loaded, reason: &str) {
    note(format!(
        "reflection {} not used: {reason}",
        loaded.record.name
    ));
}

fn requalify(expr: &Expr, reference: &TableReference) -> Expr {
    expr.clone()
        .transform(|node| match &node {
            Expr::Column(c) => Ok(Transformed::yes(Expr::Column(Column::new(
                Some(reference.clone()),
                c.name.clone(),
            )))),
            _ => Ok(Transformed::no(node)),
        })
        .map(|t| t.data)
        .unwrap_or_else(|_| expr.clone())
}
