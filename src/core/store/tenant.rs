//! A PostgreSQL role per served namespace, whose rows row-level security narrows to its own
//! (migrations/20261205000002_tenant_isolation.sql).
//!
//! Made and rotated only with a connection that may create roles (the operator's, through
//! `finrep tenant-role`): never by a pipeline pod or the web. Each call sets a new password,
//! so running it again is the rotation. A namespace role gets what the pipeline needs on the
//! tenant tables and nothing else: no operator table, no CREATE, a connection limit, a
//! statement timeout, and run locks only of its own reports.

use sqlx::Row;

use super::{Store, StoreError};

/// Most connections a namespace role may hold at once: a run's pool, its lock, and a retried
/// Job's overlap.
pub const TENANT_CONNECTION_LIMIT: i32 = 12;
/// The longest statement a namespace role may run.
pub const TENANT_STATEMENT_TIMEOUT: &str = "60s";

/// The tables a namespace role reads and writes (through their row-level policies).
const TENANT_TABLES: &[&str] = &[
    "reports",
    "articles",
    "article_summaries",
    "blacklist",
    "consent_log",
    "fetch_log",
    "source_state",
    "report_schedule",
    "delivery_log",
    "report_articles",
    "step_timings",
    "provider_calls",
    "chat_pace",
    "previews",
    "test_sends",
];

/// The functions a namespace role calls.
const TENANT_FUNCTIONS: &[&str] = &[
    "finrep_tenant()",
    "finrep_try_run_lock(bigint)",
    "finrep_run_lock_holder(bigint)",
    "finrep_address_key(text)",
];

/// A namespace role's login.
#[derive(Clone, PartialEq, Eq)]
pub struct TenantLogin {
    pub namespace: String,
    pub role: String,
    pub password: String,
}

impl std::fmt::Debug for TenantLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantLogin")
            .field("namespace", &self.namespace)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

impl TenantLogin {
    /// `url` (the operator's) with this role's login instead of its own.
    pub fn url(&self, operator_url: &str) -> Result<String, String> {
        let mut u = url::Url::parse(operator_url).map_err(|e| format!("not a URL: {e}"))?;
        u.set_username(&self.role)
            .and_then(|()| u.set_password(Some(&self.password)))
            .map_err(|()| "this URL cannot carry a login".to_string())?;
        Ok(u.to_string())
    }
}

/// The role name of `namespace` in the database `db_tag` names: `finrep_<db tag>_<namespace>`
/// with `-` as `_`, cut to PostgreSQL's 63 bytes (a hash keeps cut names apart). Roles are
/// cluster-wide; the tag keeps two databases' tenants apart.
pub fn tenant_role_name(db_tag: &str, namespace: &str) -> String {
    let ns: String = namespace
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    let name = format!("finrep_{db_tag}_{ns}");
    if name.len() <= 63 {
        return name;
    }
    use sha2::Digest as _;
    let h = sha2::Sha256::digest(namespace.as_bytes());
    let tail: String = h[..4].iter().map(|b| format!("{b:02x}")).collect();
    format!("{}_{tail}", &name[..54])
}

fn random_password() -> Result<String, StoreError> {
    use base64::Engine as _;
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).map_err(|e| {
        StoreError::Query(sqlx::Error::Protocol(format!(
            "no randomness for a password: {e}"
        )))
    })?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// A name built by [`tenant_role_name`] or from the database: safe to quote as an identifier.
