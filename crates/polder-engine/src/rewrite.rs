//! Rewrites Polder's SQL extensions into plain SQL DataFusion plans:
//!
//! - `t VERSION AS OF 3`, `t TIMESTAMP AS OF '...'`, `t FOR SYSTEM_TIME AS OF ...` become the
//!   table name `"t@v3"` / `"t@t<millis>"`, which the catalog resolves to that Delta version;
//! - `DESCRIBE HISTORY t` and `FROM table_history('s.t')` become `"t@history"`;
//! - `SHOW SCHEMAS` and `SHOW TABLES [IN s]` become queries on `information_schema`.
//!
//! DataFusion silently ignores a table version clause, so every statement goes through here:
//! leaving one unrewritten would return current data for a historical question.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Expr as SqlExpr, FunctionArg, FunctionArgExpr, Ident, ObjectName, ObjectNamePart, Statement,
    TableFactor, TableVersion, Value, VisitMut, VisitorMut,
};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::{Span, Token, Tokenizer, Whitespace};

use crate::catalog::{TableSelector, selector_suffix};
use crate::dialect::PolderDialect;
use crate::error::{EngineError, Result};

/// A time-travel clause found in a statement, waiting for its timestamp to be evaluated.
#[derive(Debug, Clone)]
pub(crate) enum PendingVersion {
    Version(i64),
    /// A SQL expression that must evaluate to a timestamp.
    Timestamp(Box<SqlExpr>),
}

/// Replaces the statements sqlparser does not know, at the token level: `DESCRIBE HISTORY
/// <name>` by `SELECT * FROM <name>@history`, `SHOW GRANTS` by a query on `system.grants`.
/// Returns `None` when the SQL has none.
pub(crate) fn rewrite_shorthands(sql: &str) -> Result<Option<String>> {
    let dialect = PolderDialect::default();
    let tokens = Tokenizer::new(&dialect, sql)
        .tokenize()
        .map_err(|e| EngineError::Syntax(e.to_string()))?;
    let mut out = String::with_capacity(sql.len() + 32);
    let mut changed = false;
    let mut index = 0;
    let mut at_statement_start = true;
    while index < tokens.len() {
        let token = &tokens[index];
        if at_statement_start
            && let Token::Word(word) = token
            && matches!(word.keyword, Keyword::DESCRIBE | Keyword::DESC)
        {
            let next = skip_spaces(&tokens, index + 1);
            if is_unquoted_word(tokens.get(next), "history") {
                // Collect the dotted name that follows.
                let mut cursor = skip_spaces(&tokens, next + 1);
                let mut parts: Vec<Ident> = Vec::new();
                while let Some(Token::Word(part)) = tokens.get(cursor) {
                    parts.push(Ident {
                        value: part.value.clone(),
                        quote_style: part.quote_style,
                        span: Span::empty(),
                    });
                    cursor += 1;
                    if matches!(tokens.get(cursor), Some(Token::Period)) {
                        cursor += 1;
                    } else {
                        break;
                    }
                }
                if parts.is_empty() {
                    return Err(EngineError::Syntax(
                        "DESCRIBE HISTORY needs a table name".to_string(),
                    ));
                }
                let name = with_selector(ObjectName::from(parts), &TableSelector::History);
                out.push_str(&format!("SELECT * FROM {name} ORDER BY version DESC"));
                changed = true;
                index = cursor;
                at_statement_start = false;
                continue;
            }
        }
        if at_statement_start
            && let Token::Word(word) = token
            && matches!(word.keyword, Keyword::CREATE | Keyword::DROP)
        {
            let next = skip_spaces(&tokens, index + 1);
            let after = skip_spaces(&tokens, next + 1);
            if is_unquoted_word(tokens.get(next), "column")
                && is_unquoted_word(tokens.get(after), "mask")
            {
                let creating = word.keyword == Keyword::CREATE;
                let (call, end) = column_mask_call(&tokens, after + 1, creating)?;
                out.push_str(&call);
                changed = true;
                index = end;
                at_statement_start = false;
                continue;
            }
        }
        if at_statement_start
            && let Token::Word(word) = token
            && (matches!(word.keyword, Keyword::CREATE | Keyword::DROP)
                || is_unquoted_word(Some(token), "refresh"))
            && is_unquoted_word(tokens.get(skip_spaces(&tokens, index + 1)), "reflection")
        {
            // The whole statement, handed to the engine's own parser as one string.
            let mut end = index;
            let mut text = String::new();
            while let Some(token) = tokens.get(end) {
                if matches!(token, Token::SemiColon) {
                    break;
                }
                text.push_str(&token.to_string());
                end += 1;
            }
            out.push_str(&format!(
                "CALL {}('{}')",
                crate::reflection::manage::REFLECTION_PROCEDURE,
                text.replace('\'', "''")
            ));
            changed = true;
            index = end;
            at_statement_start = false;
            continue;
        }
        if at_statement_start
            && let Token::Word(word) = token
            && word.keyword == Keyword::SHOW
        {
            let next = skip_spaces(&tokens, index + 1);
            if is_unquoted_word(tokens.get(next), "grants") {
                out.push_str(
                    "SELECT * FROM system.grants ORDER BY schema_name, table_name, grantee, privilege",
                );
                changed = true;
                index = next + 1;
                at_statement_start = false;
                continue;
            }
        }
        match token {
            Token::SemiColon => at_statement_start = true,
            Token::Whitespace(Whitespace::Space | Whitespace::Newline | Whitespace::Tab) => {}
            Token::Whitespace(_) => {}
            _ => at_statement_start = false,
        }
        out.push_str(&token.to_string());
        index += 1;
    }
    Ok(changed.then_some(out))
}

