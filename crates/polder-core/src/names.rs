//! Names of schemas and tables, and the rule that keeps them safe as lake paths.

use std::fmt;

use crate::DEFAULT_SCHEMA;
use crate::error::{ErrorKind, HasErrorKind};

/// A name that cannot be used for a schema, table or view.
#[derive(Debug, thiserror::Error)]
pub enum NameError {
    /// The identifier is empty, too long or has characters other than letters, digits and `_`.
    #[error(
        "invalid name '{0}': use 1 to 128 letters, digits or underscores, not starting with a digit"
    )]
    Invalid(String),
    /// A dotted name has more parts than `schema.table`.
    #[error("invalid table name '{0}': expected 'table' or 'schema.table'")]
    TooManyParts(String),
}

impl HasErrorKind for NameError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::InvalidInput
    }
}

/// Checks that `name` can be a schema, table or view name.
///
/// Names become directory names in the lake (`<lake>/<schema>/<table>/`), so only letters,
/// digits and underscores are allowed.
pub fn validate_identifier(name: &str) -> Result<(), NameError> {
    let mut chars = name.chars();
    let valid_start = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_');
    let valid_rest = name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid_start || !valid_rest || name.len() > 128 {
        return Err(NameError::Invalid(name.to_string()));
    }
    Ok(())
}

/// A table or view, qualified by its schema.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableName {
    pub schema: String,
    pub table: String,
}

impl TableName {
    pub fn new(schema: impl Into<String>, table: impl Into<String>) -> Result<Self, NameError> {
        let schema = schema.into();
        let table = table.into();
        validate_identifier(&schema)?;
        validate_identifier(&table)?;
        Ok(TableName { schema, table })
    }

    /// Parses `table` or `schema.table`; unquoted parts are lowercased as SQL does.
    pub fn parse(text: &str) -> Result<Self, NameError> {
        let parts: Vec<String> = text
            .split('.')
            .map(|part| {
                let part = part.trim();
                match part.strip_prefix('"').and_then(|p| p.strip_suffix('"')) {
                    Some(quoted) => quoted.to_string(),
                    None => part.to_lowercase(),
                }
            })
            .collect();
        match parts.as_slice() {
            [table] => TableName::new(DEFAULT_SCHEMA, table.clone()),
            [schema, table] => TableName::new(schema.clone(), table.clone()),
            _ => Err(NameError::TooManyParts(text.to_string())),
        }
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_checked() {
        assert!(validate_identifier("orders_2024").is_ok());
        assert!(validate_identifier("_tmp").is_ok());
        assert!(validate_identifier("").is_err());
        assert!(validate_identifier("1abc").is_err());
        assert!(validate_identifier("a/b").is_err());
        assert!(validate_identifier("..").is_err());
        assert!(validate_identifier(&"x".repeat(129)).is_err());
    }

    #[test]
    fn table_names_parse_like_sql() {
        let name = TableName::parse("Gold.Daily_Revenue").unwrap();
        assert_eq!(name.to_string(), "gold.daily_revenue");
        let quoted = TableName::parse("\"Gold\".\"Mixed\"").unwrap();
        assert_eq!(quoted.schema, "Gold");
        assert_eq!(TableName::parse("orders").unwrap().schema, "public");
        assert!(TableName::parse("a.b.c").is_err());
    }
}
