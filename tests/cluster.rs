//! Smoke tests of the Postgres harness: the shared test server, fresh
//! databases, and a `LocalCluster`'s own start and clean-up.

use flightpath::pg::cluster::LocalCluster;

use crate::support::pg::{fresh_db, fresh_db_sync};

#[tokio::test]
async fn fresh_databases_are_distinct_and_usable() {
    let a = fresh_db().await;
    let b = fresh_db().await;
    assert_ne!(a.name, b.name);

    let client_a = a.client().await;
    client_a
        .batch_execute("CREATE TABLE t (x int); INSERT INTO t VALUES (1), (2)")
        .await
        .unwrap();
    let sum: i64 = client_a
        .query_one("SELECT sum(x) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(sum, 3);

    let client_b = b.client().await;
    let row = client_b
        .query_one(
            "SELECT current_database(), to_regclass('t') IS NULL, \
             current_setting('server_encoding')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), b.name);
    assert!(
        row.get::<_, bool>(1),
        "a table of one test database leaked into another"
    );
    assert_eq!(row.get::<_, String>(2), "UTF8");
}

#[test]
fn fresh_db_works_without_a_runtime() {
    let db = fresh_db_sync();
    assert!(db.url.ends_with(&format!("/{}", db.name)), "{}", db.url);
}

#[tokio::test]
async fn dropping_a_cluster_stops_it_and_removes_its_files() {
    let cluster = tokio::task::spawn_blocking(|| LocalCluster::start("smoke"))
        .await
        .unwrap()
        .unwrap();
    cluster.create_database("app").unwrap();
    let (client, connection) = tokio_postgres::connect(&cluster.url("app"), tokio_postgres::NoTls)
        .await
        .unwrap();
    let connection = tokio::spawn(connection);
    let one: i32 = client.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
    drop(client);
    let _ = connection.await;

    let port = cluster.port();
    let log = cluster.log_path();
    assert!(log.exists());
    tokio::task::spawn_blocking(move || drop(cluster))
        .await
        .unwrap();
    assert!(!log.exists(), "the cluster directory is still there");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the server still listens on {port}"
    );
}