/// `CREATE COLUMN MASK name ON s.t (column) USING (expression) [EXEMPT a, b]` as
/// `CALL polder_create_column_mask(name, s.t, column, (expression), a, b)`, and
/// `DROP COLUMN MASK [IF EXISTS] name ON s.t` as `CALL polder_drop_column_mask(name, s.t, bool)`
/// (see [`crate::governance`]); `from` is the token after `MASK`. Returns the call and the
/// index after the statement.
fn column_mask_call(tokens: &[Token], from: usize, creating: bool) -> Result<(String, usize)> {
    let usage = if creating {
        "CREATE COLUMN MASK name ON schema.table (column) USING (expression) [EXEMPT user_or_role, ...]"
    } else {
        "DROP COLUMN MASK [IF EXISTS] name ON schema.table"
    };
    let syntax = || EngineError::Syntax(format!("expected {usage}"));
    let mut cursor = skip_spaces(tokens, from);
    let word_at = |cursor: usize| -> Result<String> {
        match tokens.get(cursor) {
            Some(token @ Token::Word(_)) => Ok(token.to_string()),
            _ => Err(syntax()),
        }
    };
    let mut if_exists = false;
    if !creating && is_unquoted_word(tokens.get(cursor), "if") {
        cursor = skip_spaces(tokens, cursor + 1);
        if !is_unquoted_word(tokens.get(cursor), "exists") {
            return Err(syntax());
        }
        if_exists = true;
        cursor = skip_spaces(tokens, cursor + 1);
    }
    let name = word_at(cursor)?;
    cursor = skip_spaces(tokens, cursor + 1);
    if !is_unquoted_word(tokens.get(cursor), "on") {
        return Err(syntax());
    }
    cursor = skip_spaces(tokens, cursor + 1);
    let mut table = word_at(cursor)?;
    cursor += 1;
    while matches!(tokens.get(cursor), Some(Token::Period)) {
        table.push('.');
        table.push_str(&word_at(cursor + 1)?);
        cursor += 2;
    }
    cursor = skip_spaces(tokens, cursor);
    if !creating {
        let call = format!(
            "CALL {}({name}, {table}, {if_exists})",
            crate::governance::DROP_MASK_PROCEDURE
        );
        return Ok((call, cursor));
    }
    if !matches!(tokens.get(cursor), Some(Token::LParen)) {
        return Err(syntax());
    }
    cursor = skip_spaces(tokens, cursor + 1);
    let column = word_at(cursor)?;
    cursor = skip_spaces(tokens, cursor + 1);
    if !matches!(tokens.get(cursor), Some(Token::RParen)) {
        return Err(syntax());
    }
    cursor = skip_spaces(tokens, cursor + 1);
    if !is_unquoted_word(tokens.get(cursor), "using") {
        return Err(syntax());
    }
    cursor = skip_spaces(tokens, cursor + 1);
    if !matches!(tokens.get(cursor), Some(Token::LParen)) {
        return Err(syntax());
    }
    // The expression, parentheses included, exactly as written.
    let mut expression = String::new();
    let mut depth = 0usize;
    loop {
        let token = tokens.get(cursor).ok_or_else(syntax)?;
        match token {
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            Token::SemiColon => return Err(syntax()),
            _ => {}
        }
        expression.push_str(&token.to_string());
        cursor += 1;
        if depth == 0 {
            break;
        }
    }
    let mut exempt = Vec::new();
    cursor = skip_spaces(tokens, cursor);
    if is_unquoted_word(tokens.get(cursor), "exempt") {
        loop {
            cursor = skip_spaces(tokens, cursor + 1);
            exempt.push(word_at(cursor)?);
            cursor = skip_spaces(tokens, cursor + 1);
            if !matches!(tokens.get(cursor), Some(Token::Comma)) {
                break;
            }
        }
    }
    let mut call = format!(
        "CALL {}({name}, {table}, {column}, {expression}",
        crate::governance::CREATE_MASK_PROCEDURE
    );
    for principal in exempt {
        call.push_str(", ");
        call.push_str(&principal);
    }
    call.push(')');
    Ok((call, cursor))
}

