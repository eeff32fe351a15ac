//! Values that must never reach a log line, an error message or an API response.

use std::fmt;

/// A secret string: `Debug` and `Display` print a mask, only [`Secret::expose`] gives the value.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The real value, for the one place that hands it to a client library.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"****\"")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("****")
    }
}

/// Replaces the password of a URL such as `postgres://user:pw@host/db` by `****`.
///
/// Works on strings that are not valid URLs too (it only looks for `scheme://user:pw@`), so that
/// a malformed URL in an error message does not leak its password either.
pub fn mask_url_password(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let authority_start = scheme_end + 3;
    let rest = &url[authority_start..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_string();
    };
    let userinfo = &authority[..at];
    let Some(colon) = userinfo.find(':') else {
        return url.to_string();
    };
    format!(
        "{}{}:****{}",
        &url[..authority_start],
        &userinfo[..colon],
        &url[authority_start + at..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_prints_its_value() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret}"), "****");
        assert_eq!(format!("{secret:?}"), "\"****\"");
        assert_eq!(secret.expose(), "hunter2");
    }

    #[test]
    fn url_passwords_are_masked() {
        assert_eq!(
            mask_url_password("postgres://polder:s3cret@db:5432/catalog"),
            "postgres://polder:****@db:5432/catalog"
        );
        assert_eq!(
            mask_url_password("postgres://polder@db/catalog"),
            "postgres://polder@db/catalog"
        );
        assert_eq!(
            mask_url_password("sqlite://./polder-data/catalog.db"),
            "sqlite://./polder-data/catalog.db"
        );
        assert_eq!(
            mask_url_password("postgres://u:p@ss@host/db?x=1"),
            "postgres://u:****@host/db?x=1"
        );
    }
}
