//! Opening a client connection to a named target, and turning
//! `tokio_postgres` errors into messages a person can act on: the server's
//! own text (with detail, hint and position) or the cause of a connection
//! failure. Every message is free of passwords: URLs are shown masked, never
//! as given.
//!
//! Connections use TLS (rustls) as the string's `sslmode` asks, with libpq's
//! meaning for all six modes and for `sslrootcert`, `sslcert` and `sslkey`:
//! [`params`] reads them out of the string, [`tls`] builds the rustls side.
//! Environment variables (`PGSSLMODE`…) and the files under `~/.postgresql`
//! are not read: the connection string says everything.

mod params;

/// The TLS keys of a connection string split from the rest, which
/// `tokio_postgres::Config` can then parse.
pub(crate) use params::split as split_tls_params;
pub(crate) use params::take_password;

mod tls;

use std::time::Duration;

use tokio_postgres::error::ErrorPosition;
use tokio_postgres::tls::{MakeTlsConnect, TlsStream};
use tokio_postgres::{Client, Config, Connection, NoTls, Socket};
use tokio_postgres_rustls::MakeRustlsConnect;
use tokio_util::sync::CancellationToken;

use crate::pg::Error;
use crate::redact::{mask_secrets, mask_whole_url, url_secrets};

use params::{SslMode, SslSettings};

/// Connects to the maintenance database of the server `url` is on:
/// `postgres`, else `template1` (some providers refuse `postgres`; the
/// template is always there). Returns the client and the URL that worked.
/// When both fail the error is [`Error::NoMaintenanceDatabase`] with each reason
/// (`via \`postgres\`: …; via \`template1\`: …`), for the caller to say
/// what it needed the connection for; a cancelled attempt is not retried.
pub async fn maintenance(
    target: &str,
    url: &str,
    cancel: &CancellationToken,
) -> Result<(Client, String), Error> {
    let mut reasons = Vec::new();
    for database in ["postgres", "template1"] {
        let candidate = crate::pg::url::with_database(url, database);
        match connect(target, &candidate, cancel).await {
            Ok(client) => return Ok((client, candidate)),
            Err(Error::Cancelled) => return Err(Error::Cancelled),
            Err(e) => reasons.push(format!("via `{database}`: {e}")),
        }
    }
    Err(Error::NoMaintenanceDatabase { reasons })
}

/// Connects to `url` for the target named `target` and spawns the task that
/// drives the connection; the task ends when the returned client is dropped.
/// Cancelling `cancel` while connecting gives [`Error::Cancelled`].
pub async fn connect(target: &str, url: &str, cancel: &CancellationToken) -> Result<Client, Error> {
    let shown = mask_connection_string(url);
    let failed = |message: String| Error::Target {
        target: target.to_string(),
        message,
    };
    let (ssl, rest) =
        params::split(url).map_err(|e| failed(format!("invalid connection URL ({shown}): {e}")))?;
    let mut config: Config = rest
        .parse()
        .map_err(|e| failed(format!("invalid connection URL ({shown}): {}", cause(&e))))?;
    if config.get_application_name().is_none() {
        config.application_name("flightpath");
    }
    apply_defaults(&mut config, &rest);
    let timeout = config
        .get_connect_timeout()
        .copied()
        .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
    let connector = match ssl.mode {
        SslMode::Disable => None,
        _ => Some(
            tls::connector(&ssl)
                .map_err(|e| failed(format!("could not connect ({shown}): {e}")))?,
        ),
    };
    tokio::select! {
        result = open(&mut config, &ssl, connector, target, timeout) => result.map_err(|e| {
            failed(format!("could not connect ({shown}): {}", match e {
                OpenError::Pg(e) => describe_connect_error(&e, &ssl),
                OpenError::TimedOut(after) => timed_out(after),
            }))
        }),
        _ = cancel.cancelled() => Err(Error::Cancelled),
    }
}

