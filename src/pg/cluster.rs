//! Throwaway local PostgreSQL clusters for tests, the demo and benchmarks.
//!
//! [`LocalCluster::start`] runs `initdb` into a temporary directory and starts
//! a server on a free port of 127.0.0.1 (its socket in the same directory,
//! durability switched off for speed). Dropping the value stops the server
//! (`pg_ctl stop -m immediate`) and deletes the directory.
//! [`LocalCluster::start_with_tls`] does the same with TLS on, serving a
//! certificate and key the caller made.
//!
//! `initdb` and `postgres` refuse to run as root, so when this process is root
//! both run as the `postgres` OS user.
//!
//! A process that never drops its cluster (one kept in a `static`, a process
//! killed by Ctrl-C) would leak a running server. Each cluster therefore has a
//! *watchdog*: a small `sh` child in its own process group that blocks reading
//! a pipe whose only write end this process holds. When this process ends, by
//! any route, the kernel closes that end; the watchdog reads end-of-file, stops
//! the server and removes the directory.
//!
//! This module must never touch a cluster it did not create: every command it
//! runs names the temporary data directory explicitly.

use std::ffi::OsStr;
use std::fmt;
use std::io::{self, Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use tempfile::TempDir;

use crate::pg::ident::quote_ident;

/// Where distribution packages (Debian, Ubuntu) put versioned server binaries.
const VERSIONED_BIN_ROOT: &str = "/usr/lib/postgresql";

/// Attempts to start the server, each on a fresh port: another process may
/// take the port between our probe and the server's bind.
const START_ATTEMPTS: u32 = 3;

/// How much of a log or of a command's output an error quotes.
const TAIL_LINES: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "PostgreSQL server binaries (initdb, pg_ctl) were not found on PATH nor under \
         {VERSIONED_BIN_ROOT}/*/bin; install them (Debian/Ubuntu: `apt-get install postgresql`)"
    )]
    BinariesNotFound,

    #[error(
        "running as root, which initdb refuses, and there is no `postgres` OS user to run the \
         cluster as; create one (installing the `postgresql` package does)"
    )]
    NoPostgresUser,

    #[error("could not {action}: {source}")]
    Io {
        action: String,
        #[source]
        source: io::Error,
    },

    #[error("cluster `{cluster}`: `{command}` failed ({status}){}", quote_tail(.output))]
    Command {
        cluster: String,
        command: String,
        status: String,
        /// The tail of the command's output, then of the server log.
        output: String,
    },

    #[error("cluster `{cluster}`: could not {action}: {}", pg_message(.source))]
    Sql {
        cluster: String,
        action: String,
        #[source]
        source: tokio_postgres::Error,
    },
}

/// A running throwaway cluster; stopped and deleted on drop.
pub struct LocalCluster {
    name: String,
    port: u16,
    bin_dir: PathBuf,
    /// The OS user the server runs as when this process is root.
    owner: Option<Owner>,
    /// Owns the pipe that keeps the watchdog waiting; see the module docs.
    watchdog: Option<Child>,
    /// Holds `data/` (the cluster), `sock/` (its Unix socket) and `server.log`.
    /// Declared last: dropped after [`Drop::drop`] has stopped the server.
    root: TempDir,
}

#[derive(Debug, Clone, Copy)]
struct Owner {
    uid: u32,
    gid: u32,
}

impl fmt::Debug for LocalCluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalCluster")
            .field("name", &self.name)
            .field("port", &self.port)
            .field("root", &self.root.path())
            .finish_non_exhaustive()
    }
}

impl LocalCluster {
    /// Creates and starts a cluster. `name` labels its directory and errors.
    pub fn start(name: &str) -> Result<LocalCluster, ClusterError> {
        LocalCluster::start_inner(name, None)
    }

    /// [`LocalCluster::start`], with TLS on (`ssl = on`): `cert_pem` (the
    /// server certificate, optionally followed by its chain) and `key_pem`
    /// become the data directory's `server.crt` and `server.key`.
    pub fn start_with_tls(
        name: &str,
        cert_pem: &str,
        key_pem: &str,
    ) -> Result<LocalCluster, ClusterError> {
        LocalCluster::start_inner(name, Some((cert_pem, key_pem)))
    }

