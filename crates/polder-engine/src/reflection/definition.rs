//! What a reflection is: its kind (raw columns, or dimensions x measures), its layout, how it is
//! kept fresh, and the statements that manage it (`CREATE / DROP / REFRESH REFLECTION`), parsed
//! here from their tokens because sqlparser does not know them.

use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
use serde::{Deserialize, Serialize};

use crate::dialect::PolderDialect;
use crate::error::{EngineError, Result};

/// The column of an aggregate reflection that holds `count(*)` of each group.
pub(crate) const ROWS_COLUMN: &str = "polder_rows";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grain {
    Hour,
    Day,
    Week,
    Month,
    Quarter,
    Year,
}

impl Grain {
    pub fn parse(text: &str) -> Option<Grain> {
        Some(match text.to_ascii_lowercase().as_str() {
            "hour" => Grain::Hour,
            "day" => Grain::Day,
            "week" => Grain::Week,
            "month" => Grain::Month,
            "quarter" => Grain::Quarter,
            "year" => Grain::Year,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Grain::Hour => "hour",
            Grain::Day => "day",
            Grain::Week => "week",
            Grain::Month => "month",
            Grain::Quarter => "quarter",
            Grain::Year => "year",
        }
    }

    /// Whether truncating to `self` after truncating to `finer` equals truncating to `self`
    /// directly (weeks do not nest in months, quarters or years).
    pub fn rolls_up_from(self, finer: Grain) -> bool {
        let rank = |g: Grain| g as u8;
        finer == self || (rank(finer) < rank(self) && (finer != Grain::Week || self == Grain::Week))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MeasureFn {
    Sum,
    Count,
    Min,
    Max,
}

impl MeasureFn {
    pub fn parse(text: &str) -> Option<MeasureFn> {
        Some(match text.to_ascii_lowercase().as_str() {
            "sum" => MeasureFn::Sum,
            "count" => MeasureFn::Count,
            "min" => MeasureFn::Min,
            "max" => MeasureFn::Max,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MeasureFn::Sum => "sum",
            MeasureFn::Count => "count",
            MeasureFn::Min => "min",
            MeasureFn::Max => "max",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dimension {
    pub column: String,
    #[serde(default)]
    pub grain: Option<Grain>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Measure {
    pub column: String,
    pub functions: Vec<MeasureFn>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Kind {
    Raw {
        columns: Vec<String>,
    },
    Aggregate {
        dimensions: Vec<Dimension>,
        measures: Vec<Measure>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RefreshPolicy {
    #[default]
    OnCommit,
    Manual,
    Every {
        seconds: u64,
    },
}

impl RefreshPolicy {
    pub fn describe(&self) -> String {
        match self {
            RefreshPolicy::OnCommit => "on commit".to_string(),
            RefreshPolicy::Manual => "manual".to_string(),
            RefreshPolicy::Every { seconds } => format!("every {seconds} s"),
        }
    }
}

/// A reflection's definition, as stored (JSON) in the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Definition {
    #[serde(flatten)]
    pub kind: Kind,
    #[serde(default)]
    pub partition_by: Vec<String>,
    #[serde(default)]
    pub sort_by: Vec<String>,
    #[serde(default)]
    pub refresh: RefreshPolicy,
    #[serde(default)]
    pub staleness_seconds: u64,
    /// Delta table ids of the source tables when the reflection was made: a table dropped and
    /// made again under the same name is another table.
    #[serde(default)]
    pub source_ids: std::collections::BTreeMap<String, String>,
}

/// One column of a reflection table and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// A source column as it is.
    Column(String),
    /// `date_trunc(grain, column)`.
    Truncated(String, Grain),
    /// `fn(column)` per group.
    Measure(String, MeasureFn),
    /// `count(*)` per group.
    Rows,
}

impl Definition {
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            Kind::Raw { .. } => "raw",
            Kind::Aggregate { .. } => "aggregate",
        }
    }

    /// The reflection table's columns (name, what it holds), in order.
    pub fn stored_columns(&self) -> Vec<(String, Stored)> {
        match &self.kind {
            Kind::Raw { columns } => columns
                .iter()
                .map(|c| (c.clone(), Stored::Column(c.clone())))
                .collect(),
            Kind::Aggregate {
                dimensions,
                measures,
            } => {
                let mut out = Vec::new();
                for dimension in dimensions {
                    out.push(match dimension.grain {
                        None => (
                            dimension.column.clone(),
                            Stored::Column(dimension.column.clone()),
                        ),
                        Some(grain) => (
                            format!("{}__{}", dimension.column, grain.as_str()),
                            Stored::Truncated(dimension.column.clone(), grain),
                        ),
                    });
                }
                for measure in measures {
                    for function in &measure.functions {
                        out.push((
                            format!("{}__{}", measure.column, function.as_str()),
                            Stored::Measure(measure.column.clone(), *function),
                        ));
                    }
                }
                out.push((ROWS_COLUMN.to_string(), Stored::Rows));
                out
            }
        }
    }

    /// Checks the definition against the source's columns and normalizes it: a day grain on a
    /// DATE column is the column itself.
    pub fn check(&mut self, source: &str, schema: &Schema) -> Result<()> {
        let column_type = |name: &str| -> Result<DataType> {
            schema
                .field_with_name(name)
                .map(|f| f.data_type().clone())
                .map_err(|_| {
                    EngineError::InvalidInput(format!(
                        "column '{name}' does not exist in {source} (its columns: {})",
                        schema
                            .fields()
                            .iter()
                            .map(|f| f.name().as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })
        };
        match &mut self.kind {
            Kind::Raw { columns } => {
                if columns.is_empty() {
                    return Err(EngineError::InvalidInput(
                        "a raw reflection needs at least one column".to_string(),
                    ));
                }
                for column in columns.iter() {
                    column_type(column)?;
                }
            }
            Kind::Aggregate {
                dimensions,
                measures,
            } => {
                if dimensions.is_empty() && measures.is_empty() {
                    return Err(EngineError::InvalidInput(
                        "an aggregate reflection needs dimensions or measures".to_string(),
                    ));
                }
                for dimension in dimensions.iter_mut() {
                    let data_type = column_type(&dimension.column)?;
                    if let Some(grain) = dimension.grain {
                        match data_type {
                            DataType::Date32 | DataType::Date64 if grain == Grain::Day => {
                                dimension.grain = None;
                            }
                            DataType::Date32 | DataType::Date64 if grain == Grain::Hour => {
                                return Err(EngineError::InvalidInput(format!(
                                    "dimension '{}' is a DATE: an hour grain means nothing for it",
                                    dimension.column
                                )));
                            }
                            DataType::Date32 | DataType::Date64 | DataType::Timestamp(_, _) => {}
                            other => {
                                return Err(EngineError::InvalidInput(format!(
                                    "dimension '{}' is of type {other}: a time grain (BY {}) needs a DATE or TIMESTAMP column",
                                    dimension.column,
                                    grain.as_str().to_uppercase()
                                )));
                            }
                        }
                    }
                }
                for measure in measures.iter() {
                    let data_type = column_type(&measure.column)?;
                    if measure.functions.is_empty() {
                        return Err(EngineError::InvalidInput(format!(
                            "measure '{}' names no function (SUM, COUNT, MIN, MAX)",
                            measure.column
                        )));
                    }
                    if measure.functions.contains(&MeasureFn::Sum) && !(data_type.is_numeric()) {
                        return Err(EngineError::InvalidInput(format!(
                            "measure '{}' is of type {data_type}: SUM needs a number",
                            measure.column
                        )));
                    }
                }
            }
        }
        let stored = self.stored_columns();
        let mut seen = std::collections::HashSet::new();
        for (name, _) in &stored {
            if !seen.insert(name.clone()) {
                return Err(EngineError::InvalidInput(format!(
                    "the reflection would hold column '{name}' twice"
                )));
            }
        }
        for column in self.partition_by.iter().chain(&self.sort_by) {
            if !stored.iter().any(|(name, _)| name == column) {
                return Err(EngineError::InvalidInput(format!(
                    "'{column}' (PARTITION BY / SORT BY) is not a column of the reflection (it has: {})",
                    stored
                        .iter()
                        .map(|(n, _)| n.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
        Ok(())
    }

    /// The SELECT list that builds the reflection from rows of the source (`from` is SQL).
    pub fn build_sql(&self, from: &str) -> String {
        let stored = self.stored_columns();
        let items: Vec<String> = stored
            .iter()
            .map(|(name, what)| {
                let expression = match what {
                    Stored::Column(c) => quote(c),
                    Stored::Truncated(c, grain) => {
                        format!("date_trunc('{}', {})", grain.as_str(), quote(c))
                    }
                    Stored::Measure(c, f) => format!("{}({})", f.as_str(), quote(c)),
                    Stored::Rows => "count(*)".to_string(),
                };
                format!("{expression} AS {}", quote(name))
            })
            .collect();
        let mut sql = format!("SELECT {} FROM {from}", items.join(", "));
        if let Kind::Aggregate { dimensions, .. } = &self.kind
            && !dimensions.is_empty()
        {
            let groups: Vec<String> = (1..=dimensions.len()).map(|i| i.to_string()).collect();
            sql.push_str(&format!(" GROUP BY {}", groups.join(", ")));
        }
        sql
    }

    /// Merges two sets of rows of this (aggregate) reflection (`from` is SQL over both), so that
    /// an incremental refresh adds the groups of new rows to the stored ones.
    pub fn merge_sql(&self, from: &str) -> String {
        let stored = self.stored_columns();
        let dimensions = stored
            .iter()
            .filter(|(_, w)| matches!(w, Stored::Column(_) | Stored::Truncated(..)))
            .count();
        let items: Vec<String> = stored
            .iter()
            .map(|(name, what)| {
                let column = quote(name);
                let expression = match what {
                    Stored::Column(_) | Stored::Truncated(..) => column.clone(),
                    Stored::Measure(_, MeasureFn::Sum)
                    | Stored::Measure(_, MeasureFn::Count)
                    | Stored::Rows => format!("sum({column})"),
                    Stored::Measure(_, MeasureFn::Min) => format!("min({column})"),
                    Stored::Measure(_, MeasureFn::Max) => format!("max({column})"),
                };
                format!("{expression} AS {column}")
            })
            .collect();
        let mut sql = format!("SELECT {} FROM {from}", items.join(", "));
        if dimensions > 0 {
            let groups: Vec<String> = (1..=dimensions).map(|i| i.to_string()).collect();
            sql.push_str(&format!(" GROUP BY {}", groups.join(", ")));
        }
        sql
    }

    /// The statement that would make this reflection again (shown in `system.reflections`).
    pub fn to_sql(&self, name: &str, source: &str) -> String {
        let list = |items: &[String]| {
            items
                .iter()
                .map(|c| quote(c))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut sql = format!("CREATE REFLECTION {} ON {source} ", quote(name));
        match &self.kind {
            Kind::Raw { columns } => sql.push_str(&format!("RAW COLUMNS ({})", list(columns))),
            Kind::Aggregate {
                dimensions,
                measures,
            } => {
                let dims: Vec<String> = dimensions
                    .iter()
                    .map(|d| match d.grain {
                        None => quote(&d.column),
                        Some(g) => format!("{} BY {}", quote(&d.column), g.as_str().to_uppercase()),
                    })
                    .collect();
                let meas: Vec<String> = measures
                    .iter()
                    .map(|m| {
                        let fns: Vec<String> = m
                            .functions
                            .iter()
                            .map(|f| f.as_str().to_uppercase())
                            .collect();
                        format!("{} ({})", quote(&m.column), fns.join(", "))
                    })
                    .collect();
                sql.push_str(&format!(
                    "AGGREGATE DIMENSIONS ({}) MEASURES ({})",
                    dims.join(", "),
                    meas.join(", ")
                ));
            }
        }
        if !self.partition_by.is_empty() {
            sql.push_str(&format!(" PARTITION BY ({})", list(&self.partition_by)));
        }
        if !self.sort_by.is_empty() {
            sql.push_str(&format!(" SORT BY ({})", list(&self.sort_by)));
        }
        match self.refresh {
            RefreshPolicy::OnCommit => sql.push_str(" REFRESH ON COMMIT"),
            RefreshPolicy::Manual => sql.push_str(" REFRESH MANUAL"),
            RefreshPolicy::Every { seconds } => {
                sql.push_str(&format!(" REFRESH EVERY '{seconds} seconds'"))
            }
        }
        if self.staleness_seconds > 0 {
            sql.push_str(&format!(" STALENESS '{} seconds'", self.staleness_seconds));
        }
        sql
    }
}

pub(crate) fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A parsed reflection statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReflectionStatement {
    Create {
        name: String,
        if_not_exists: bool,
        source: (String, String),
        definition: Definition,
    },
    Drop {
        name: String,
        if_exists: bool,
    },
    Refresh {
        name: String,
        full: bool,
    },
}

const CREATE_USAGE: &str = "CREATE REFLECTION [IF NOT EXISTS] name ON schema.table \
    (RAW COLUMNS (c, ...) | AGGREGATE DIMENSIONS (c [BY DAY|...], ...) MEASURES (c (SUM, COUNT, MIN, MAX), ...)) \
    [PARTITION BY (c, ...)] [SORT BY (c, ...)] [REFRESH ON COMMIT | REFRESH EVERY '1 hour' | REFRESH MANUAL] [STALENESS '10 minutes']";

/// Walks the meaningful tokens of one statement.
struct Cursor {
    tokens: Vec<Token>,
    at: usize,
    usage: &'static str,
}

impl Cursor {
    fn new(sql: &str, usage: &'static str) -> Result<Cursor> {
        let tokens = Tokenizer::new(&PolderDialect::default(), sql)
            .tokenize()
            .map_err(|e| EngineError::Syntax(e.to_string()))?
            .into_iter()
            .filter(|t| !matches!(t, Token::Whitespace(_) | Token::SemiColon))
            .collect();
        Ok(Cursor {
            tokens,
            at: 0,
            usage,
        })
    }

    fn error(&self, wanted: &str) -> EngineError {
        let found = self
            .tokens
            .get(self.at)
            .map(|t| format!("'{t}'"))
            .unwrap_or_else(|| "the end".to_string());
        EngineError::Syntax(format!(
            "expected {wanted}, found {found}; the syntax is: {}",
            self.usage
        ))
    }

    fn peek_word(&self, word: &str) -> bool {
        matches!(self.tokens.get(self.at), Some(Token::Word(w)) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word))
    }

    fn eat_word(&mut self, word: &str) -> bool {
        if self.peek_word(word) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn expect_word(&mut self, word: &str) -> Result<()> {
        if self.eat_word(word) {
            Ok(())
        } else {
            Err(self.error(&word.to_uppercase()))
        }
    }

    fn eat(&mut self, token: &Token) -> bool {
        if self.tokens.get(self.at) == Some(token) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, token: &Token) -> Result<()> {
        if self.eat(token) {
            Ok(())
        } else {
            Err(self.error(&format!("'{token}'")))
        }
    }

    /// An identifier, normalized as the engine does (unquoted: lower case).
    fn ident(&mut self) -> Result<String> {
        match self.tokens.get(self.at) {
            Some(Token::Word(w)) => {
                self.at += 1;
                Ok(if w.quote_style.is_some() {
                    w.value.clone()
                } else {
                    w.value.to_lowercase()
                })
            }
            _ => Err(self.error("a name")),
        }
    }

    fn string(&mut self) -> Result<String> {
        match self.tokens.get(self.at) {
            Some(Token::SingleQuotedString(s)) => {
                self.at += 1;
                Ok(s.clone())
            }
            Some(Token::Number(n, _)) => {
                self.at += 1;
                Ok(n.clone())
            }
            _ => Err(self.error("a quoted interval such as '1 hour'")),
        }
    }

    fn ident_list(&mut self) -> Result<Vec<String>> {
        self.expect(&Token::LParen)?;
        let mut out = vec![self.ident()?];
        while self.eat(&Token::Comma) {
            out.push(self.ident()?);
        }
        self.expect(&Token::RParen)?;
        Ok(out)
    }

    fn done(&self) -> Result<()> {
        if self.at < self.tokens.len() {
            return Err(self.error("the end of the statement"));
        }
        Ok(())
    }
}

/// `'90 minutes'`, `'1 hour'`, `'30'` (seconds) as seconds.
pub(crate) fn parse_interval(text: &str) -> Result<u64> {
    let bad = || {
        EngineError::InvalidInput(format!(
            "'{text}' is not an interval: write a number and a unit, such as '30 seconds', '10 minutes', '1 hour', '1 day'"
        ))
    };
    let mut parts = text.split_whitespace();
    let number: u64 = parts.next().ok_or_else(bad)?.parse().map_err(|_| bad())?;
    let unit = parts.next().unwrap_or("seconds").to_ascii_lowercase();
    if parts.next().is_some() {
        return Err(bad());
    }
    let factor = match unit.trim_end_matches('s') {
        "second" | "sec" => 1,
        "minute" | "min" => 60,
        "hour" => 3600,
        "day" => 86_400,
        _ => return Err(bad()),
    };
    number.checked_mul(factor).ok_or_else(bad)
}

/// Parses `CREATE / DROP / REFRESH REFLECTION ...`.
pub fn parse_statement(sql: &str) -> Result<ReflectionStatement> {
    let mut probe = Cursor::new(sql, CREATE_USAGE)?;
    if probe.eat_word("drop") {
        probe.usage = "DROP REFLECTION [IF EXISTS] name";
        probe.expect_word("reflection")?;
        let if_exists = probe.eat_word("if");
        if if_exists {
            probe.expect_word("exists")?;
        }
        let name = probe.ident()?;
        probe.done()?;
        return Ok(ReflectionStatement::Drop { name, if_exists });
    }
    if probe.eat_word("refresh") {
        probe.usage = "REFRESH REFLECTION name [FULL]";
        probe.expect_word("reflection")?;
        let name = probe.ident()?;
        let full = probe.eat_word("full");
        probe.done()?;
        return Ok(ReflectionStatement::Refresh { name, full });
    }
    let c = &mut probe;
    c.expect_word("create")?;
    c.expect_word("reflection")?;
    let if_not_exists = c.eat_word("if");
    if if_not_exists {
        c.expect_word("not")?;
        c.expect_word("exists")?;
    }
    let name = c.ident()?;
    c.expect_word("on")?;
    let first = c.ident()?;
    let source = if c.eat(&Token::Period) {
        (first, c.ident()?)
    } else {
        (polder_core::DEFAULT_SCHEMA.to_string(), first)
    };
    let kind = if c.eat_word("raw") {
        c.expect_word("columns")?;
        Kind::Raw {
            columns: c.ident_list()?,
        }
    } else if c.eat_word("aggregate") {
        let mut dimensions = Vec::new();
        if c.eat_word("dimensions") {
            c.expect(&Token::LParen)?;
            loop {
                let column = c.ident()?;
                let grain = if c.eat_word("by") {
                    let word = c.ident()?;
                    Some(Grain::parse(&word).ok_or_else(|| {
                        EngineError::InvalidInput(format!(
                            "unknown time grain '{word}': use HOUR, DAY, WEEK, MONTH, QUARTER or YEAR"
                        ))
                    })?)
                } else {
                    None
                };
                dimensions.push(Dimension { column, grain });
                if !c.eat(&Token::Comma) {
                    break;
                }
            }
            c.expect(&Token::RParen)?;
        }
        let mut measures = Vec::new();
        if c.eat_word("measures") {
            c.expect(&Token::LParen)?;
            loop {
                let column = c.ident()?;
                let mut functions = Vec::new();
                for word in c.ident_list()? {
                    let function = MeasureFn::parse(&word).ok_or_else(|| {
                        EngineError::InvalidInput(format!(
                            "unknown measure function '{word}' for '{column}': use SUM, COUNT, MIN or MAX (AVG is derived from SUM and COUNT)"
                        ))
                    })?;
                    if !functions.contains(&function) {
                        functions.push(function);
                    }
                }
                measures.push(Measure { column, functions });
                if !c.eat(&Token::Comma) {
                    break;
                }
            }
            c.expect(&Token::RParen)?;
        }
        Kind::Aggregate {
            dimensions,
            measures,
        }
    } else {
        return Err(c.error("RAW or AGGREGATE"));
    };
    let mut definition = Definition {
        kind,
        partition_by: Vec::new(),
        sort_by: Vec::new(),
        refresh: RefreshPolicy::OnCommit,
        staleness_seconds: 0,
        source_ids: Default::default(),
    };
    loop {
        if c.eat_word("partition") {
            c.expect_word("by")?;
            definition.partition_by = c.ident_list()?;
        } else if c.eat_word("sort") || c.eat_word("localsort") {
            c.expect_word("by")?;
            definition.sort_by = c.ident_list()?;
        } else if c.eat_word("refresh") {
            definition.refresh = if c.eat_word("on") {
                c.expect_word("commit")?;
                RefreshPolicy::OnCommit
            } else if c.eat_word("manual") {
                RefreshPolicy::Manual
            } else if c.eat_word("every") {
                let seconds = parse_interval(&c.string()?)?;
                if seconds == 0 {
                    return Err(EngineError::InvalidInput(
                        "REFRESH EVERY needs an interval above zero".to_string(),
                    ));
                }
                RefreshPolicy::Every { seconds }
            } else {
                return Err(c.error("ON COMMIT, EVERY '<interval>' or MANUAL"));
            };
        } else if c.eat_word("staleness") {
            definition.staleness_seconds = parse_interval(&c.string()?)?;
        } else {
            break;
        }
    }
    c.done()?;
    Ok(ReflectionStatement::Create {
        name,
        if_not_exists,
        source,
        definition,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::{Field, TimeUnit};

    fn sales() -> Schema {
        Schema::new(vec![
            Field::new("day", DataType::Date32, true),
            Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, None), true),
            Field::new("country", DataType::Utf8, true),
            Field::new("amount", DataType::Decimal128(12, 2), true),
        ])
    }

    #[test]
    fn aggregate_statement_round_trips_through_its_sql() {
        let sql = "CREATE REFLECTION By_Day ON gold.sales AGGREGATE DIMENSIONS (country, day BY DAY, ts BY month) \
                   MEASURES (amount (SUM, count, MAX)) SORT BY (country) REFRESH EVERY '2 hours' STALENESS '10 minutes'";
        let ReflectionStatement::Create {
            name,
            source,
            mut definition,
            ..
        } = parse_statement(sql).unwrap()
        else {
            panic!("a create");
        };
        assert_eq!(name, "by_day");
        assert_eq!(source, ("gold".to_string(), "sales".to_string()));
        assert_eq!(definition.refresh, RefreshPolicy::Every { seconds: 7200 });
        assert_eq!(definition.staleness_seconds, 600);
        definition.check("gold.sales", &sales()).unwrap();
        // A day grain on a DATE is the date itself.
        let names: Vec<String> = definition
            .stored_columns()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(
            names,
            [
                "country",
                "day",
                "ts__month",
                "amount__sum",
                "amount__count",
                "amount__max",
                ROWS_COLUMN
            ]
        );
        let again = parse_statement(&definition.to_sql("by_day", "gold.sales")).unwrap();
        let ReflectionStatement::Create {
            definition: reparsed,
            ..
        } = again
        else {
            panic!("a create");
        };
        assert_eq!(reparsed.kind, definition.kind);
        assert!(
            definition
                .build_sql("gold.sales")
                .ends_with("GROUP BY 1, 2, 3")
        );
    }

    #[test]
    fn bad_definitions_say_what_is_wrong() {
        let check = |sql: &str| -> String {
            match parse_statement(sql) {
                Err(e) => e.to_string(),
                Ok(ReflectionStatement::Create { mut definition, .. }) => definition
                    .check("gold.sales", &sales())
                    .err()
                    .map(|e| e.to_string())
                    .unwrap_or_default(),
                Ok(other) => format!("{other:?}"),
            }
        };
        assert!(
            check("CREATE REFLECTION r ON gold.sales RAW COLUMNS (nope)")
                .contains("'nope' does not exist")
        );
        assert!(
            check("CREATE REFLECTION r ON gold.sales AGGREGATE DIMENSIONS (country BY DAY)")
                .contains("needs a DATE or TIMESTAMP")
        );
        assert!(
            check("CREATE REFLECTION r ON gold.sales AGGREGATE MEASURES (amount (AVG))")
                .contains("unknown measure function 'avg'")
        );
        assert!(
            check("CREATE REFLECTION r ON gold.sales AGGREGATE MEASURES (country (SUM))")
                .contains("SUM needs a number")
        );
        assert!(check("CREATE REFLECTION r ON gold.sales").contains("expected RAW or AGGREGATE"));
        assert!(
            check("CREATE REFLECTION r ON gold.sales RAW COLUMNS (day) SORT BY (ts)")
                .contains("not a column of the reflection")
        );
        assert!(
            check("CREATE REFLECTION r ON gold.sales RAW COLUMNS (day) REFRESH EVERY 'soon'")
                .contains("not an interval")
        );
        assert_eq!(
            parse_statement("refresh reflection r full").unwrap(),
            ReflectionStatement::Refresh {
                name: "r".to_string(),
                full: true
            }
        );
        assert_eq!(
            parse_statement("DROP REFLECTION IF EXISTS r").unwrap(),
            ReflectionStatement::Drop {
                name: "r".to_string(),
                if_exists: true
            }
        );
    }

    #[test]
    fn grains_roll_up_only_where_they_nest() {
        assert!(Grain::Month.rolls_up_from(Grain::Day));
        assert!(Grain::Year.rolls_up_from(Grain::Quarter));
        assert!(Grain::Week.rolls_up_from(Grain::Day));
        assert!(!Grain::Month.rolls_up_from(Grain::Week));
        assert!(!Grain::Day.rolls_up_from(Grain::Month));
        assert!(!Grain::Hour.rolls_up_from(Grain::Day));
    }
}