/// The index of the first token at or after `from` that is not whitespace.
fn skip_spaces(tokens: &[Token], from: usize) -> usize {
    let mut index = from;
    while matches!(tokens.get(index), Some(Token::Whitespace(_))) {
        index += 1;
    }
    index
}

fn is_unquoted_word(token: Option<&Token>, word: &str) -> bool {
    matches!(token, Some(Token::Word(w)) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word))
}

/// `name` with its last part replaced by `<table>@<selector>`, quoted so that it is used as is.
pub(crate) fn with_selector(name: ObjectName, selector: &TableSelector) -> ObjectName {
    let mut parts = name.0;
    if let Some(ObjectNamePart::Identifier(last)) = parts.last_mut() {
        let base = if last.quote_style.is_some() {
            last.value.clone()
        } else {
            last.value.to_lowercase()
        };
        *last = Ident::with_quote('"', format!("{base}{}", selector_suffix(selector)));
    }
    ObjectName(parts)
}

/// Collects time-travel clauses (in visiting order) so their timestamps can be evaluated.
struct CollectVersions {
    found: Vec<PendingVersion>,
    error: Option<EngineError>,
}

impl VisitorMut for CollectVersions {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        let TableFactor::Table {
            version: Some(version),
            ..
        } = factor
        else {
            return ControlFlow::Continue(());
        };
        let pending = match version {
            TableVersion::VersionAsOf(expr) => match version_number(expr) {
                Some(number) => PendingVersion::Version(number),
                None => {
                    self.error = Some(EngineError::InvalidInput(format!(
                        "VERSION AS OF needs a whole number, got {expr}"
                    )));
                    return ControlFlow::Break(());
                }
            },
            TableVersion::TimestampAsOf(expr) | TableVersion::ForSystemTimeAsOf(expr) => {
                PendingVersion::Timestamp(Box::new(expr.clone()))
            }
            other => {
                self.error = Some(EngineError::Unsupported(format!(
                    "table version clause {other}; use VERSION AS OF n or TIMESTAMP AS OF '...'"
                )));
                return ControlFlow::Break(());
            }
        };
        self.found.push(pending);
        ControlFlow::Continue(())
    }
}