fn is_plain_identifier(s: &str) -> bool {
    !s.is_empty() && s.len() <= 63 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

impl Store {
    /// Creates (or gives a new password to) the role of `namespace`, with the privileges a
    /// pipeline of that namespace needs and no more. Needs a connection that may create roles
    /// and owns the tables (a superuser, or the owner with CREATEROLE).
    pub async fn ensure_tenant_role(&self, namespace: &str) -> Result<TenantLogin, StoreError> {
        let mut tx = self.pool().begin().await?;
        let row = sqlx::query(
            "SELECT current_database() AS db, substr(md5(current_database()), 1, 8) AS tag",
        )
        .fetch_one(&mut *tx)
        .await?;
        let (db, tag): (String, String) = (row.try_get("db")?, row.try_get("tag")?);
        let group = format!("finrep_{tag}_tenants");
        let role = tenant_role_name(&tag, namespace);
        let password = random_password()?;
        let invalid = |what: &str| {
            StoreError::Query(sqlx::Error::Protocol(format!("unexpected {what} name")))
        };
        if !is_plain_identifier(&role) || !is_plain_identifier(&group) {
            return Err(invalid("role"));
        }
        let db_ident: String = sqlx::query_scalar("SELECT quote_ident($1)")
            .bind(&db)
            .fetch_one(&mut *tx)
            .await?;
        for statement in tenant_grants(&group, &db_ident) {
            // Identifiers checked by is_plain_identifier; the password is base64url.
            sqlx::query(sqlx::AssertSqlSafe(statement))
                .execute(&mut *tx)
                .await?;
        }
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
                .bind(&role)
                .fetch_one(&mut *tx)
                .await?;
        // The password's alphabet is base64url: it needs no quoting beyond the literal's.
        let login = format!(
            "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT \
             CONNECTION LIMIT {TENANT_CONNECTION_LIMIT} PASSWORD '{password}'"
        );
        let create = if exists {
            format!("ALTER ROLE {role} WITH {login}")
        } else {
            format!("CREATE ROLE {role} WITH {login} IN ROLE {group}")
        };
        sqlx::query(sqlx::AssertSqlSafe(create))
            .execute(&mut *tx)
            .await?;
        for statement in [
            format!("GRANT {group} TO {role}"),
            format!("ALTER ROLE {role} SET statement_timeout = '{TENANT_STATEMENT_TIMEOUT}'"),
            format!("ALTER ROLE {role} SET idle_in_transaction_session_timeout = '60s'"),
        ] {
            // Identifiers checked by is_plain_identifier; the password is base64url.
            sqlx::query(sqlx::AssertSqlSafe(statement))
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "INSERT INTO tenant_roles (role, namespace) VALUES ($1, $2)
             ON CONFLICT (role) DO UPDATE SET rotated_at = now()",
        )
        .bind(&role)
        .bind(namespace)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(TenantLogin {
            namespace: namespace.to_string(),
            role,
            password,
        })
    }
}

/// What the tenants' group role is granted (idempotent statements).
fn tenant_grants(group: &str, db_ident: &str) -> Vec<String> {
    let mut out = vec![
        format!(
            "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{group}') \
             THEN CREATE ROLE {group} NOLOGIN; END IF; END $$"
        ),
        format!("GRANT CONNECT ON DATABASE {db_ident} TO {group}"),
        format!("GRANT USAGE ON SCHEMA public TO {group}"),
        // No role but the owner creates objects (PostgreSQL 15 and later already say so).
        "REVOKE CREATE ON SCHEMA public FROM PUBLIC".to_string(),
        format!("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {group}"),
    ];
    out.extend(
        TENANT_TABLES
            .iter()
            .map(|t| format!("GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE {t} TO {group}")),
    );
    out.extend(
        TENANT_FUNCTIONS
            .iter()
            .map(|f| format!("GRANT EXECUTE ON FUNCTION {f} TO {group}")),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_are_plain_bounded_and_distinct() {
        assert_eq!(
            tenant_role_name("ab12cd34", "desk-a"),
            "finrep_ab12cd34_desk_a"
        );
        let long = "n".repeat(63);
        let a = tenant_role_name("ab12cd34", &long);
        let b = tenant_role_name("ab12cd34", &format!("{}m", "n".repeat(62)));
        assert!(a.len() <= 63 && b.len() <= 63 && a != b);
        assert!(is_plain_identifier(&a));
        assert!(!is_plain_identifier("x; DROP TABLE reports"));
    }
}
