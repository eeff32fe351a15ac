//! Authentication: users with argon2 password hashes (plus SCRAM-SHA-256 keys for the
//! PostgreSQL wire), session tokens from a login, personal access tokens for tools, and a
//! limit on failed logins per user and per client address.
//!
//! A token is `polder_<id>_<secret>`: the id finds the row, the secret is checked against a
//! SHA-256 hash (tokens are long random strings, so a fast hash is enough; passwords get
//! argon2). On the PostgreSQL wire a token is used as user `<id>` with the secret as
//! password, because SCRAM needs to know the password's salt before it sees the password.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use datafusion_postgres::pgwire::api::auth::sasl::scram::gen_salted_password;
use polder_catalog::{AuditRecord, CatalogStore, TokenRecord, UserRecord};
use polder_core::{ErrorKind, HasErrorKind, Principal, Role, validate_identifier};
use sha2::{Digest, Sha256};

/// SCRAM iteration count, the PostgreSQL default.
pub const SCRAM_ITERATIONS: usize = 4096;
/// How long a login's session token lives.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Failed logins allowed per user or per address within [`FAILURE_WINDOW`].
const MAX_FAILURES: usize = 5;
const FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// Authentication failures.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Wrong user name or password, or a bad, expired or revoked token. One message for all, so
    /// that a caller cannot probe which user names exist.
    #[error("invalid credentials")]
    InvalidCredentials,
    /// Too many failed logins for this user or from this address.
    #[error("too many failed logins; try again in a minute")]
    RateLimited,
    /// A user-management request that cannot be done (bad name, weak password, unknown user).
    #[error("{0}")]
    InvalidInput(String),
    #[error("user '{0}' does not exist")]
    UnknownUser(String),
    #[error(transparent)]
    Catalog(#[from] polder_catalog::CatalogError),
}

impl HasErrorKind for AuthError {
    fn kind(&self) -> ErrorKind {
        match self {
            AuthError::InvalidCredentials | AuthError::RateLimited => ErrorKind::Unauthenticated,
            AuthError::InvalidInput(_) => ErrorKind::InvalidInput,
            AuthError::UnknownUser(_) => ErrorKind::NotFound,
            AuthError::Catalog(err) => err.kind(),
        }
    }
}

type Result<T, E = AuthError> = std::result::Result<T, E>;

fn random_bytes<const N: usize>() -> [u8; N] {
    rand::random()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256_hex(text: &str) -> String {
    hex(&Sha256::digest(text.as_bytes()))
}

/// A random password for the first admin when none is configured.
/// User attribute names: letters, digits and `_`, at most 64.
pub fn is_attribute_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

pub fn generate_password() -> String {
    hex(&random_bytes::<12>())
}

/// argon2 hash and SCRAM keys of a password.
fn password_credentials(password: &str) -> Result<(String, String, String)> {
    if password.chars().count() < 8 {
        return Err(AuthError::InvalidInput(
            "a password needs at least 8 characters".to_string(),
        ));
    }
    let salt = SaltString::encode_b64(&random_bytes::<16>())
        .map_err(|e| AuthError::InvalidInput(e.to_string()))?;
    let hash = Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| AuthError::InvalidInput(e.to_string()))?
        .to_string();
    let (scram_salt, scram_salted) = scram_credentials(password);
    Ok((hash, scram_salt, scram_salted))
}

fn scram_credentials(secret: &str) -> (String, String) {
    let salt = random_bytes::<16>();
    let salted = gen_salted_password(secret, &salt, SCRAM_ITERATIONS);
    (BASE64.encode(salt), BASE64.encode(salted))
}

/// Decoded SCRAM salt and SaltedPassword.
fn decode_scram(salt: &str, salted: &str) -> Option<(Vec<u8>, Vec<u8>)> {
    Some((BASE64.decode(salt).ok()?, BASE64.decode(salted).ok()?))
}