fn version_number(expr: &SqlExpr) -> Option<i64> {
    match expr {
        SqlExpr::Value(value) => match &value.value {
            Value::Number(text, _) => text.parse().ok(),
            _ => None,
        },
        _ => None,
    }
}

/// Applies evaluated selectors (in the same visiting order) and `table_history(...)` calls.
struct ApplySelectors {
    selectors: std::vec::IntoIter<TableSelector>,
    error: Option<EngineError>,
}

impl VisitorMut for ApplySelectors {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        let TableFactor::Table {
            name,
            version,
            args,
            ..
        } = factor
        else {
            return ControlFlow::Continue(());
        };
        if version.is_some() {
            let selector = self
                .selectors
                .next()
                .expect("one selector per collected version");
            *name = with_selector(name.clone(), &selector);
            *version = None;
            return ControlFlow::Continue(());
        }
        let is_history_function = args.is_some()
            && name.0.len() == 1
            && name.0[0]
                .as_ident()
                .is_some_and(|ident| ident.value.eq_ignore_ascii_case("table_history"));
        if is_history_function {
            let call_args = args.take().expect("checked above").args;
            let table = match call_args.as_slice() {
                [FunctionArg::Unnamed(FunctionArgExpr::Expr(SqlExpr::Value(value)))] => {
                    match &value.value {
                        Value::SingleQuotedString(text) => Some(text.clone()),
                        _ => None,
                    }
                }
                _ => None,
            };
            let Some(table) = table else {
                self.error = Some(EngineError::InvalidInput(
                    "table_history takes one string argument: table_history('schema.table')"
                        .to_string(),
                ));
                return ControlFlow::Break(());
            };
            match Parser::new(&PolderDialect::default())
                .try_with_sql(&table)
                .and_then(|mut p| p.parse_object_name(false))
            {
                Ok(table_name) => *name = with_selector(table_name, &TableSelector::History),
                Err(e) => {
                    self.error = Some(EngineError::InvalidInput(format!(
                        "table_history: '{table}' is not a table name: {e}"
                    )));
                    return ControlFlow::Break(());
                }
            }
        }
        ControlFlow::Continue(())
    }
}

/// Finds the time-travel clauses of `statement`.
pub(crate) fn collect_versions(statement: &mut Statement) -> Result<Vec<PendingVersion>> {
    let mut collector = CollectVersions {
        found: Vec::new(),
        error: None,
    };
    let _ = statement.visit(&mut collector);
    match collector.error {
        Some(err) => Err(err),
        None => Ok(collector.found),
    }
}

/// Applies resolved selectors (one per collected clause, same order) and history functions.
pub(crate) fn apply_selectors(
    statement: &mut Statement,
    selectors: Vec<TableSelector>,
) -> Result<()> {
    let mut applier = ApplySelectors {
        selectors: selectors.into_iter(),
        error: None,
    };
    let _ = statement.visit(&mut applier);
    match applier.error {
        Some(err) => Err(err),
        None => Ok(()),
    }
}

/// Rewrites `LIKE pattern ESCAPE 'c'` with an escape character other than backslash (which
/// DataFusion cannot evaluate) into the same pattern escaped with backslashes. Client tools send
/// these (SQLAlchemy lists schemas with `NOT LIKE 'pg\_%' ESCAPE '/'`-style filters).
struct NormalizeLikeEscapes;