/// Opens the connection as `ssl.mode` asks, with libpq's second tries:
/// `prefer` retries without TLS when the TLS handshake fails, `allow`
/// retries with TLS when the server refuses the plain connection.
/// `connector` is `None` only for `disable`. Each attempt gets `timeout`.
async fn open(
    config: &mut Config,
    ssl: &SslSettings,
    connector: Option<MakeRustlsConnect>,
    target: &str,
    timeout: Duration,
) -> Result<Client, OpenError> {
    use tokio_postgres::config::SslMode as Wire;
    match (ssl.mode, connector) {
        (SslMode::Disable, _) | (_, None) => {
            open_with(config.ssl_mode(Wire::Disable), NoTls, target, timeout).await
        }
        (SslMode::Allow, Some(connector)) => {
            match open_with(config.ssl_mode(Wire::Disable), NoTls, target, timeout).await {
                Err(OpenError::Pg(e)) if e.as_db_error().is_some() => {
                    let why = describe(&e, None);
                    tracing::debug!(%target, "plain connection refused ({why}); sslmode=allow, so trying TLS");
                    open_with(config.ssl_mode(Wire::Require), connector, target, timeout).await
                }
                result => result,
            }
        }
        (SslMode::Prefer, Some(connector)) => {
            match open_with(config.ssl_mode(Wire::Prefer), connector, target, timeout).await {
                Err(OpenError::Pg(e)) if rustls_error(&e).is_some() => {
                    let why = rustls_error(&e).map(|handshake| tls::explain(handshake, ssl));
                    let why = why.unwrap_or_default();
                    tracing::warn!(%target, "{why}; sslmode=prefer, so connecting without TLS");
                    open_with(config.ssl_mode(Wire::Disable), NoTls, target, timeout).await
                }
                result => result,
            }
        }
        // tokio-postgres' `require` only insists on TLS; the certificate
        // checks of the verify modes are in the rustls configuration.
        (SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull, Some(connector)) => {
            open_with(config.ssl_mode(Wire::Require), connector, target, timeout).await
        }
    }
}

/// Why a connection attempt failed.
enum OpenError {
    Pg(tokio_postgres::Error),
    /// No complete answer within `connect_timeout`.
    TimedOut(Duration),
}

/// One connection attempt, bounded as a whole by `timeout`: tokio-postgres'
/// own `connect_timeout` covers only the TCP connect, not a server that
/// accepts and then never answers. On success the connection task is spawned.
async fn open_with<T>(
    config: &Config,
    tls: T,
    target: &str,
    timeout: Duration,
) -> Result<Client, OpenError>
where
    T: MakeTlsConnect<Socket>,
    T::Stream: Send + 'static,
{
    let (client, connection) = tokio::time::timeout(timeout, config.connect(tls))
        .await
        .map_err(|_| OpenError::TimedOut(timeout))?
        .map_err(OpenError::Pg)?;
    spawn_connection(connection, target.to_string());
    Ok(client)
}

/// How long a connection attempt may take when the URL does not say
/// (`connect_timeout`, in seconds, as libpq reads it).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a connection may be idle before TCP keepalives probe it, when
/// the URL does not say (`keepalives_idle`).
pub const DEFAULT_KEEPALIVES_IDLE: Duration = Duration::from_secs(30);

/// What flightpath sets when the connection string does not: a
/// `connect_timeout` (libpq waits for ever without one) and TCP keepalives
/// that notice a dead server within minutes rather than hours.
fn apply_defaults(config: &mut Config, conn: &str) {
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
    }
    // tokio-postgres has keepalives on by default, idle for 2 hours first;
    // a string that names `keepalives_idle` keeps its own.
    if !conn.contains("keepalives_idle") {
        config.keepalives_idle(DEFAULT_KEEPALIVES_IDLE);
    }
}

/// "no answer within 2 s" with the fix.
fn timed_out(after: Duration) -> String {
    format!(
        "the server did not answer within {} s (connect_timeout); check the host and port, \
         or raise connect_timeout in the connection string",
        after.as_secs_f64()
    )
}

fn spawn_connection<S>(connection: Connection<Socket, S>, target: String)
where
    S: TlsStream + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        // Errors here also reach the client's next call as "connection
        // closed"; the log line keeps the cause.
        if let Err(e) = connection.await {
            tracing::debug!(target = %target, "postgres connection ended: {}", describe(&e, None));
        }
    });
}

