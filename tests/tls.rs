//! TLS to PostgreSQL through `pg::connect`, against real servers: a cluster
//! of this test binary's own with TLS on (its certificate signed by a
//! throwaway CA made here with rcgen, for `localhost` and `127.0.0.1`), and
//! the shared test cluster, which has TLS off. Whether a session is
//! encrypted is asked of the server (`pg_stat_ssl`), not assumed.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use flightpath::pg::cluster::LocalCluster;
use flightpath::pg::connect::connect;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

use crate::support::pg::fresh_db;

/// Ignored by the servers (trust authentication); must never be shown.
const PASSWORD: &str = "tls-test-s3cret";

/// The TLS cluster, started on first use and kept for the whole binary (its
/// watchdog removes it when the process ends), with the PEM text of the CA
/// that signed its certificate and of an unrelated CA.
struct TlsServer {
    cluster: LocalCluster,
    ca_pem: String,
    other_ca_pem: String,
}

fn tls_server() -> &'static TlsServer {
    static SERVER: OnceLock<TlsServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        let (ca_pem, issuer) = new_ca("flightpath test CA");
        let (other_ca_pem, _) = new_ca("some other CA");
        let (cert_pem, key_pem) = new_leaf(&["localhost", "127.0.0.1"], &issuer);
        let cluster = LocalCluster::start_with_tls("tls", &cert_pem, &key_pem)
            .unwrap_or_else(|e| panic!("starting the TLS cluster: {e}"));
        TlsServer {
            cluster,
            ca_pem,
            other_ca_pem,
        }
    })
}

/// [`tls_server`] from async code (starting it blocks).
async fn server() -> &'static TlsServer {
    tokio::task::spawn_blocking(tls_server).await.unwrap()
}

fn new_ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().unwrap();
    let pem = params.self_signed(&key).unwrap().pem();
    (pem, Issuer::new(params, key))
}

/// A certificate for `names` signed by `issuer`, and its key, in PEM.
fn new_leaf(names: &[&str], issuer: &Issuer<'static, KeyPair>) -> (String, String) {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut params = CertificateParams::new(names.clone()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, &names[0]);
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// PEM files for one test, in a directory whose name needs percent-encoding
/// in a URL; removed when the test ends.
struct Files {
    dir: TempDir,
}

impl Files {
    fn new() -> Files {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("my certs")).unwrap();
        Files { dir }
    }

    fn write(&self, name: &str, content: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, content).unwrap();
        path
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join("my certs").join(name)
    }
}