/// SCRAM keys of a random secret, for a login name that does not exist: the exchange then
/// fails like a wrong password does, after the same amount of work.
fn decoy_scram_keys() -> (Vec<u8>, Vec<u8>) {
    let salt = random_bytes::<16>();
    let salted = gen_salted_password(&generate_password(), &salt, SCRAM_ITERATIONS);
    (salt.to_vec(), salted)
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The user and password of an `Authorization: Basic ...` value. Padding is optional, since
/// clients differ (Go's Flight client, which ADBC uses, sends unpadded base64).
pub(crate) fn parse_basic(header: &str) -> Option<(String, String)> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let encoded = header.strip_prefix("Basic ")?.trim();
    let decoded = String::from_utf8(LENIENT.decode(encoded).ok()?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// A token as handed to its owner once: `polder_<id>_<secret>`.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub id: String,
    pub token: String,
    pub expires_at: Option<i64>,
}

/// How long a checked token or PostgreSQL login is trusted without reading the catalog again:
/// the bound on how late another process's revocation or `user disable` takes effect.
pub const PRINCIPAL_TTL: Duration = Duration::from_secs(5);

/// A user and role found for some credentials, and when.
type CheckedLogin = (String, Role, Instant);

/// Users, tokens and login checks over the catalog store.
#[derive(Debug, Clone)]
pub struct Authenticator {
    store: CatalogStore,
    failures: Arc<Mutex<HashMap<String, Vec<Instant>>>>,
    /// Recently checked credentials (a token's hash, or `pg:<login>`) -> user and role, so that
    /// a query does not pay catalog reads for its credentials.
    checked: Arc<Mutex<HashMap<String, CheckedLogin>>>,
}

impl Authenticator {
    pub fn new(store: CatalogStore) -> Self {
        Authenticator {
            store,
            failures: Arc::new(Mutex::new(HashMap::new())),
            checked: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    fn recently_checked(&self, key: &str, client: &str) -> Option<Principal> {
        let checked = self.checked.lock().expect("checked credentials lock");
        let (user, role, at) = checked.get(key)?;
        (at.elapsed() < PRINCIPAL_TTL).then(|| Principal::new(user, *role, client))
    }

    fn remember_checked(&self, key: String, principal: &Principal) {
        self.checked
            .lock()
            .expect("checked credentials lock")
            .insert(
                key,
                (principal.user.clone(), principal.role, Instant::now()),
            );
    }

    /// After a change to users or tokens, nothing checked before is trusted any more.
    fn forget_checked(&self) {
        self.checked
            .lock()
            .expect("checked credentials lock")
            .clear();
    }

    pub fn store(&self) -> &CatalogStore {
        &self.store
    }

    /// Creates the `admin` user on the first start. Returns the password when it was generated
    /// (the caller prints it once).
    pub async fn bootstrap_admin(&self, configured: Option<&str>) -> Result<Option<String>> {
        if self.store.get_user("admin").await?.is_some() {
            return Ok(None);
        }
        let (password, generated) = match configured {
            Some(password) => (password.to_string(), false),
            None => (generate_password(), true),
        };
        self.add_user("admin", Role::Admin, &password).await?;
        Ok(generated.then_some(password))
    }

    pub async fn add_user(&self, name: &str, role: Role, password: &str) -> Result<()> {
        validate_identifier(name).map_err(|e| AuthError::InvalidInput(e.to_string()))?;
        if name.starts_with("polder_") || name == "system" {
            return Err(AuthError::InvalidInput(format!(
                "'{name}' is reserved; choose another user name"
            )));
        }
        let (password_hash, scram_salt, scram_salted) = password_credentials(password)?;
        self.store
            .create_user(&UserRecord {
                name: name.to_string(),
                role: role.as_str().to_string(),
                password_hash,
                scram_salt,
                scram_salted,
                disabled: false,
                created_at: now_millis(),
            })
            .await?;
        Ok(())
    }

    async fn user(&self, name: &str) -> Result<UserRecord> {
        self.store
            .get_user(name)
            .await?
            .ok_or_else(|| AuthError::UnknownUser(name.to_string()))
    }

    pub async fn set_password(&self, name: &str, password: &str) -> Result<()> {
        let mut user = self.user(name).await?;
        let (hash, salt, salted) = password_credentials(password)?;
        user.password_hash = hash;
        user.scram_salt = salt;
        user.scram_salted = salted;
        self.store.update_user(&user).await?;
        self.forget_checked();
        Ok(())
    }

    pub async fn set_disabled(&self, name: &str, disabled: bool) -> Result<()> {
        let mut user = self.user(name).await?;
        user.disabled = disabled;
        self.store.update_user(&user).await?;
        self.forget_checked();
        Ok(())
    }

    pub async fn set_role(&self, name: &str, role: Role) -> Result<()> {
        let mut user = self.user(name).await?;
        user.role = role.as_str().to_string();
        self.store.update_user(&user).await?;
        self.forget_checked();
        Ok(())
    }

    pub async fn delete_user(&self, name: &str) -> Result<()> {
        self.store.delete_user(name).await?;
        self.forget_checked();
        Ok(())
    }

    fn principal_of(user: &UserRecord, client: &str) -> Result<Principal> {
        let role: Role = user.role.parse().map_err(AuthError::InvalidInput)?;
        Ok(Principal::new(&user.name, role, client))
    }

    fn rate_limited(&self, keys: &[String]) -> bool {
        let mut failures = self.failures.lock().expect("failures lock");
        let now = Instant::now();
        keys.iter().any(|key| {
            let recent = failures.entry(key.clone()).or_default();
            recent.retain(|at| now.duration_since(*at) < FAILURE_WINDOW);
            recent.len() >= MAX_FAILURES
        })
    }

    fn note_failure(&self, keys: &[String]) {
        let mut failures = self.failures.lock().expect("failures lock");
        for key in keys {
            failures
                .entry(key.clone())
                .or_default()
                .push(Instant::now());
        }
    }

    /// Appends one audit entry; a log that cannot be written is reported, never the caller's
    /// failure.
    async fn audit(
        &self,
        user: &str,
        client: &str,
        action: &str,
        statement: &str,
        error: Option<&AuthError>,
    ) {
        let mut entry = AuditRecord::new(user, client, action, statement);
        if let Some(error) = error {
            entry = entry.failed(&error.to_string());
        }
        if let Err(err) = self.store.append_audit(&entry).await {
            tracing::warn!(error = %err, "cannot write the audit log");
        }
    }

    async fn audit_login(&self, user: &str, client: &str, method: &str, error: Option<&AuthError>) {
        let action = if error.is_some() {
            "login_failed"
        } else {
            "login"
        };
        self.audit(user, client, action, method, error).await;
    }

    /// Records a change to users or tokens (`what`) made by `actor` from `client`.
    pub async fn audit_change(
        &self,
        actor: &str,
        client: &str,
        action: &str,
        what: &str,
        error: Option<&AuthError>,
    ) {
        self.audit(actor, client, action, what, error).await;
    }

    /// Checks a user name and password, or a token given as the password.
    ///
    /// `client` is the listener and address (`http 127.0.0.1:5050`); the address part keys the
    /// rate limit.
    pub async fn login(&self, user: &str, password: &str, client: &str) -> Result<Principal> {
        let address = client.split_whitespace().last().unwrap_or(client);
        let address = address.rsplit_once(':').map_or(address, |(host, _)| host);
        let keys = [format!("user:{user}"), format!("addr:{address}")];
        let result = if self.rate_limited(&keys) {
            Err(AuthError::RateLimited)
        } else {
            let checked = if password.starts_with("polder_") {
                self.verify_token(password, client)
                    .await
                    .and_then(|principal| {
                        if principal.user == user {
                            Ok(principal)
                        } else {
                            Err(AuthError::InvalidCredentials)
                        }
                    })
            } else {
                self.verify_password(user, password, client).await
            };
            if matches!(checked, Err(AuthError::InvalidCredentials)) {
                self.note_failure(&keys);
            }
            checked
        };
        self.audit_login(user, client, "password", result.as_ref().err())
            .await;
        result
    }

    async fn verify_password(&self, user: &str, password: &str, client: &str) -> Result<Principal> {
        let Some(record) = self.store.get_user(user).await? else {
            return Err(AuthError::InvalidCredentials);
        };
        let parsed =
            PasswordHash::new(&record.password_hash).map_err(|_| AuthError::InvalidCredentials)?;
        if record.disabled
            || Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_err()
        {
            return Err(AuthError::InvalidCredentials);
        }
        Self::principal_of(&record, client)
    }

    fn split_token(token: &str) -> Option<(&str, &str)> {
        let rest = token.strip_prefix("polder_")?;
        let (id, secret) = rest.split_once('_')?;
        (!id.is_empty() && !secret.is_empty()).then_some((id, secret))
    }

    /// The user a live token belongs to.
    pub async fn verify_token(&self, token: &str, client: &str) -> Result<Principal> {
        let (id, secret) = Self::split_token(token).ok_or(AuthError::InvalidCredentials)?;
        let secret_hash = sha256_hex(secret);
        let key = format!("token:{id}:{secret_hash}");
        if let Some(principal) = self.recently_checked(&key, client) {
            return Ok(principal);
        }
        let record = self.live_token(id).await?;
        if record.secret_hash != secret_hash {
            return Err(AuthError::InvalidCredentials);
        }
        let principal = self.token_owner(&record, client).await?;
        self.remember_checked(key, &principal);
        Ok(principal)
    }

    /// A token that exists, is not revoked and has not expired.
    pub async fn live_token(&self, id: &str) -> Result<TokenRecord> {
        let record = self
            .store
            .get_token(id)
            .await?
            .ok_or(AuthError::InvalidCredentials)?;
        let expired = record.expires_at.is_some_and(|at| at <= now_millis());
        if record.revoked || expired {
            return Err(AuthError::InvalidCredentials);
        }
        Ok(record)
    }

    /// The principal of a token's owner (who must still be enabled).
    pub async fn token_owner(&self, record: &TokenRecord, client: &str) -> Result<Principal> {
        let user = self
            .store
            .get_user(&record.user_name)
            .await?
            .ok_or(AuthError::InvalidCredentials)?;
        if user.disabled {
            return Err(AuthError::InvalidCredentials);
        }
        Self::principal_of(&user, client)
    }

    /// Issues a token for `user`: `session` tokens expire after [`SESSION_TTL`], personal
    /// ones after `ttl` when given.
    pub async fn issue_token(
        &self,
        user: &str,
        kind: &str,
        label: &str,
        ttl: Option<Duration>,
    ) -> Result<IssuedToken> {
        self.user(user).await?;
        let id = hex(&random_bytes::<6>());
        let secret = hex(&random_bytes::<24>());
        let (scram_salt, scram_salted) = scram_credentials(&secret);
        let expires_at = ttl.map(|ttl| now_millis() + ttl.as_millis() as i64);
        self.store
            .create_token(&TokenRecord {
                id: id.clone(),
                user_name: user.to_string(),
                kind: kind.to_string(),
                label: label.to_string(),
                secret_hash: sha256_hex(&secret),
                scram_salt,
                scram_salted,
                created_at: now_millis(),
                expires_at,
                revoked: false,
            })
            .await?;
        Ok(IssuedToken {
            token: format!("polder_{id}_{secret}"),
            id,
            expires_at,
        })
    }

    /// Deletes expired tokens and revoked session tokens every `every`, for as long as the
    /// runtime runs (every login and Flight handshake adds a session token).
    pub fn spawn_token_cleanup(&self, every: Duration) {
        let store = self.store.clone();
        tokio::spawn(async move {
            loop {
                match store.delete_expired_tokens(polder_catalog::now()).await {
                    Ok(0) => {}
                    Ok(deleted) => tracing::debug!(deleted, "expired tokens deleted"),
                    Err(err) => tracing::warn!(error = %err, "cannot delete expired tokens"),
                }
                tokio::time::sleep(every).await;
            }
        });
    }

    pub async fn revoke_token(&self, id: &str) -> Result<bool> {
        let revoked = self.store.revoke_token(id).await?;
        self.forget_checked();
        Ok(revoked)
    }

    /// SCRAM salt and SaltedPassword for a PostgreSQL login: a user name, or a token id.
    async fn scram_keys(&self, login: &str) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        if let Some(user) = self.store.get_user(login).await? {
            if user.disabled {
                return Ok(None);
            }
            return Ok(decode_scram(&user.scram_salt, &user.scram_salted));
        }
        match self.live_token(login).await {
            Ok(token) => Ok(decode_scram(&token.scram_salt, &token.scram_salted)),
            Err(AuthError::InvalidCredentials) => Ok(None),
            Err(other) => Err(other),
        }
    }

    /// The principal of a PostgreSQL login that passed SCRAM (a user name or a token id),
    /// checked again on each statement so that disabling or revoking reaches open sessions.
    pub async fn pg_principal(&self, login: &str, client: &str) -> Result<Principal> {
        let key = format!("pg:{login}");
        if let Some(principal) = self.recently_checked(&key, client) {
            return Ok(principal);
        }
        let principal = match self.store.get_user(login).await? {
            Some(user) if user.disabled => return Err(AuthError::InvalidCredentials),
            Some(user) => Self::principal_of(&user, client)?,
            None => {
                let token = self.live_token(login).await?;
                self.token_owner(&token, client).await?
            }
        };
        self.remember_checked(key, &principal);
        Ok(principal)
    }

    /// SCRAM keys for a login, or decoy keys when the login is unknown or disabled.
    pub async fn scram_keys_or_decoy(&self, login: &str) -> Result<(Vec<u8>, Vec<u8>)> {
        Ok(self
            .scram_keys(login)
            .await?
            .unwrap_or_else(decoy_scram_keys))
    }

    pub async fn audit_pg_login(&self, login: &str, client: &str, error: Option<&AuthError>) {
        self.audit_login(login, client, "scram-sha-256", error)
            .await;
    }
}