/// A failed connection attempt in words: TLS failures say which check
/// failed and what to change; anything else as [`describe`] has it.
fn describe_connect_error(err: &tokio_postgres::Error, ssl: &SslSettings) -> String {
    if let Some(handshake) = rustls_error(err) {
        return tls::explain(handshake, ssl);
    }
    let text = describe(err, None);
    // tokio-postgres' words when the server answers "no" to the TLS request.
    if text == "server does not support TLS" && ssl.mode.requires_tls() {
        return format!(
            "the server does not support TLS but sslmode={}; turn on ssl on the server, or use \
             sslmode=prefer to connect without TLS when it is not offered",
            ssl.mode
        );
    }
    text
}

/// The rustls error behind a failed TLS handshake, if that is what failed.
/// tokio-rustls wraps it in an `io::Error`, whose `source()` skips it.
fn rustls_error<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut next = Some(err);
    while let Some(error) = next {
        if let Some(found) = error.downcast_ref::<rustls::Error>() {
            return Some(found);
        }
        if let Some(found) = error
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(found);
        }
        next = error.source();
    }
    None
}

/// For `map_err`: a database error on the target named `target` while doing
/// `what`, with the server's own text.
pub fn sql_error(
    target: &str,
    what: impl std::fmt::Display,
) -> impl FnOnce(tokio_postgres::Error) -> Error {
    let target = target.to_string();
    let what = what.to_string();
    move |e| Error::Target {
        target,
        message: format!("{what}: {}", describe(&e, None)),
    }
}

/// A database error as the server reported it — `ERROR: message (SQLSTATE
/// code)`, with position in `sql` when known, detail and hint — or, for
/// any other error, its innermost cause ("connection refused").
pub fn describe(err: &tokio_postgres::Error, sql: Option<&str>) -> String {
    let Some(db) = err.as_db_error() else {
        return cause(err);
    };
    let mut out = format!(
        "{}: {} (SQLSTATE {})",
        db.severity(),
        db.message(),
        db.code().code()
    );
    if let (Some(ErrorPosition::Original(at)), Some(sql)) = (db.position(), sql) {
        let (line, column) = line_column(sql, *at as usize);
        out.push_str(&format!(" at line {line}, column {column}"));
    }
    if let Some(detail) = db.detail() {
        out.push_str(&format!("\ndetail: {detail}"));
    }
    if let Some(hint) = db.hint() {
        out.push_str(&format!("\nhint: {hint}"));
    }
    out
}