impl VisitorMut for NormalizeLikeEscapes {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &mut SqlExpr) -> ControlFlow<()> {
        let (pattern, escape_char) = match expr {
            SqlExpr::Like {
                pattern,
                escape_char,
                ..
            }
            | SqlExpr::ILike {
                pattern,
                escape_char,
                ..
            } => (pattern, escape_char),
            _ => return ControlFlow::Continue(()),
        };
        let Some(escape) = escape_char.as_ref().and_then(|e| match &e.value {
            Value::SingleQuotedString(text) if text.chars().count() == 1 && text != "\\" => {
                text.chars().next()
            }
            _ => None,
        }) else {
            return ControlFlow::Continue(());
        };
        let literal_text = match pattern.as_ref() {
            SqlExpr::Value(literal) => match &literal.value {
                Value::SingleQuotedString(text) => Some(text.clone()),
                _ => None,
            },
            _ => None,
        };
        let Some(text) = literal_text else {
            // A pattern known only at run time (a bound parameter, a concatenation): convert it
            // when evaluated. Backslashes are doubled first, then `<escape>x` becomes `\x`.
            let escaped_escape = regex_escape(escape);
            let converted = format!(
                "regexp_replace(replace(({pattern}), '\\', '\\\\'), '{escaped_escape}(.)', '\\${{1}}', 'g')"
            );
            match Parser::new(&PolderDialect::default())
                .try_with_sql(&converted)
                .and_then(|mut p| p.parse_expr())
            {
                Ok(expr) => {
                    **pattern = expr;
                    *escape_char = None;
                }
                Err(_) => return ControlFlow::Continue(()),
            }
            return ControlFlow::Continue(());
        };
        let mut rewritten = String::with_capacity(text.len() + 4);
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            if c == escape {
                rewritten.push('\\');
                if let Some(next) = chars.next() {
                    rewritten.push(next);
                }
            } else if c == '\\' {
                rewritten.push_str("\\\\");
            } else {
                rewritten.push(c);
            }
        }
        if let SqlExpr::Value(literal) = pattern.as_mut() {
            literal.value = Value::SingleQuotedString(rewritten);
        }
        *escape_char = None;
        ControlFlow::Continue(())
    }
}

fn regex_escape(c: char) -> String {
    if c.is_ascii_alphanumeric() {
        c.to_string()
    } else {
        format!("\\{c}")
    }
}

pub(crate) fn normalize_like_escapes(statement: &mut Statement) {
    let _ = statement.visit(&mut NormalizeLikeEscapes);
}

/// Makes the scalar subqueries clients send to inspect `pg_catalog` plannable by DataFusion.
///
/// The value of a scalar subquery over `pg_catalog` is wrapped in `first_value(...)`.
/// PostgreSQL clients inspect tables with correlated scalar subqueries such as
/// `(SELECT typcollation FROM pg_type WHERE oid = atttypid)`, which PostgreSQL checks for
/// "at most one row" at run time and DataFusion refuses to plan unless they aggregate. For a
/// subquery that yields at most one row the aggregate gives the same value, so the rewrite keeps
/// the meaning of every query PostgreSQL accepts. It is limited to catalog queries, the only
/// place clients write them. Lookups in catalog tables of features Polder tables lack
/// ([`ABSENT_FEATURE_TABLES`]) become NULL, and so does a CASE left with only NULL results.
struct AggregateCatalogSubqueries;

fn is_catalog_relation(factor: &TableFactor) -> bool {
    match factor {
        TableFactor::Table { name, .. } => name.0.iter().any(|part| {
            part.as_ident().is_some_and(|ident| {
                ident.value.eq_ignore_ascii_case("pg_catalog") || ident.value.starts_with("pg_")
            })
        }),
        _ => false,
    }
}

const AGGREGATES: &[&str] = &[
    "count",
    "sum",
    "min",
    "max",
    "avg",
    "array_agg",
    "string_agg",
    "bool_and",
    "bool_or",
    "first_value",
    "last_value",
];

/// Catalog tables describing features Polder tables do not have (column defaults, identity
/// sequences, collations): a lookup in them finds nothing for a Polder table.
const ABSENT_FEATURE_TABLES: &[&str] = &["pg_attrdef", "pg_sequence", "pg_collation"];

