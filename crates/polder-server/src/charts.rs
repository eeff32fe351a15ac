//! Charts: a chart's spec (what to group, measure, filter and sort over which table or saved
//! query) and the one SQL query that answers it. The spec is checked against the source's
//! columns before any SQL is written, and every name and value is quoted, so a spec can
//! never inject SQL of its own.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// The most rows a chart query answers with; more are cut and the answer says so.
pub const MAX_CHART_ROWS: u64 = 10_000;
/// Rows a chart asks for when its spec names no limit.
pub const DEFAULT_CHART_ROWS: u64 = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChartType {
    Bar,
    StackedBar,
    Line,
    Area,
    Pie,
    Scatter,
    BigNumber,
    Pivot,
    Table,
    Heatmap,
}

/// Where a chart's rows come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChartSource {
    /// `schema.table` or `schema.view`.
    Table(String),
    /// The id of a saved query, whose SQL is read each time the chart runs.
    SavedQuery(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeGrain {
    Day,
    Week,
    Month,
    Quarter,
    Year,
}

impl TimeGrain {
    fn as_str(self) -> &'static str {
        match self {
            TimeGrain::Day => "day",
            TimeGrain::Week => "week",
            TimeGrain::Month => "month",
            TimeGrain::Quarter => "quarter",
            TimeGrain::Year => "year",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dimension {
    pub column: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_grain: Option<TimeGrain>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregate {
    Sum,
    Avg,
    Count,
    CountDistinct,
    Min,
    Max,
}

impl Aggregate {
    fn as_str(self) -> &'static str {
        match self {
            Aggregate::Sum => "sum",
            Aggregate::Avg => "avg",
            Aggregate::Count => "count",
            Aggregate::CountDistinct => "count_distinct",
            Aggregate::Min => "min",
            Aggregate::Max => "max",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Measure {
    pub agg: Aggregate,
    /// Absent only for `count` (rows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    /// The result column's name; `<agg>_<column>` (or `count`) by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

impl Measure {
    pub fn label(&self) -> String {
        if let Some(label) = self.label.as_deref().filter(|l| !l.trim().is_empty()) {
            return label.to_string();
        }
        match &self.column {
            Some(column) => format!("{}_{column}", self.agg.as_str()),
            None => "count".to_string(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FilterOp {
    #[serde(rename = "=")]
    Eq,
    #[serde(rename = "!=")]
    NotEq,
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = ">=")]
    GtEq,
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = "<=")]
    LtEq,
    #[serde(rename = "in")]
    In,
    #[serde(rename = "not_in")]
    NotIn,
    #[serde(rename = "like")]
    Like,
    #[serde(rename = "is_null")]
    IsNull,
    #[serde(rename = "not_null")]
    NotNull,
    #[serde(rename = "between")]
    Between,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    pub column: String,
    pub op: FilterOp,
    #[serde(default)]
    pub value: serde_json::Value,
}

impl Filter {
    /// A dashboard filter set to "all": no value to filter by.
    pub fn is_unset(&self) -> bool {
        if matches!(self.op, FilterOp::IsNull | FilterOp::NotNull) {
            return false;
        }
        match &self.value {
            serde_json::Value::Null => true,
            serde_json::Value::String(text) => text.is_empty(),
            serde_json::Value::Array(items) => items.is_empty(),
            _ => false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sort {
    /// A dimension's column or a measure's label.
    pub by: String,
    #[serde(default)]
    pub desc: bool,
}

/// What a chart shows. Stored as the chart's body in the catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChartSpec {
    #[serde(rename = "type")]
    pub chart_type: ChartType,
    pub source: ChartSource,
    #[serde(default)]
    pub dimensions: Vec<Dimension>,
    #[serde(default)]
    pub measures: Vec<Measure>,
    #[serde(default)]
    pub filters: Vec<Filter>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sort: Option<Sort>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// Presentation only (colours, labels, stacking); kept as the client sent it.
    #[serde(default = "empty_object")]
    pub options: serde_json::Value,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}

/// A column of a chart's source, as planned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceColumn {
    pub name: String,
    /// Arrow's name of the type (`Date32`, `Int64`, `Decimal128(12, 2)`, ...).
    pub data_type: String,
}

impl SourceColumn {
    fn is_date(&self) -> bool {
        self.data_type.starts_with("Date")
    }

    fn is_temporal(&self) -> bool {
        self.is_date() || self.data_type.starts_with("Timestamp")
    }

    fn is_decimal(&self) -> bool {
        self.data_type.starts_with("Decimal")
    }
}

/// The SQL of one chart run, and the dashboard filters it could not apply.
#[derive(Debug, Clone, PartialEq)]
pub struct ChartQuery {
    pub sql: String,
    /// Rows asked for; the SQL fetches one more to tell whether there were more.
    pub limit: u64,
    /// Dashboard filters on columns the source does not have.
    pub ignored_filters: Vec<String>,
}

/// `"name"`, with embedded quotes doubled.
pub fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A JSON value as a SQL literal (strings quoted, numbers and booleans as they are).
fn literal(column: &str, value: &serde_json::Value) -> Result<String, String> {
    match value {
        serde_json::Value::String(text) => Ok(format!("'{}'", text.replace('\'', "''"))),
        serde_json::Value::Number(number) => Ok(number.to_string()),
        serde_json::Value::Bool(flag) => Ok(if *flag { "TRUE" } else { "FALSE" }.to_string()),
        serde_json::Value::Null => Err(format!(
            "the filter on '{column}' has no value (use is_null to filter on NULL)"
        )),
        other => Err(format!(
            "the filter on '{column}' needs a string, number or boolean, not {other}"
        )),
    }
}

fn list_literal(column: &str, value: &serde_json::Value) -> Result<Vec<String>, String> {
    match value {
        serde_json::Value::Array(items) => items.iter().map(|v| literal(column, v)).collect(),
        single => Ok(vec![literal(column, single)?]),
    }
}

fn filter_sql(filter: &Filter) -> Result<String, String> {
    let column = quote_identifier(&filter.column);
    let name = filter.column.as_str();
    let comparison = |operator: &str| -> Result<String, String> {
        Ok(format!(
            "{column} {operator} {}",
            literal(name, &filter.value)?
        ))
    };
    match filter.op {
        FilterOp::Eq => comparison("="),
        FilterOp::NotEq => comparison("<>"),
        FilterOp::Gt => comparison(">"),
        FilterOp::GtEq => comparison(">="),
        FilterOp::Lt => comparison("<"),
        FilterOp::LtEq => comparison("<="),
        FilterOp::Like => comparison("LIKE"),
        FilterOp::IsNull => Ok(format!("{column} IS NULL")),
        FilterOp::NotNull => Ok(format!("{column} IS NOT NULL")),
        FilterOp::In | FilterOp::NotIn => {
            let values = list_literal(name, &filter.value)?;
            let negated = filter.op == FilterOp::NotIn;
            if values.is_empty() {
                return Ok(if negated { "TRUE" } else { "FALSE" }.to_string());
            }
            let keyword = if negated { "NOT IN" } else { "IN" };
            Ok(format!("{column} {keyword} ({})", values.join(", ")))
        }
        FilterOp::Between => {
            let bounds = list_literal(name, &filter.value)?;
            let [low, high] = bounds.as_slice() else {
                return Err(format!(
                    "the 'between' filter on '{name}' needs two values, [low, high]"
                ));
            };
            Ok(format!("{column} BETWEEN {low} AND {high}"))
        }
    }
}

impl ChartSpec {
    /// Checks the shape each chart type needs, before the source is looked at.
    pub fn check_shape(&self) -> Result<(), String> {
        let dimensions = self.dimensions.len();
        let measures = self.measures.len();
        let need = |ok: bool, what: &str| -> Result<(), String> {
            if ok {
                Ok(())
            } else {
                Err(format!(
                    "a {} chart needs {what} (it has {dimensions} dimension(s) and {measures} measure(s))",
                    serde_json::to_value(self.chart_type)
                        .ok()
                        .and_then(|v| v.as_str().map(|s| s.replace('_', " ")))
                        .unwrap_or_default()
                ))
            }
        };
        match self.chart_type {
            ChartType::Bar | ChartType::StackedBar | ChartType::Line | ChartType::Area => need(
                (1..=2).contains(&dimensions) && measures >= 1,
                "one or two dimensions and at least one measure",
            )?,
            ChartType::Pie => need(
                dimensions == 1 && measures == 1,
                "one dimension and one measure",
            )?,
            ChartType::Scatter => need(
                dimensions <= 2 && measures == 2,
                "two measures (x and y) and at most two dimensions (the points, their colour)",
            )?,
            ChartType::BigNumber => need(
                dimensions <= 1 && measures == 1,
                "one measure and at most one (time) dimension for its trend",
            )?,
            ChartType::Heatmap => need(
                dimensions == 2 && measures == 1,
                "two dimensions and one measure",
            )?,
            ChartType::Pivot => need(
                (1..=2).contains(&dimensions) && measures >= 1,
                "one or two dimensions (rows, columns) and at least one measure",
            )?,
            ChartType::Table => need(
                dimensions + measures >= 1 && dimensions <= 20,
                "at least one column or measure",
            )?,
        }
        for measure in &self.measures {
            if measure.column.is_none() && measure.agg != Aggregate::Count {
                return Err(format!(
                    "the measure {} needs a column",
                    measure.agg.as_str()
                ));
            }
        }
        let mut labels: Vec<String> = self.dimensions.iter().map(|d| d.column.clone()).collect();
        for measure in &self.measures {
            let label = measure.label();
            if labels.contains(&label) {
                return Err(format!(
                    "two result columns are named '{label}': give the measure a label of its own"
                ));
            }
            labels.push(label);
        }
        if let Some(sort) = &self.sort
            && !labels.contains(&sort.by)
        {
            return Err(format!(
                "cannot sort by '{}': sort by a dimension or a measure ({})",
                sort.by,
                labels.join(", ")
            ));
        }
        if self.limit == Some(0) {
            return Err("the limit must be at least 1".to_string());
        }
        Ok(())
    }

    /// The query answering this chart over `source_sql` (a quoted table name or a
    /// parenthesised query) whose columns are `columns`; `extra_filters` are a dashboard's,
    /// applied where the source has their column.
    pub fn to_query(
        &self,
        source_sql: &str,
        columns: &[SourceColumn],
        extra_filters: &[Filter],
    ) -> Result<ChartQuery, String> {
        self.check_shape()?;
        let find = |name: &str| columns.iter().find(|c| c.name == name);
        let missing = |name: &str| {
            let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
            format!(
                "column '{name}' is not in the chart's source (its columns: {})",
                names.join(", ")
            )
        };

        let mut select = Vec::new();
        for dimension in &self.dimensions {
            let column = find(&dimension.column).ok_or_else(|| missing(&dimension.column))?;
            let quoted = quote_identifier(&column.name);
            let expression = match dimension.time_grain {
                None => quoted.clone(),
                Some(grain) if column.is_temporal() => {
                    let truncated = format!("date_trunc('{}', {quoted})", grain.as_str());
                    if column.is_date() {
                        format!("CAST({truncated} AS DATE)")
                    } else {
                        truncated
                    }
                }
                Some(_) => {
                    return Err(format!(
                        "a time grain needs a date or timestamp column; '{}' is {}",
                        column.name, column.data_type
                    ));
                }
            };
            select.push(format!("{expression} AS {quoted}"));
        }
        for measure in &self.measures {
            let source_column = match &measure.column {
                Some(name) => Some(find(name).ok_or_else(|| missing(name))?),
                None => None,
            };
            let argument = source_column
                .map(|c| quote_identifier(&c.name))
                .unwrap_or_else(|| "*".to_string());
            let is_decimal = source_column.is_some_and(SourceColumn::is_decimal);
            // Charts draw floats: exact decimals would arrive as strings in JSON.
            let expression = match measure.agg {
                Aggregate::Sum => format!("CAST(SUM({argument}) AS DOUBLE)"),
                Aggregate::Avg => format!("CAST(AVG({argument}) AS DOUBLE)"),
                Aggregate::Count => format!("COUNT({argument})"),
                Aggregate::CountDistinct => format!("COUNT(DISTINCT {argument})"),
                Aggregate::Min if is_decimal => format!("CAST(MIN({argument}) AS DOUBLE)"),
                Aggregate::Max if is_decimal => format!("CAST(MAX({argument}) AS DOUBLE)"),
                Aggregate::Min => format!("MIN({argument})"),
                Aggregate::Max => format!("MAX({argument})"),
            };
            select.push(format!(
                "{expression} AS {}",
                quote_identifier(&measure.label())
            ));
        }

        let mut conditions = Vec::new();
        for filter in &self.filters {
            find(&filter.column).ok_or_else(|| missing(&filter.column))?;
            conditions.push(filter_sql(filter)?);
        }
        let mut ignored_filters = Vec::new();
        for filter in extra_filters {
            if filter.is_unset() {
                continue;
            }
            if find(&filter.column).is_none() {
                ignored_filters.push(filter.column.clone());
                continue;
            }
            conditions.push(filter_sql(filter)?);
        }

        let limit = self
            .limit
            .unwrap_or(DEFAULT_CHART_ROWS)
            .clamp(1, MAX_CHART_ROWS);
        let mut sql = format!("SELECT {} FROM {source_sql} AS source", select.join(", "));
        if !conditions.is_empty() {
            let _ = write!(sql, " WHERE {}", conditions.join(" AND "));
        }
        let grouped = !self.measures.is_empty() && !self.dimensions.is_empty();
        if grouped {
            let positions: Vec<String> =
                (1..=self.dimensions.len()).map(|i| i.to_string()).collect();
            let _ = write!(sql, " GROUP BY {}", positions.join(", "));
        }
        if let Some(order) = self.order_by(columns) {
            let _ = write!(sql, " ORDER BY {order}");
        }
        let _ = write!(sql, " LIMIT {}", limit + 1);
        Ok(ChartQuery {
            sql,
            limit,
            ignored_filters,
        })
    }

    /// The spec's sort; otherwise time runs forward and categories come largest first.
    fn order_by(&self, columns: &[SourceColumn]) -> Option<String> {
        if let Some(sort) = &self.sort {
            let direction = if sort.desc { "DESC" } else { "ASC" };
            return Some(format!("{} {direction}", quote_identifier(&sort.by)));
        }
        let first = self.dimensions.first()?;
        let temporal = first.time_grain.is_some()
            || columns
                .iter()
                .any(|c| c.name == first.column && c.is_temporal());
        let mut keys = Vec::new();
        if temporal || self.measures.is_empty() || self.chart_type == ChartType::Heatmap {
            for dimension in &self.dimensions {
                keys.push(format!("{} ASC", quote_identifier(&dimension.column)));
            }
        } else {
            let measure = quote_identifier(&self.measures[0].label());
            keys.push(format!("{measure} DESC"));
        }
        Some(keys.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn columns() -> Vec<SourceColumn> {
        [
            ("order_date", "Date32"),
            ("country", "Utf8"),
            ("revenue", "Decimal128(12, 2)"),
            ("orders", "Int64"),
            ("placed_at", "Timestamp(Microsecond, None)"),
        ]
        .into_iter()
        .map(|(name, data_type)| SourceColumn {
            name: name.to_string(),
            data_type: data_type.to_string(),
        })
        .collect()
    }

    fn spec(json: serde_json::Value) -> ChartSpec {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn a_bar_chart_groups_by_its_dimension_and_sorts_by_its_measure() {
        let chart = spec(serde_json::json!({
            "type": "bar", "source": {"table": "gold.revenue"},
            "dimensions": [{"column": "country"}],
            "measures": [{"agg": "sum", "column": "revenue", "label": "Revenue"}],
        }));
        let query = chart
            .to_query("\"gold\".\"revenue\"", &columns(), &[])
            .unwrap();
        assert_eq!(
            query.sql,
            "SELECT \"country\" AS \"country\", CAST(SUM(\"revenue\") AS DOUBLE) AS \"Revenue\" FROM \"gold\".\"revenue\" AS source GROUP BY 1 ORDER BY \"Revenue\" DESC LIMIT 1001"
        );
        assert_eq!(query.limit, 1000);
    }

    #[test]
    fn time_grains_truncate_and_keep_dates_as_dates() {
        let chart = spec(serde_json::json!({
            "type": "line", "source": {"table": "gold.revenue"},
            "dimensions": [{"column": "order_date", "time_grain": "month"}],
            "measures": [{"agg": "count"}],
        }));
        let query = chart.to_query("t", &columns(), &[]).unwrap();
        assert!(
            query.sql.starts_with(
                "SELECT CAST(date_trunc('month', \"order_date\") AS DATE) AS \"order_date\", COUNT(*) AS \"count\""
            ),
            "{}",
            query.sql
        );
        assert!(
            query.sql.contains("ORDER BY \"order_date\" ASC"),
            "{}",
            query.sql
        );

        let on_text = spec(serde_json::json!({
            "type": "line", "source": {"table": "t"},
            "dimensions": [{"column": "country", "time_grain": "year"}],
            "measures": [{"agg": "count"}],
        }));
        let error = on_text.to_query("t", &columns(), &[]).unwrap_err();
        assert!(error.contains("'country' is Utf8"), "{error}");
    }

    #[test]
    fn filters_quote_values_and_dashboard_filters_apply_only_where_the_column_exists() {
        let chart = spec(serde_json::json!({
            "type": "table", "source": {"table": "t"},
            "dimensions": [{"column": "country"}],
            "filters": [{"column": "country", "op": "in", "value": ["O'Brien", "NL"]}],
        }));
        let dashboard = vec![
            Filter {
                column: "order_date".into(),
                op: FilterOp::Between,
                value: serde_json::json!(["2026-01-01", "2026-03-31"]),
            },
            Filter {
                column: "channel".into(),
                op: FilterOp::Eq,
                value: serde_json::json!("web"),
            },
            Filter {
                column: "orders".into(),
                op: FilterOp::Eq,
                value: serde_json::Value::Null,
            },
        ];
        let query = chart.to_query("t", &columns(), &dashboard).unwrap();
        assert!(
            query.sql.contains(
                "WHERE \"country\" IN ('O''Brien', 'NL') AND \"order_date\" BETWEEN '2026-01-01' AND '2026-03-31'"
            ),
            "{}",
            query.sql
        );
        assert_eq!(query.ignored_filters, vec!["channel".to_string()]);
        // A table without measures lists rows, no GROUP BY.
        assert!(!query.sql.contains("GROUP BY"), "{}", query.sql);
    }

    #[test]
    fn names_cannot_escape_their_quotes() {
        let hostile = "x\" FROM secrets --";
        let chart = spec(serde_json::json!({
            "type": "table", "source": {"table": "t"},
            "dimensions": [{"column": hostile}],
        }));
        let mut columns = columns();
        columns.push(SourceColumn {
            name: hostile.to_string(),
            data_type: "Utf8".into(),
        });
        let query = chart.to_query("t", &columns, &[]).unwrap();
        assert!(
            query.sql.starts_with("SELECT \"x\"\" FROM secrets --\" AS"),
            "{}",
            query.sql
        );
    }

    #[test]
    fn bad_specs_are_refused_with_a_reason() {
        let cases = [
            (
                serde_json::json!({"type": "pie", "source": {"table": "t"}, "dimensions": [{"column": "country"}], "measures": []}),
                "a pie chart needs one dimension and one measure",
            ),
            (
                serde_json::json!({"type": "bar", "source": {"table": "t"}, "dimensions": [{"column": "nope"}], "measures": [{"agg": "count"}]}),
                "column 'nope' is not in the chart's source",
            ),
            (
                serde_json::json!({"type": "bar", "source": {"table": "t"}, "dimensions": [{"column": "country"}], "measures": [{"agg": "sum"}]}),
                "the measure sum needs a column",
            ),
            (
                serde_json::json!({"type": "bar", "source": {"table": "t"}, "dimensions": [{"column": "country"}], "measures": [{"agg": "count"}], "sort": {"by": "revenue"}}),
                "cannot sort by 'revenue'",
            ),
            (
                serde_json::json!({"type": "bar", "source": {"table": "t"}, "dimensions": [{"column": "country"}], "measures": [{"agg": "count"}, {"agg": "count"}]}),
                "two result columns are named 'count'",
            ),
        ];
        for (json, expected) in cases {
            let error = spec(json).to_query("t", &columns(), &[]).unwrap_err();
            assert!(error.contains(expected), "{error}");
        }
        let unknown_type = serde_json::from_value::<ChartSpec>(
            serde_json::json!({"type": "donut", "source": {"table": "t"}}),
        );
        assert!(unknown_type.is_err());
    }

    #[test]
    fn limits_are_capped() {
        let chart = spec(serde_json::json!({
            "type": "table", "source": {"table": "t"},
            "dimensions": [{"column": "country"}], "limit": 1_000_000,
        }));
        let query = chart.to_query("t", &columns(), &[]).unwrap();
        assert_eq!(query.limit, MAX_CHART_ROWS);
        assert!(query.sql.ends_with("LIMIT 10001"));
    }
}
