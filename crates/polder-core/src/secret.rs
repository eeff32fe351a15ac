//! Values that must never reach a log line, an error message or an API response: the
//! [`Secret`] wrapper, `env:NAME` / `file:PATH` references, and [`SecretKey`], which encrypts
//! secrets kept in the catalog (AES-256-GCM).

use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

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
    // The last `@` ends the user info even when the password holds `/`, `?` or `#`: masking
    // too much is better than printing a password.
    let Some(at) = rest.rfind('@') else {
        return url.to_string();
    };
    let userinfo = &rest[..at];
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

/// Whether a setting's value says where a secret is rather than being it.
pub fn is_reference(value: &str) -> bool {
    value.starts_with("env:") || value.starts_with("file:")
}

/// The value of `env:NAME` (an environment variable) or `file:PATH` (a file's contents without
/// the trailing newline, as Kubernetes and Docker mount secrets); any other value is returned
/// as it is. Errors name the reference, never a value.
pub fn resolve_reference(
    value: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<String, String> {
    if let Some(name) = value.strip_prefix("env:") {
        return env(name)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| format!("environment variable {name} (from env:{name}) is not set"));
    }
    if let Some(path) = value.strip_prefix("file:") {
        let contents = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read secret file {path}: {e}"))?;
        let trimmed = contents.trim_end_matches(['\n', '\r']);
        if trimmed.is_empty() {
            return Err(format!("secret file {path} is empty"));
        }
        return Ok(trimmed.to_string());
    }
    Ok(value.to_string())
}

/// Why a secret cannot be sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("the secrets key {0}")]
    BadKey(String),
    #[error("cannot {action} the secrets key file {path}: {message}")]
    KeyFile {
        action: &'static str,
        path: PathBuf,
        message: String,
    },
    /// Wrong key, or a stored value that was altered.
    #[error(
        "a stored secret cannot be decrypted: the secrets key (POLDER_SECRET_KEY or secrets.key_file) is not the one it was encrypted with"
    )]
    Undecryptable,
}

impl crate::HasErrorKind for SecretError {
    fn kind(&self) -> crate::ErrorKind {
        crate::ErrorKind::InvalidInput
    }
}

/// Prefix of sealed values, so that a future key rotation or algorithm can coexist.
const SEALED_PREFIX: &str = "v1:";

/// The key that encrypts secrets stored in the catalog (AES-256-GCM, a random nonce per value).
#[derive(Clone)]
pub struct SecretKey {
    key: std::sync::Arc<LessSafeKey>,
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(****)")
    }
}

impl SecretKey {
    /// A key from 32 bytes written as base64 (or 64 hex digits).
    pub fn from_text(text: &str) -> Result<SecretKey, SecretError> {
        let text = text.trim();
        let bytes = if text.len() == 64 && text.chars().all(|c| c.is_ascii_hexdigit()) {
            (0..32)
                .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16))
                .collect::<Result<Vec<u8>, _>>()
                .map_err(|_| SecretError::BadKey("is not valid hex".to_string()))?
        } else {
            BASE64.decode(text).map_err(|_| {
                SecretError::BadKey("is neither base64 nor 64 hex digits".to_string())
            })?
        };
        Self::from_bytes(&bytes)
    }

    fn from_bytes(bytes: &[u8]) -> Result<SecretKey, SecretError> {
        if bytes.len() != 32 {
            return Err(SecretError::BadKey(format!(
                "must be 32 bytes, got {} (create one with `openssl rand -base64 32`)",
                bytes.len()
            )));
        }
        let unbound = UnboundKey::new(&AES_256_GCM, bytes)
            .map_err(|_| SecretError::BadKey("is not a valid AES-256 key".to_string()))?;
        Ok(SecretKey {
            key: std::sync::Arc::new(LessSafeKey::new(unbound)),
        })
    }

    /// A new random key as base64.
    pub fn generate_text() -> String {
        let mut bytes = [0u8; 32];
        SystemRandom::new()
            .fill(&mut bytes)
            .expect("the system random source works");
        BASE64.encode(bytes)
    }

    /// The key in `path`, created (readable by its owner only) when the file does not exist.
    pub fn load_or_create(path: &Path) -> Result<SecretKey, SecretError> {
        let file_error = |action, e: std::io::Error| SecretError::KeyFile {
            action,
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        match std::fs::read_to_string(path) {
            Ok(text) => Self::from_text(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| file_error("create", e))?;
                }
                let text = Self::generate_text();
                write_owner_only(path, format!("{text}\n").as_bytes())
                    .map_err(|e| file_error("create", e))?;
                Self::from_text(&text)
            }
            Err(e) => Err(file_error("read", e)),
        }
    }

    /// Encrypts `plain` into printable text (`v1:` + base64 of nonce and ciphertext).
    /// `context` (for example the secret's name) is authenticated with it, so a sealed value
    /// copied onto another name does not open.
    pub fn seal(&self, context: &str, plain: &Secret) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .expect("the system random source works");
        let mut buffer = plain.expose().as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut buffer,
            )
            .expect("AES-GCM sealing of an in-memory buffer cannot fail");
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&buffer);
        format!("{SEALED_PREFIX}{}", BASE64.encode(sealed))
    }

    /// Decrypts what [`SecretKey::seal`] made for the same `context`.
    pub fn open(&self, context: &str, sealed: &str) -> Result<Secret, SecretError> {
        let encoded = sealed
            .strip_prefix(SEALED_PREFIX)
            .ok_or(SecretError::Undecryptable)?;
        let bytes = BASE64
            .decode(encoded)
            .map_err(|_| SecretError::Undecryptable)?;
        if bytes.len() < NONCE_LEN {
            return Err(SecretError::Undecryptable);
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let nonce =
            Nonce::try_assume_unique_for_key(nonce).map_err(|_| SecretError::Undecryptable)?;
        let mut buffer = ciphertext.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut buffer)
            .map_err(|_| SecretError::Undecryptable)?;
        String::from_utf8(plain.to_vec())
            .map(Secret::new)
            .map_err(|_| SecretError::Undecryptable)
    }
}