fn reads_absent_feature(query: &datafusion::sql::sqlparser::ast::Query) -> bool {
    use datafusion::sql::sqlparser::ast::SetExpr;
    let SetExpr::Select(select) = query.body.as_ref() else {
        return false;
    };
    select.from.iter().any(|table| {
        std::iter::once(&table.relation)
            .chain(table.joins.iter().map(|j| &j.relation))
            .any(|factor| match factor {
                TableFactor::Table { name, .. } => name
                    .0
                    .last()
                    .and_then(|p| p.as_ident())
                    .is_some_and(|ident| {
                        ABSENT_FEATURE_TABLES
                            .iter()
                            .any(|t| ident.value.eq_ignore_ascii_case(t))
                    }),
                _ => false,
            })
    })
}

fn is_null(expr: &SqlExpr) -> bool {
    match expr {
        SqlExpr::Value(value) => matches!(value.value, Value::Null),
        SqlExpr::Function(function) => function.name.to_string() == crate::engine::DISCARD_FUNCTION,
        _ => false,
    }
}

/// NULL in place of `removed`, keeping the parameters it contained: the client binds values by
/// position, so every `$n` must stay in the statement (as arguments of a function that ignores
/// them).
fn null_keeping_parameters(removed: &SqlExpr) -> SqlExpr {
    let mut placeholders: Vec<String> = Vec::new();
    let _ = datafusion::sql::sqlparser::ast::visit_expressions(removed, |expr| {
        if let SqlExpr::Value(value) = expr
            && let Value::Placeholder(name) = &value.value
            && !placeholders.contains(name)
        {
            placeholders.push(name.clone());
        }
        ControlFlow::<()>::Continue(())
    });
    if placeholders.is_empty() {
        return SqlExpr::Value(Value::Null.into());
    }
    let call = format!(
        "{}({})",
        crate::engine::DISCARD_FUNCTION,
        placeholders.join(", ")
    );
    Parser::new(&PolderDialect::default())
        .try_with_sql(&call)
        .and_then(|mut p| p.parse_expr())
        .unwrap_or_else(|_| SqlExpr::Value(Value::Null.into()))
}

impl VisitorMut for AggregateCatalogSubqueries {
    type Break = ();