    fn start_inner(name: &str, tls: Option<(&str, &str)>) -> Result<LocalCluster, ClusterError> {
        let bin_dir = find_bin_dir().ok_or(ClusterError::BinariesNotFound)?;
        let owner = if current_uid()? == 0 {
            Some(postgres_user()?)
        } else {
            None
        };
        let root = tempfile::Builder::new()
            .prefix(&format!("flightpath-pg-{name}-"))
            .tempdir()
            .map_err(io_err("create a temporary directory for the cluster"))?;
        let sock = root.path().join("sock");
        std::fs::create_dir(&sock).map_err(io_err("create the socket directory"))?;
        if let Some(owner) = owner {
            for path in [root.path(), &sock] {
                std::os::unix::fs::chown(path, Some(owner.uid), Some(owner.gid))
                    .map_err(io_err("hand the cluster directory to the postgres user"))?;
            }
        }

        // From here on, an early return drops `cluster`, which cleans up.
        let mut cluster = LocalCluster {
            name: name.to_owned(),
            port: 0,
            bin_dir,
            owner,
            watchdog: None,
            root,
        };
        cluster.watchdog = Some(cluster.spawn_watchdog()?);
        cluster.initdb()?;
        if let Some((cert_pem, key_pem)) = tls {
            cluster.install_tls(cert_pem, key_pem)?;
        }
        let mut attempt = 1;
        loop {
            cluster.port = free_port()?;
            match cluster.pg_ctl_start() {
                Ok(()) => return Ok(cluster),
                Err(_) if attempt < START_ATTEMPTS && cluster.port_taken_in_log() => attempt += 1,
                Err(e) => return Err(e),
            }
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The TCP port the server listens on (127.0.0.1 only).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A connection URL for database `db`, as the superuser `postgres`
    /// (trust authentication, no password).
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// The server log, for a test that wants to show it.
    pub fn log_path(&self) -> PathBuf {
        self.root.path().join("server.log")
    }

    /// `CREATE DATABASE name`. Blocks; safe to call from async code too (it
    /// runs its own short-lived runtime on a helper thread).
    pub fn create_database(&self, name: &str) -> Result<(), ClusterError> {
        let url = self.url("postgres");
        let sql = format!("CREATE DATABASE {}", quote_ident(name));
        let result = std::thread::scope(|scope| {
            scope
                .spawn(|| -> Result<Result<(), tokio_postgres::Error>, io::Error> {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    Ok(runtime.block_on(async {
                        let (client, connection) =
                            tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
                        let connection = tokio::spawn(connection);
                        client.batch_execute(&sql).await?;
                        drop(client);
                        let _ = connection.await;
                        Ok(())
                    }))
                })
                .join()
                .expect("the create-database thread does not panic")
        });
        result
            .map_err(io_err("start a runtime to create a database"))?
            .map_err(|source| ClusterError::Sql {
                cluster: self.name.clone(),
                action: format!("create database `{name}`"),
                source,
            })
    }

    fn data_dir(&self) -> PathBuf {
        self.root.path().join("data")
    }

    /// A command for one of the server binaries, run as the cluster's owner.
    fn command(&self, tool: &str) -> Command {
        let mut command = Command::new(self.bin_dir.join(tool));
        // The owner may not be able to enter our working directory.
        command.current_dir(self.root.path());
        if let Some(owner) = self.owner {
            command.uid(owner.uid).gid(owner.gid);
        }
        command
    }

    fn spawn_watchdog(&self) -> Result<Child, ClusterError> {
        // Waits for end-of-file on stdin, then stops the server and removes
        // the directory. Ignores terminal signals: Ctrl-C must not kill it
        // before the process it watches is gone.
        const SCRIPT: &str = r#"trap '' INT HUP TERM QUIT
while read -r _; do :; done
"$0" -D "$1" stop -m immediate -w >/dev/null 2>&1
rm -rf "$2""#;
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(SCRIPT)
            .arg(self.bin_dir.join("pg_ctl"))
            .arg(self.data_dir())
            .arg(self.root.path())
            .current_dir(self.root.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        if let Some(owner) = self.owner {
            command.uid(owner.uid).gid(owner.gid);
        }
        command
            .spawn()
            .map_err(io_err("start the cluster's clean-up watchdog (sh)"))
    }

    fn initdb(&self) -> Result<(), ClusterError> {
        let mut command = self.command("initdb");
        command
            .arg("-D")
            .arg(self.data_dir())
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C"])
            .arg("--no-sync");
        self.run(command, "initdb")
    }

    /// Writes `server.crt` and `server.key` (mode 0600 and owned by the
    /// server's user, or the server refuses the key) and turns `ssl` on.
    fn install_tls(&self, cert_pem: &str, key_pem: &str) -> Result<(), ClusterError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let data = self.data_dir();
        for (file, content) in [("server.crt", cert_pem), ("server.key", key_pem)] {
            let path = data.join(file);
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .and_then(|mut f| f.write_all(content.as_bytes()))
                .map_err(io_err("write the server's TLS certificate and key"))?;
            if let Some(owner) = self.owner {
                std::os::unix::fs::chown(&path, Some(owner.uid), Some(owner.gid))
                    .map_err(io_err("hand the TLS key to the postgres user"))?;
            }
        }
        std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .and_then(|mut f| f.write_all(b"\nssl = on\n"))
            .map_err(io_err("turn ssl on in postgresql.conf"))
    }

    fn pg_ctl_start(&self) -> Result<(), ClusterError> {
        let sock = self.root.path().join("sock");
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off",
            self.port,
            shell_quote(&sock.to_string_lossy()),
        );
        let mut command = self.command("pg_ctl");
        command
            .arg("-D")
            .arg(self.data_dir())
            .arg("-o")
            .arg(options)
            .arg("-l")
            .arg(self.log_path())
            .args(["-w", "-t", "60", "start"]);
        self.run(command, "pg_ctl start")
    }

    /// Runs a server binary to completion; on failure the error quotes its
    /// output and the tail of the server log.
    fn run(&self, mut command: Command, label: &str) -> Result<(), ClusterError> {
        let output = command
            .stdin(Stdio::null())
            .output()
            .map_err(io_err(&format!("run {}", program(&command))))?;
        if output.status.success() {
            return Ok(());
        }
        let mut text = tail(&String::from_utf8_lossy(&output.stdout), TAIL_LINES);
        text.push_str(&tail(&String::from_utf8_lossy(&output.stderr), TAIL_LINES));
        let log = read_tail(&self.log_path());
        if !log.is_empty() {
            text.push_str("--- server log ---\n");
            text.push_str(&log);
        }
        Err(ClusterError::Command {
            cluster: self.name.clone(),
            command: label.to_owned(),
            status: output.status.to_string(),
            output: text,
        })
    }

    fn port_taken_in_log(&self) -> bool {
        read_tail(&self.log_path()).contains("could not bind")
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        if self.port != 0 {
            let mut command = self.command("pg_ctl");
            command
                .arg("-D")
                .arg(self.data_dir())
                .args(["stop", "-m", "immediate", "-w"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let _ = command.status();
        }
        // Closing the watchdog's stdin lets it finish (its stop is then a
        // no-op); wait so it is not left a zombie. `root` is removed after.
        if let Some(mut watchdog) = self.watchdog.take() {
            drop(watchdog.stdin.take());
            let _ = watchdog.wait();
        }
    }
}

/// The first directory holding both `initdb` and `pg_ctl`: PATH entries in
/// order, then the newest `/usr/lib/postgresql/<version>/bin`.
fn find_bin_dir() -> Option<PathBuf> {
    let path_dirs = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    path_dirs
        .into_iter()
        .chain(versioned_bin_dirs())
        .find(|dir| is_executable(&dir.join("initdb")) && is_executable(&dir.join("pg_ctl")))
}

/// `/usr/lib/postgresql/*/bin`, newest major version first.
fn versioned_bin_dirs() -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(VERSIONED_BIN_ROOT) else {
        return Vec::new();
    };
    let mut versions: Vec<(Vec<u32>, PathBuf)> = entries
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let name = entry.file_name().into_string().ok()?;
            let version = name
                .split('.')
                .map(|part| part.parse::<u32>().ok())
                .collect::<Option<Vec<_>>>()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    versions.sort();
    versions.into_iter().rev().map(|(_, dir)| dir).collect()
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn current_uid() -> Result<u32, ClusterError> {
    id(&["-u"])?.ok_or_else(|| ClusterError::Io {
        action: "find the current user id (`id -u`)".into(),
        source: io::Error::other("`id -u` failed"),
    })
}

fn postgres_user() -> Result<Owner, ClusterError> {
    let uid = id(&["-u", "postgres"])?.ok_or(ClusterError::NoPostgresUser)?;
    let gid = id(&["-g", "postgres"])?.ok_or(ClusterError::NoPostgresUser)?;
    Ok(Owner { uid, gid })
}

/// Runs `id ARGS`: `None` when it fails (no such user).
fn id(args: &[&str]) -> Result<Option<u32>, ClusterError> {
    let output = Command::new("id")
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map_err(io_err("run `id`"))?;
    if !output.status.success() {
        return Ok(None);
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().parse().ok())
}

/// A port nobody listens on right now (bind port 0, read it, close).
fn free_port() -> Result<u16, ClusterError> {
    let listener =
        TcpListener::bind(("127.0.0.1", 0)).map_err(io_err("find a free port on 127.0.0.1"))?;
    let port = listener
        .local_addr()
        .map_err(io_err("find a free port on 127.0.0.1"))?
        .port();
    Ok(port)
}

fn io_err(action: &str) -> impl FnOnce(io::Error) -> ClusterError + '_ {
    move |source| ClusterError::Io {
        action: action.to_owned(),
        source,
    }
}

fn program(command: &Command) -> String {
    Path::new(command.get_program())
        .file_name()
        .unwrap_or(OsStr::new("?"))
        .to_string_lossy()
        .into_owned()
}

/// The last lines of a file, or nothing when it cannot be read.
fn read_tail(path: &Path) -> String {
    const MAX_BYTES: u64 = 16 * 1024;
    let Ok(mut file) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(MAX_BYTES)));
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    tail(&String::from_utf8_lossy(&bytes), TAIL_LINES)
}

/// The last `n` lines of `text`, each ending in a newline.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n);
    lines[start..].iter().map(|l| format!("{l}\n")).collect()
}

fn quote_tail(output: &str) -> String {
    if output.is_empty() {
        String::new()
    } else {
        format!(":\n{}", output.trim_end())
    }
}

fn pg_message(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => db.message().to_owned(),
        None => error.to_string(),
    }
}

/// Quotes a word for the `sh -c` line pg_ctl builds from `-o`.
fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r#"'\''"#))
}
