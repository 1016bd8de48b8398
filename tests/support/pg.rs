//! PostgreSQL for tests: one server per test binary, a fresh database per test.
//!
//! The server is a [`LocalCluster`] started on first use and kept in a
//! `static`. Statics are never dropped, so the cluster's own watchdog (see
//! `flightpath::pg::cluster`) stops it and deletes its directory when the
//! test process exits, however it exits.
//!
//! With `FLIGHTPATH_TEST_DATABASE_URL` set (a URL whose user may create
//! databases), tests use that server instead. Their databases, named
//! `fpt_<pid>_<n>_<test>`, are left behind there for inspection.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use flightpath::pg::cluster::LocalCluster;

/// Points the tests at an existing server instead of a throwaway cluster.
pub const DATABASE_URL_VAR: &str = "FLIGHTPATH_TEST_DATABASE_URL";

/// A database created for one test.
#[derive(Debug, Clone)]
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    /// A connection; its connection task runs on the caller's runtime.
    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("connecting to test database {}: {e}", self.name));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                eprintln!("test database connection: {e}");
            }
        });
        client
    }
}

/// Creates a database with a unique name on the test server.
pub async fn fresh_db() -> TestDb {
    let name = unique_name();
    tokio::task::spawn_blocking(move || create(name))
        .await
        .expect("creating a test database")
}

/// [`fresh_db`] for tests without a runtime (ones that only run the binary).
pub fn fresh_db_sync() -> TestDb {
    create(unique_name())
}

enum Server {
    Local(LocalCluster),
    /// A URL of an existing server, as given; its database part is replaced.
    External(String),
}

impl Server {
    fn url(&self, db: &str) -> String {
        match self {
            Server::Local(cluster) => cluster.url(db),
            Server::External(url) => with_database(url, db),
        }
    }
}

/// The test server, started on first use. Blocks while it starts; tests that
/// arrive meanwhile wait for the same one.
fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| match std::env::var(DATABASE_URL_VAR) {
        Ok(url) if !url.is_empty() => Server::External(url),
        _ => Server::Local(
            LocalCluster::start("tests")
                .unwrap_or_else(|e| panic!("starting the test cluster: {e}")),
        ),
    })
}

fn create(name: String) -> TestDb {
    let server = server();
    match server {
        Server::Local(cluster) => cluster
            .create_database(&name)
            .unwrap_or_else(|e| panic!("{e}")),
        Server::External(_) => create_on_external(&server.url("postgres"), &name),
    }
    TestDb {
        url: server.url(&name),
        name,
    }
}

fn create_on_external(admin_url: &str, name: &str) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    // Runs on a blocking thread (or a test without a runtime): no nesting.
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                runtime.block_on(async {
                    let (client, connection) =
                        tokio_postgres::connect(admin_url, tokio_postgres::NoTls)
                            .await
                            .unwrap_or_else(|e| panic!("connecting to {DATABASE_URL_VAR}: {e}"));
                    tokio::spawn(connection);
                    client
                        .batch_execute(&format!("CREATE DATABASE \"{name}\""))
                        .await
                        .unwrap_or_else(|e| panic!("creating database {name}: {e:?}"));
                })
            })
            .join()
            .unwrap();
    });
}

/// `fpt_<pid>_<n>_<test name>`, lower case, at most 63 bytes (a Postgres
/// identifier). The test name comes from the thread libtest runs it on.
fn unique_name() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let test = std::thread::current()
        .name()
        .unwrap_or("")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect::<String>();
    let mut name = format!("fpt_{}_{n}_{test}", std::process::id());
    name.truncate(63);
    name
}

/// Replaces the database in a `postgres://` URL, keeping user, host and query.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    let mut out = format!("{}/{db}", &base[..path_start]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

#[test]
fn with_database_replaces_only_the_path() {
    assert_eq!(
        with_database("postgres://u:p@h:5432/postgres?sslmode=disable", "x"),
        "postgres://u:p@h:5432/x?sslmode=disable"
    );
    assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
    assert_eq!(
        with_database("postgresql:///db?host=/run/postgresql", "x"),
        "postgresql:///x?host=/run/postgresql"
    );
}

// ---- Helpers for tests that talk to databases by URL (both clusters).

/// The staging server: a second cluster, started once.
pub fn staging_cluster() -> &'static LocalCluster {
    static CLUSTER: OnceLock<LocalCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| LocalCluster::start("staging").expect("starting the staging cluster"))
}

pub fn staging_db(name: &str) -> String {
    let cluster = staging_cluster();
    cluster.create_database(name).unwrap();
    cluster.url(name)
}

pub fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

pub async fn client(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
    tokio::spawn(connection);
    client
}

pub fn execute(url: &str, sql: &str) {
    block_on(async { client(url).await.batch_execute(sql).await.unwrap() });
}

pub fn query_strings(url: &str, sql: &str) -> Vec<String> {
    block_on(async {
        client(url)
            .await
            .query(sql, &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<_, Option<String>>(0).unwrap_or_default())
            .collect()
    })
}

/// Every text and JSON value of every table of `url`, as text.
pub fn all_text(url: &str) -> Vec<(String, String)> {
    let columns = query_strings(
        url,
        "SELECT format('%I.%I.%I', table_schema, table_name, column_name) FROM information_schema.columns \
         WHERE table_schema = 'public' AND data_type IN ('text', 'character varying', 'USER-DEFINED', 'json', 'jsonb', 'inet', 'ARRAY')",
    );
    let mut out = Vec::new();
    for column in columns {
        let parts: Vec<&str> = column.splitn(3, '.').collect();
        let sql = format!(
            "SELECT {}::text FROM {}.{} WHERE {} IS NOT NULL",
            parts[2], parts[0], parts[1], parts[2]
        );
        for value in query_strings(url, &sql) {
            out.push((column.clone(), value));
        }
    }
    out
}

/// Every place in `url`'s text and JSON where one of `needles` (production
/// values) appears: `table.column: `value``, at most ten.
pub fn leaks(url: &str, needles: &[String]) -> Vec<String> {
    let finder = aho_corasick::AhoCorasick::new(needles).unwrap();
    all_text(url)
        .iter()
        .filter_map(|(column, value)| {
            finder
                .find(value)
                .map(|m| format!("{column}: `{}`", &value[m.start()..m.end()]))
        })
        .take(10)
        .collect()
}

/// `pg_dump --no-owner` of `url` with `args` (`--schema-only`,
/// `--data-only`, none for everything), as text; fails showing its errors.
pub fn dump(url: &str, args: &[&str]) -> String {
    let pg_dump = flightpath::pg::schema::find_pg_dump(15).unwrap();
    let out = std::process::Command::new(&pg_dump.path)
        .args(args)
        .args(["--no-owner", "--dbname", url])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