    /// A CASE whose every result is NULL is NULL, whatever its conditions (which DataFusion may
    /// not be able to plan, such as correlated subqueries).
    fn post_visit_expr(&mut self, expr: &mut SqlExpr) -> ControlFlow<()> {
        if let SqlExpr::Case {
            conditions,
            else_result,
            ..
        } = expr
            && conditions.iter().all(|when| is_null(&when.result))
            && else_result.as_deref().is_none_or(is_null)
        {
            *expr = null_keeping_parameters(expr);
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &mut SqlExpr) -> ControlFlow<()> {
        use datafusion::sql::sqlparser::ast::{GroupByExpr, SelectItem, SetExpr};
        let SqlExpr::Subquery(query) = expr else {
            return ControlFlow::Continue(());
        };
        if reads_absent_feature(query) {
            *expr = null_keeping_parameters(expr);
            return ControlFlow::Continue(());
        }
        if query.limit_clause.is_some() || query.fetch.is_some() || query.with.is_some() {
            return ControlFlow::Continue(());
        }
        let SetExpr::Select(select) = query.body.as_mut() else {
            return ControlFlow::Continue(());
        };
        let grouped =
            !matches!(&select.group_by, GroupByExpr::Expressions(list, _) if list.is_empty());
        let from_catalog = !select.from.is_empty()
            && select.from.iter().all(|table| {
                is_catalog_relation(&table.relation)
                    && table
                        .joins
                        .iter()
                        .all(|join| is_catalog_relation(&join.relation))
            });
        if grouped
            || select.distinct.is_some()
            || select.having.is_some()
            || !from_catalog
            || select.projection.len() != 1
        {
            return ControlFlow::Continue(());
        }
        let value = match &mut select.projection[0] {
            SelectItem::UnnamedExpr(value) | SelectItem::ExprWithAlias { expr: value, .. } => value,
            _ => return ControlFlow::Continue(()),
        };
        if let SqlExpr::Function(function) = value
            && AGGREGATES
                .iter()
                .any(|name| function.name.to_string().eq_ignore_ascii_case(name))
        {
            return ControlFlow::Continue(());
        }
        let wrapped = format!("first_value({value})");
        if let Ok(parsed) = Parser::new(&PolderDialect::default())
            .try_with_sql(&wrapped)
            .and_then(|mut p| p.parse_expr())
        {
            *value = parsed;
        }
        ControlFlow::Continue(())
    }
}

pub(crate) fn aggregate_catalog_subqueries(statement: &mut Statement) {
    let _ = statement.visit(&mut AggregateCatalogSubqueries);
}

/// `SHOW SCHEMAS` / `SHOW TABLES [IN schema]` as queries listing only user objects.
pub(crate) fn show_statement_query(statement: &Statement) -> Option<String> {
    match statement {
        Statement::ShowSchemas { .. } => Some(
            "SELECT schema_name FROM information_schema.schemata \
             WHERE schema_name NOT IN ('information_schema', 'pg_catalog') ORDER BY schema_name"
                .to_string(),
        ),
        Statement::ShowTables { show_options, .. } => {
            let schema_filter = show_options
                .show_in
                .as_ref()
                .and_then(|show_in| show_in.parent_name.as_ref())
                .and_then(|name| name.0.last())
                .and_then(|part| part.as_ident())
                .map(|ident| {
                    let schema = if ident.quote_style.is_some() {
                        ident.value.clone()
                    } else {
                        ident.value.to_lowercase()
                    };
                    format!(" AND table_schema = '{}'", schema.replace('\'', "''"))
                })
                .unwrap_or_default();
            Some(format!(
                "SELECT table_schema, table_name, table_type FROM information_schema.tables \
                 WHERE table_schema NOT IN ('information_schema', 'pg_catalog'){schema_filter} \
                 ORDER BY table_schema, table_name"
            ))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(sql: &str) -> Statement {
        Parser::parse_sql(&PolderDialect::default(), sql)
            .unwrap()
            .remove(0)
    }

    #[test]
    fn describe_history_becomes_a_query() {
        let rewritten = rewrite_shorthands("describe history Bronze.Orders; select 1")
            .unwrap()
            .unwrap();
        assert_eq!(
            rewritten,
            "SELECT * FROM Bronze.\"orders@history\" ORDER BY version DESC; select 1"
        );
        assert!(
            rewrite_shorthands("select 'describe history x'")
                .unwrap()
                .is_none()
        );
        assert!(rewrite_shorthands("describe orders").unwrap().is_none());
    }

    #[test]
    fn versions_are_collected_and_applied_in_order() {
        let mut statement = parse(
            "SELECT * FROM bronze.a VERSION AS OF 2 JOIN (SELECT * FROM b TIMESTAMP AS OF '2026-01-01') x ON true",
        );
        let found = collect_versions(&mut statement).unwrap();
        assert!(matches!(found[0], PendingVersion::Version(2)));
        assert!(matches!(found[1], PendingVersion::Timestamp(_)));
        apply_selectors(
            &mut statement,
            vec![
                TableSelector::Version(2),
                TableSelector::Timestamp(1_767_225_600_000),
            ],
        )
        .unwrap();
        let text = statement.to_string();
        assert!(text.contains("bronze.\"a@v2\""), "{text}");
        assert!(text.contains("\"b@t1767225600000\""), "{text}");
    }

    #[test]
    fn table_history_function_is_rewritten() {
        let mut statement = parse("SELECT version FROM table_history('silver.Orders')");
        apply_selectors(&mut statement, vec![]).unwrap();
        assert_eq!(
            statement.to_string(),
            "SELECT version FROM silver.\"orders@history\""
        );
        let mut bad = parse("SELECT * FROM table_history(1)");
        assert!(apply_selectors(&mut bad, vec![]).is_err());
    }

    #[test]
    fn like_escapes_become_backslashes() {
        let mut statement =
            parse("SELECT nspname FROM n WHERE nspname NOT LIKE 'pg/_%' ESCAPE '/'");
        normalize_like_escapes(&mut statement);
        assert_eq!(
            statement.to_string(),
            "SELECT nspname FROM n WHERE nspname NOT LIKE 'pg\\_%'"
        );
        let mut bound = parse("SELECT 1 WHERE 'a' NOT LIKE $1 || '%' ESCAPE '/'");
        normalize_like_escapes(&mut bound);
        assert_eq!(
            bound.to_string(),
            "SELECT 1 WHERE 'a' NOT LIKE regexp_replace(replace(($1 || '%'), '\\', '\\\\'), '\\/(.)', '\\${1}', 'g')"
        );
        let mut plain = parse("SELECT 1 WHERE 'a' LIKE 'a%'");
        normalize_like_escapes(&mut plain);
        assert_eq!(plain.to_string(), "SELECT 1 WHERE 'a' LIKE 'a%'");
    }

    #[test]
    fn catalog_scalar_subqueries_are_aggregated() {
        let mut statement = parse(
            "SELECT a.attname, (SELECT t.typcollation FROM pg_catalog.pg_type t WHERE t.oid = a.atttypid) AS c, \
             (SELECT x FROM user_table) AS u FROM pg_catalog.pg_attribute a",
        );
        aggregate_catalog_subqueries(&mut statement);
        let text = statement.to_string();
        assert!(
            text.contains("(SELECT first_value(t.typcollation) FROM pg_catalog.pg_type"),
            "{text}"
        );
        assert!(
            text.contains("(SELECT x FROM user_table)"),
            "user tables are left alone: {text}"
        );
        let mut defaults = parse(
            "SELECT CASE WHEN a.atthasdef THEN (SELECT d.adbin FROM pg_catalog.pg_attrdef d WHERE d.adrelid = a.attrelid) ELSE NULL END AS dflt FROM pg_catalog.pg_attribute a",
        );
        aggregate_catalog_subqueries(&mut defaults);
        assert_eq!(
            defaults.to_string(),
            "SELECT NULL AS dflt FROM pg_catalog.pg_attribute a"
        );
    }

    #[test]
    fn column_mask_statements_become_calls() {
        let sql = "create column mask hide_email on crm.customers (email) using (CASE WHEN email LIKE '%@%' THEN '***' END) exempt engineer, bob; select 1";
        let rewritten = rewrite_shorthands(sql).unwrap().unwrap();
        assert_eq!(
            rewritten,
            "CALL polder_create_column_mask(hide_email, crm.customers, email, (CASE WHEN email LIKE '%@%' THEN '***' END), engineer, bob); select 1"
        );
        let dropped = rewrite_shorthands("DROP COLUMN MASK IF EXISTS hide_email ON crm.customers")
            .unwrap()
            .unwrap();
        assert_eq!(
            dropped,
            "CALL polder_drop_column_mask(hide_email, crm.customers, true)"
        );
        let err = rewrite_shorthands("CREATE COLUMN MASK m ON t USING ('x')").unwrap_err();
        assert!(
            err.to_string().contains("expected CREATE COLUMN MASK"),
            "{err}"
        );
        // A column named mask in ordinary SQL is left alone.
        assert!(rewrite_shorthands("SELECT mask FROM t").unwrap().is_none());
    }

    #[test]
    fn bad_version_is_an_error() {
        let mut statement = parse("SELECT * FROM a VERSION AS OF 1.5");
        assert!(collect_versions(&mut statement).is_err());
    }
}