/// Writes a file only its owner can read.
pub fn write_owner_only(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(contents)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_resolve_from_env_and_files() {
        let env = |name: &str| (name == "DB_PASSWORD").then(|| "pw-from-env".to_string());
        assert_eq!(
            resolve_reference("env:DB_PASSWORD", env).unwrap(),
            "pw-from-env"
        );
        assert_eq!(resolve_reference("literal", env).unwrap(), "literal");
        let err = resolve_reference("env:MISSING", env).unwrap_err();
        assert!(err.contains("MISSING"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s3-secret");
        std::fs::write(&path, "from-file\n").unwrap();
        let reference = format!("file:{}", path.display());
        assert_eq!(resolve_reference(&reference, env).unwrap(), "from-file");
        assert!(is_reference(&reference) && !is_reference("plain"));
        let err = resolve_reference("file:/nonexistent/secret", env).unwrap_err();
        assert!(err.contains("/nonexistent/secret"), "{err}");
    }

    #[test]
    fn sealed_secrets_open_only_with_their_key_and_name() {
        let key = SecretKey::from_text(&SecretKey::generate_text()).unwrap();
        let plain = Secret::new("planted-s3cret-value");
        let sealed = key.seal("warehouse", &plain);
        assert!(sealed.starts_with("v1:"));
        assert!(!sealed.contains("planted"));
        // A fresh nonce each time: the same value never seals to the same text.
        assert_ne!(sealed, key.seal("warehouse", &plain));
        assert_eq!(key.open("warehouse", &sealed).unwrap(), plain);
        assert!(matches!(
            key.open("other-name", &sealed),
            Err(SecretError::Undecryptable)
        ));
        let other = SecretKey::from_text(&SecretKey::generate_text()).unwrap();
        assert!(matches!(
            other.open("warehouse", &sealed),
            Err(SecretError::Undecryptable)
        ));
        let mut tampered = sealed.clone();
        tampered.pop();
        tampered.push(if sealed.ends_with('A') { 'B' } else { 'A' });
        assert!(key.open("warehouse", &tampered).is_err());
    }

    #[test]
    fn keys_are_checked_and_key_files_created_private() {
        assert!(SecretKey::from_text("c2hvcnQ=").is_err());
        assert!(SecretKey::from_text("not base64 !!").is_err());
        assert!(SecretKey::from_text(&"ab".repeat(32)).is_ok());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/secret.key");
        let first = SecretKey::load_or_create(&path).unwrap();
        let again = SecretKey::load_or_create(&path).unwrap();
        let sealed = first.seal("n", &Secret::new("v"));
        assert_eq!(again.open("n", &sealed).unwrap().expose(), "v");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0);
        }
    }

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
        assert_eq!(
            mask_url_password("postgres://u:pa/ss#x?y@host/db"),
            "postgres://u:****@host/db"
        );
    }
}