/// `path` percent-encoded for a URL's query.
fn encoded(path: &Path) -> String {
    path.to_str()
        .unwrap()
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// A URL for the TLS cluster's `postgres` database on `host`, with `query`.
fn tls_url(host: &str, query: &str) -> String {
    let port = tls_server().cluster.port();
    format!("postgres://postgres:{PASSWORD}@{host}:{port}/postgres?{query}")
}

/// The same URL as errors show it.
fn shown(url: &str) -> String {
    url.replace(PASSWORD, "***")
}

/// Connects through `pg::connect` and asks the server whether the session
/// is encrypted; the error as the user would read it otherwise.
async fn encrypted(url: &str) -> Result<bool, String> {
    let client = connect("db", url, &CancellationToken::new())
        .await
        .map_err(|e| e.to_string())?;
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    Ok(row.get(0))
}

#[tokio::test]
async fn require_and_prefer_encrypt_and_disable_does_not() {
    server().await;
    for (query, expected) in [
        ("sslmode=require", true),
        ("sslmode=prefer", true),
        ("application_name=x", true), // no sslmode: libpq's default, prefer
        ("sslmode=allow", false),     // plain first, and the server takes it
        ("sslmode=disable", false),
    ] {
        let url = tls_url("127.0.0.1", query);
        assert_eq!(encrypted(&url).await, Ok(expected), "{query}");
    }
}

#[tokio::test]
async fn verify_full_and_verify_ca_connect_with_the_signing_ca() {
    let server = server().await;
    let files = Files::new();
    let ca = encoded(&files.write("ca.pem", &server.ca_pem));
    for (host, mode) in [
        ("127.0.0.1", "verify-full"),
        ("localhost", "verify-full"),
        ("127.0.0.1", "verify-ca"),
        ("127.0.0.1", "require"),
        ("127.0.0.1", "prefer"),
    ] {
        let url = tls_url(host, &format!("sslmode={mode}&sslrootcert={ca}"));
        assert_eq!(encrypted(&url).await, Ok(true), "{mode} via {host}");
    }

    // The key=value form, quoting the path instead of encoding it.
    let dsn = format!(
        "host=localhost port={} user=postgres dbname=postgres sslmode=verify-full \
         sslrootcert='{}'",
        server.cluster.port(),
        files.path("ca.pem").display()
    );
    assert_eq!(encrypted(&dsn).await, Ok(true));
}

#[tokio::test]
async fn verify_full_with_another_ca_fails_and_says_which_check() {
    let server = server().await;
    let files = Files::new();
    let other = files.write("other-ca.pem", &server.other_ca_pem);
    let url = tls_url(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={}", encoded(&other)),
    );
    assert_eq!(
        encrypted(&url).await,
        Err(format!(
            "postgres target `db`: could not connect ({}): the server's certificate failed the \
             CA check (sslmode=verify-full): it is not signed by a CA in sslrootcert `{}`; \
             point sslrootcert at the CA certificate that signed it (managed providers publish \
             theirs), or use sslmode=require to encrypt without verifying the certificate",
            shown(&url),
            other.display()
        ))
    );
}

#[tokio::test]
async fn require_with_sslrootcert_checks_the_chain_as_libpq_does() {
    let server = server().await;
    let files = Files::new();
    let other = files.write("other-ca.pem", &server.other_ca_pem);
    let url = tls_url(
        "127.0.0.1",
        &format!("sslmode=require&sslrootcert={}", encoded(&other)),
    );
    assert_eq!(
        encrypted(&url).await,
        Err(format!(
            "postgres target `db`: could not connect ({}): the server's certificate failed the \
             CA check (sslmode=require): it is not signed by a CA in sslrootcert `{}`; point \
             sslrootcert at the CA certificate that signed it (managed providers publish \
             theirs), or drop sslrootcert to encrypt without verifying the certificate",
            shown(&url),
            other.display()
        ))
    );
}

#[tokio::test]
async fn prefer_falls_back_to_plain_when_the_certificate_check_fails() {
    // libpq's `prefer`: a failed handshake is retried without TLS.
    let server = server().await;
    let files = Files::new();
    let other = files.write("other-ca.pem", &server.other_ca_pem);
    let url = tls_url(
        "127.0.0.1",
        &format!("sslmode=prefer&sslrootcert={}", encoded(&other)),
    );
    assert_eq!(encrypted(&url).await, Ok(false));
}

#[tokio::test]
async fn verify_full_checks_the_host_name_and_verify_ca_does_not() {
    let server = server().await;
    let files = Files::new();
    let ca = encoded(&files.write("ca.pem", &server.ca_pem));
    // `host` is the name checked; `hostaddr` is where the socket goes.
    let url = |mode: &str| {
        tls_url(
            "db.example.test",
            &format!("hostaddr=127.0.0.1&sslmode={mode}&sslrootcert={ca}"),
        )
    };
    assert_eq!(
        encrypted(&url("verify-full")).await,
        Err(format!(
            "postgres target `db`: could not connect ({}): the server's certificate failed the \
             host name check (sslmode=verify-full): it is valid for localhost, 127.0.0.1, not \
             for `db.example.test`; connect with a host name the certificate lists (an IP \
             address can go in hostaddr=), or use sslmode=verify-ca to check the CA only",
            shown(&url("verify-full"))
        ))
    );
    assert_eq!(encrypted(&url("verify-ca")).await, Ok(true));
}

#[tokio::test]
async fn verify_full_without_sslrootcert_checks_against_the_public_cas() {
    server().await;
    let url = tls_url("localhost", "sslmode=verify-full");
    assert_eq!(
        encrypted(&url).await,
        Err(format!(
            "postgres target `db`: could not connect ({}): the server's certificate failed the \
             CA check (sslmode=verify-full): it is not signed by a public CA, the ones trusted \
             when sslrootcert is not given (webpki-roots); download the CA certificate that \
             signed it (managed providers publish theirs) and give it with \
             sslrootcert=/path/to/ca.pem, or use sslmode=require to encrypt without verifying \
             the certificate",
            shown(&url)
        ))
    );
}

#[tokio::test]
async fn a_client_certificate_is_read_and_offered() {
    // The server asks for no client certificate (no ssl_ca_file), so this
    // proves the files are read and the configuration accepted.
    let server = server().await;
    let files = Files::new();
    let (ca_pem, issuer) = new_ca("client CA");
    let (cert_pem, key_pem) = new_leaf(&["flightpath-client"], &issuer);
    drop(ca_pem);
    let cert = encoded(&files.write("client.pem", &cert_pem));
    let key = encoded(&files.write("client.key", &key_pem));
    let ca = encoded(&files.write("ca.pem", &server.ca_pem));
    let url = tls_url(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={ca}&sslcert={cert}&sslkey={key}"),
    );
    assert_eq!(encrypted(&url).await, Ok(true));
}

#[tokio::test]
async fn missing_and_unusable_files_are_named() {
    server().await;
    let files = Files::new();
    let missing = files.path("missing.pem");
    let url = tls_url(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={}", encoded(&missing)),
    );
    assert_eq!(
        encrypted(&url).await,
        Err(format!(
            "postgres target `db`: could not connect ({}): could not read sslrootcert `{}`: no \
             such file or directory",
            shown(&url),
            missing.display()
        ))
    );

    let not_pem = files.write("notes.txt", "not a certificate\n");
    let url = tls_url(
        "localhost",
        &format!("sslmode=require&sslrootcert={}", encoded(&not_pem)),
    );
    assert_eq!(
        encrypted(&url).await,
        Err(format!(
            "postgres target `db`: could not connect ({}): sslrootcert `{}` holds no PEM \
             certificate",
            shown(&url),
            not_pem.display()
        ))
    );
}

#[tokio::test]
async fn an_unknown_sslmode_lists_the_accepted_ones() {
    let url = format!("postgres://app:{PASSWORD}@127.0.0.1:1/app?sslmode=verify_full");
    assert_eq!(
        encrypted(&url).await,
        Err(
            "postgres target `db`: invalid connection URL (postgres://app:***@127.0.0.1:1/app\
             ?sslmode=verify_full): unknown sslmode `verify_full`: expected one of disable, \
             allow, prefer, require, verify-ca, verify-full (did you mean `verify-full`?)"
                .to_string()
        )
    );
}

/// A URL with `query` for a server without TLS: the shared test server,
/// or, when that has TLS on (an external server given by
/// `FLIGHTPATH_TEST_DATABASE_URL` may), a throwaway cluster of its own.
async fn plain_server_url(query: &str) -> String {
    let db = fresh_db().await;
    let ssl: String = db
        .client()
        .await
        .query_one("SELECT current_setting('ssl')", &[])
        .await
        .unwrap()
        .get(0);
    let url = if ssl == "on" {
        tokio::task::spawn_blocking(|| {
            static PLAIN: OnceLock<LocalCluster> = OnceLock::new();
            PLAIN
                .get_or_init(|| LocalCluster::start("plain").expect("starting a plain cluster"))
                .url("postgres")
        })
        .await
        .unwrap()
    } else {
        db.url
    };
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{query}")
}

#[tokio::test]
async fn require_fails_clearly_against_a_server_without_tls() {
    for mode in ["require", "verify-full"] {
        let url = plain_server_url(&format!("sslmode={mode}")).await;
        assert_eq!(
            encrypted(&url).await,
            Err(format!(
                "postgres target `db`: could not connect ({}): the server does not support TLS \
                 but sslmode={mode}; turn on ssl on the server, or use sslmode=prefer to \
                 connect without TLS when it is not offered",
                flightpath::pg::connect::mask_connection_string(&url)
            ))
        );
    }
}

#[tokio::test]
async fn prefer_falls_back_to_plain_against_a_server_without_tls() {
    for query in ["sslmode=prefer", "sslmode=allow", "application_name=x"] {
        let url = plain_server_url(query).await;
        assert_eq!(encrypted(&url).await, Ok(false), "{query}");
    }
}
