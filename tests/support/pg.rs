//! PostgreSQL for tests: a fresh schema per test on the server named by `AUTHTRAIL_TEST_PG_URL`
//! (CI always sets it; locally the tests skip with a message when it is unset).

use std::str::FromStr;

use authtrail::store::postgres::PostgresStore;
use sqlx::postgres::PgConnectOptions;

pub const ENV: &str = "AUTHTRAIL_TEST_PG_URL";

/// The server URL, or `None` (after printing why) when the test should be skipped.
///
/// # Panics
/// When `CI` is set and the URL is not: CI must never skip these tests.
pub fn url() -> Option<String> {
    match std::env::var(ENV) {
        Ok(u) if !u.is_empty() => Some(u),
        _ if std::env::var_os("CI").is_some() => {
            panic!("{ENV} is not set, and CI must run the PostgreSQL tests")
        }
        _ => {
            eprintln!("skipped: {ENV} not set");
            None
        }
    }
}

/// Drops its schema (and everything in it) when dropped.
pub struct Schema {
    pub url: String,
    pub name: String,
}

impl Schema {
    /// Connection options whose `search_path` is this schema.
    pub fn options(&self) -> PgConnectOptions {
        PgConnectOptions::from_str(&self.url)
            .expect("AUTHTRAIL_TEST_PG_URL parses")
            .options([("search_path", self.name.as_str())])
    }

    /// A URL whose connections use this schema (for a config file).
    pub fn store_url(&self) -> String {
        let sep = if self.url.contains('?') { '&' } else { '?' };
        format!("{}{sep}options=-csearch_path%3D{}", self.url, self.name)
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        run_sql_from_drop(
            self.url.clone(),
            format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name),
        );
    }
}

/// Run `sql` on the server at `url`, best effort, from a `Drop` that runs inside a test's
/// runtime (so on a thread with a runtime of its own).
pub fn run_sql_from_drop(url: String, sql: String) {
    let _ = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            if let Ok(pool) = sqlx::PgPool::connect(&url).await {
                let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&pool).await;
                pool.close().await;
            }
        });
    })
    .join();
}

impl Schema {
    /// The server's address (host and port of the URL), for relays.
    pub fn server_addr(&self) -> std::net::SocketAddr {
        let opts = PgConnectOptions::from_str(&self.url).expect("AUTHTRAIL_TEST_PG_URL parses");
        let host = match opts.get_host() {
            "localhost" => "127.0.0.1",
            h => h,
        };
        format!("{host}:{}", opts.get_port())
            .parse()
            .expect("AUTHTRAIL_TEST_PG_URL names an IP host")
    }

    /// [`Schema::store_url`] through another address (a relay the test can cut).
    pub fn store_url_via(&self, addr: std::net::SocketAddr) -> String {
        let url = self.store_url();
        let (scheme, rest) = url.split_once("://").expect("a URL");
        let auth_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(auth_end);
        let user = authority.rsplit_once('@').map(|(u, _)| format!("{u}@"));
        format!("{scheme}://{}{addr}{tail}", user.unwrap_or_default())
    }
}

/// A new, empty schema on the test server.
pub async fn schema(url: &str) -> Schema {
    let name = format!("t_{}", uuid::Uuid::now_v7().simple());
    let pool = sqlx::PgPool::connect(url)
        .await
        .expect("connect to AUTHTRAIL_TEST_PG_URL");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {name}")))
        .execute(&pool)
        .await
        .expect("create schema");
    pool.close().await;
    Schema {
        url: url.to_string(),
        name,
    }
}

/// A fresh PostgreSQL store in its own schema, or `None` when skipped.
pub async fn fresh() -> Option<(PostgresStore, Schema)> {
    let url = url()?;
    let schema = schema(&url).await;
    let store = PostgresStore::connect(schema.options())
        .await
        .expect("open postgres store");
    Some((store, schema))
}