fn cause(err: &(dyn std::error::Error + 'static)) -> String {
    crate::human::innermost_cause(err)
}

/// 1-based line and column of the 1-based character position `at`.
fn line_column(sql: &str, at: usize) -> (usize, usize) {
    let mut line = 1;
    let mut column = 1;
    for c in sql.chars().take(at.saturating_sub(1)) {
        if c == '\n' {
            line += 1;
            column = 1;
        } else {
            column += 1;
        }
    }
    (line, column)
}

/// The secrets of a connection string, to register with the redactor: the
/// password exactly as the connector parses it (percent-decoded), as it is
/// written, and, for a URL whose credentials cannot be split, everything
/// before its last `@`. Nothing is connected to.
pub fn connection_secrets(conn: &str) -> Vec<String> {
    let mut out = url_secrets(conn);
    let (_, parameter) = take_password(conn);
    out.extend(parameter);
    let parsed = params::split(conn)
        .ok()
        .and_then(|(_, rest)| rest.parse::<Config>().ok());
    if let Some(password) = parsed.as_ref().and_then(Config::get_password) {
        out.push(String::from_utf8_lossy(password).into_owned());
    }
    out.retain(|s| !s.is_empty());
    out.dedup();
    out
}

/// Whether `conn` is a connection string the connector can read, without
/// connecting: a `postgres://` or `postgresql://` URL, or `key=value`
/// pairs. The reason, when it is not, never quotes the string.
pub fn check_connection_string(conn: &str) -> Result<(), String> {
    let conn = conn.trim();
    if let Some((scheme, _)) = conn.split_once("://") {
        if !crate::redact::is_postgres_scheme(scheme) {
            return Err(format!(
                "a `{scheme}://` URL; PostgreSQL URLs start with `postgres://`"
            ));
        }
    } else if !conn.contains('=') {
        return Err("neither a `postgres://` URL nor `key=value` pairs".into());
    }
    // TLS settings are checked when connecting, with their own messages.
    let Ok((_, rest)) = params::split(conn) else {
        return Ok(());
    };
    rest.parse::<Config>()
        .map(|_| ())
        .map_err(|e| crate::redact::mask_secrets(&cause(&e)))
}

/// A connection string safe to show: the password of a URL (as the
/// connector splits it, or all its credentials when it cannot), its
/// secret query values, or the `password=` of a `key=value` string (any
/// case), masked.
pub fn mask_connection_string(url: &str) -> String {
    if url.contains("://") {
        mask_whole_url(url)
    } else {
        mask_secrets(url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_passwords_in_both_forms() {
        assert_eq!(
            mask_connection_string("postgres://app:s3cret@db:5432/app"),
            "postgres://app:***@db:5432/app"
        );
        assert_eq!(
            mask_connection_string("host=db user=app password=s3cret dbname=app"),
            "host=db user=app password=*** dbname=app"
        );
        // Nothing of a quoted password with spaces or quotes survives.
        assert_eq!(
            mask_connection_string(r"host=db password = 'a b\'c d' dbname=app"),
            "host=db password=*** dbname=app"
        );
        assert_eq!(
            mask_connection_string("host=db PASSWORD=s3cret dbname=app"),
            "host=db PASSWORD=*** dbname=app"
        );
        assert_eq!(
            mask_connection_string("postgres://app:a b@db/app"),
            "postgres://app:***@db/app"
        );
        assert_eq!(
            mask_connection_string("postgres://app@db/app?sslmode=require&password=s3cret"),
            "postgres://app@db/app?sslmode=require&password=***"
        );
    }

    #[test]
    fn connect_timeout_defaults_to_10_s_and_the_url_wins() {
        let config_of = |url: &str| {
            let mut config: Config = url.parse().unwrap();
            apply_defaults(&mut config, url);
            config
        };
        let plain = config_of("postgres://app@db/app");
        assert_eq!(plain.get_connect_timeout(), Some(&Duration::from_secs(10)));
        assert!(plain.get_keepalives());
        assert_eq!(plain.get_keepalives_idle(), Duration::from_secs(30));
        let given = config_of("postgres://app@db/app?connect_timeout=2&keepalives_idle=7");
        assert_eq!(given.get_connect_timeout(), Some(&Duration::from_secs(2)));
        assert_eq!(given.get_keepalives_idle(), Duration::from_secs(7));
        let pairs = config_of("host=db dbname=app connect_timeout=3");
        assert_eq!(pairs.get_connect_timeout(), Some(&Duration::from_secs(3)));
    }

    #[test]
    fn secrets_are_what_the_connector_takes_for_the_password() {
        assert_eq!(
            connection_secrets("postgres://app:p%23a?s/s@db/app?sslmode=disable"),
            ["p%23a?s/s", "p#a?s/s"]
        );
        assert_eq!(
            connection_secrets("host=db user=app password='a b' dbname=app"),
            ["a b"]
        );
        assert!(connection_secrets("postgres://app@db/app").is_empty());
        for url in [
            "postgres://app:pa#ss@db:5432/app",
            "postgres://app:pa?ss@db:5432/app?sslmode=disable",
            "postgres://app:pa/ss@db/app",
        ] {
            let config: Config = params::split(url).unwrap().1.parse().unwrap();
            let password = String::from_utf8_lossy(config.get_password().unwrap()).into_owned();
            assert!(connection_secrets(url).contains(&password), "{url}");
            assert!(!mask_connection_string(url).contains(&password), "{url}");
        }
    }

    #[test]
    fn positions_become_line_and_column() {
        let sql = "UPDATE t\nSET x = nope";
        assert_eq!(line_column(sql, 1), (1, 1));
        assert_eq!(line_column(sql, 18), (2, 9));
    }

    #[test]
    fn causes_read_as_sentences() {
        assert_eq!(
            crate::human::as_phrase("Connection refused"),
            "connection refused"
        );
        assert_eq!(crate::human::as_phrase("SSL required"), "SSL required");
    }

    #[tokio::test]
    async fn refused_connection_names_target_and_hides_password() {
        // Port 1 on localhost: nothing listens there.
        let err = connect(
            "staging",
            "postgres://app:s3cret@127.0.0.1:1/app",
            &CancellationToken::new(),
        )
        .await
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "postgres target `staging`: could not connect (postgres://app:***@127.0.0.1:1/app): connection refused"
        );
    }
}
