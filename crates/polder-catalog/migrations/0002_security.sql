-- Polder catalog, version 2: users, tokens, grants, audit log; owners of tables and views.
-- Portable SQL: the same file runs on SQLite (embedded) and PostgreSQL (production).

CREATE TABLE polder_users (
    name            TEXT    NOT NULL PRIMARY KEY,
    -- 'admin', 'engineer', 'analyst' or 'viewer'
    role            TEXT    NOT NULL,
    -- argon2id PHC string
    password_hash   TEXT    NOT NULL,
    -- SCRAM-SHA-256 for the PostgreSQL wire: base64 salt and base64 SaltedPassword
    scram_salt      TEXT    NOT NULL,
    scram_salted    TEXT    NOT NULL,
    disabled        BIGINT  NOT NULL,
    created_at      BIGINT  NOT NULL
);

-- Session tokens (from a login) and personal access tokens (for tools). Only hashes are kept.
CREATE TABLE polder_tokens (
    id              TEXT    NOT NULL PRIMARY KEY,
    user_name       TEXT    NOT NULL,
    -- 'session' or 'personal'
    kind            TEXT    NOT NULL,
    label           TEXT    NOT NULL,
    -- hex SHA-256 of the token's secret part
    secret_hash     TEXT    NOT NULL,
    scram_salt      TEXT    NOT NULL,
    scram_salted    TEXT    NOT NULL,
    created_at      BIGINT  NOT NULL,
    expires_at      BIGINT,
    revoked         BIGINT  NOT NULL
);

CREATE TABLE polder_grants (
    -- 'user' or 'role'
    grantee_kind    TEXT    NOT NULL,
    grantee         TEXT    NOT NULL,
    -- 'SELECT', 'INSERT' or 'ALL'
    privilege       TEXT    NOT NULL,
    schema_name     TEXT    NOT NULL,
    -- '' for a grant on the whole schema
    table_name      TEXT    NOT NULL,
    granted_by      TEXT    NOT NULL,
    created_at      BIGINT  NOT NULL,
    PRIMARY KEY (grantee_kind, grantee, privilege, schema_name, table_name)
);

CREATE TABLE polder_audit (
    at              BIGINT  NOT NULL,
    user_name       TEXT    NOT NULL,
    client          TEXT    NOT NULL,
    -- 'login', 'login_failed', 'ddl', 'dml', 'grant', 'user', 'token', 'denied'
    action          TEXT    NOT NULL,
    statement       TEXT    NOT NULL,
    ok              BIGINT  NOT NULL,
    message         TEXT    NOT NULL
);

CREATE INDEX polder_audit_at ON polder_audit (at);

ALTER TABLE polder_tables ADD COLUMN owner TEXT;
