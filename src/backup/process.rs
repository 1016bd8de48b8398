//! The client programs a backup runs: `pg_dump -Fc` with its stdout as a
//! stream ([`Dump`]), and `pg_restore` fed through its stdin or reading a
//! file with `-j` ([`Restore`]). Passwords go through `PGPASSWORD`, never
//! the command line (see [`crate::pg::schema::without_password`]); error
//! output is kept to its last lines and masked.
//!
//! Each program is owned by a task that drains its stderr and waits for
//! it; dropping the handle aborts that task, which kills the program
//! (`kill_on_drop`): a cancelled backup or restore leaves no pg_dump or
//! pg_restore running.

use std::future::Future as _;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::pg::schema::PgDump;
use crate::redact::{MASK, mask_secrets};

/// How many lines of a program's error output an error quotes.
const STDERR_TAIL_LINES: usize = 20;

/// How a program ended, when not well: its status and error output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub status: String,
    pub stderr: String,
}

/// The program's output and status, once it ended.
type Ended = Result<Vec<u8>, Failure>;

/// The task that owns a running program; aborted (program killed) on drop.
struct Owner(JoinHandle<()>);

impl Drop for Owner {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `pg_restore` beside a `pg_dump` (they come in one package).
pub fn pg_restore_beside(pg_dump: &PgDump) -> PathBuf {
    pg_dump.path.with_file_name("pg_restore")
}

/// `pg_dump --version` as it says it (`pg_dump (PostgreSQL) 15.18 …`).
pub async fn version_of(program: &Path) -> String {
    match Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .await
    {
        Ok(out) => String::from_utf8_lossy(&out.stdout).trim().to_string(),
        Err(_) => String::new(),
    }
}

/// A command for `program` against `url`: the URL without its password as
/// `--dbname`, the password in the environment.
fn command(program: &Path, url: &str) -> (Command, Option<String>) {
    let (url, password) = crate::pg::schema::without_password(url);
    let mut command = Command::new(program);
    command.arg("--no-password").arg(format!("--dbname={url}"));
    if let Some(password) = &password {
        command.env("PGPASSWORD", password);
    }
    command.env(
        "PGCONNECT_TIMEOUT",
        crate::pg::connect::DEFAULT_CONNECT_TIMEOUT
            .as_secs()
            .to_string(),
    );
    command.kill_on_drop(true);
    (command, password)
}

/// Spawns `command` and a task that collects its stdout (when `collect`),
/// drains its stderr and waits for it; the receiver gets how it ended.
fn own(
    mut child: Child,
    collect: bool,
    password: Option<String>,
) -> (Owner, oneshot::Receiver<Ended>) {
    let (tx, rx) = oneshot::channel();
    let mut stderr = child.stderr.take();
    let mut stdout = if collect { child.stdout.take() } else { None };
    let task = tokio::spawn(async move {
        let mut err_text = Vec::new();
        let mut out_text = Vec::new();
        let drain_err = async {
            if let Some(stderr) = stderr.as_mut() {
                let _ = stderr.read_to_end(&mut err_text).await;
            }
        };
        let drain_out = async {
            if let Some(stdout) = stdout.as_mut() {
                let _ = stdout.read_to_end(&mut out_text).await;
            }
        };
        let ((), (), status) = tokio::join!(drain_err, drain_out, child.wait());
        let ended = match status {
            Ok(status) if status.success() => Ok(out_text),
            Ok(status) => Err(Failure {
                status: status.to_string(),
                stderr: masked_tail(&err_text, password.as_deref()),
            }),
            Err(e) => Err(Failure {
                status: format!("could not wait for it: {e}"),
                stderr: masked_tail(&err_text, password.as_deref()),
            }),
        };
        let _ = tx.send(ended);
    });
    (Owner(task), rx)
}

fn masked_tail(stderr: &[u8], password: Option<&str>) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.lines().collect();
    let mut tail = mask_secrets(&lines[lines.len().saturating_sub(STDERR_TAIL_LINES)..].join("\n"));
    if let Some(password) = password.filter(|p| !p.is_empty()) {
        tail = tail.replace(password, MASK);
    }
    tail
}

fn spawn_error(program: &Path) -> impl FnOnce(io::Error) -> super::Error + '_ {
    move |e| super::Error::Spawn {
        program: program.display().to_string(),
        message: e.to_string(),
    }
}

/// A running `pg_dump -Fc`: read it for the dump. Its end of file is an
/// error when pg_dump failed (so a store never completes a truncated dump),
/// and [`Dump::failure`] then says how.
pub struct Dump {
    stdout: ChildStdout,
    ended: Option<oneshot::Receiver<Ended>>,
    failure: Arc<Mutex<Option<Failure>>>,
    _owner: Owner,
}

/// Where a [`Dump`] records how pg_dump failed, readable after the dump
/// itself was handed to (and dropped by) a store.
#[derive(Clone, Default)]
pub struct DumpFailure(Arc<Mutex<Option<Failure>>>);

impl DumpFailure {
    pub fn get(&self) -> Option<Failure> {
        self.0.lock().expect("dump failure").clone()
    }
}

impl Dump {
    /// Starts `pg_dump -Fc` of `url`. Owners and privileges are kept: a
    /// backup is the database as it is.
    pub fn start(pg_dump: &PgDump, url: &str) -> super::Result<(Dump, DumpFailure)> {
        let (mut command, password) = command(&pg_dump.path, url);
        command
            .arg("--format=custom")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().map_err(spawn_error(&pg_dump.path))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let (owner, ended) = own(child, false, password);
        let failure = DumpFailure::default();
        Ok((
            Dump {
                stdout,
                ended: Some(ended),
                failure: failure.0.clone(),
                _owner: owner,
            },
            failure,
        ))
    }
}

impl AsyncRead for Dump {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.stdout).poll_read(cx, buf))?;
        if buf.filled().len() > before {
            return Poll::Ready(Ok(()));
        }
        // End of file: pg_dump closed its output; the dump is whole only if
        // it then exits well.
        let Some(ended) = self.ended.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let result = ready!(Pin::new(ended).poll(cx));
        self.ended = None;
        let failure = match result {
            Ok(Ok(_)) => return Poll::Ready(Ok(())),
            Ok(Err(failure)) => failure,
            Err(_) => Failure {
                status: "ended without a status".into(),
                stderr: String::new(),
            },
        };
        let message = format!("pg_dump failed ({})", failure.status);
        *self.failure.lock().expect("dump failure") = Some(failure);
        Poll::Ready(Err(io::Error::other(message)))
    }
}

/// A running `pg_restore`.
pub struct Restore {
    /// Where to write the dump when it reads its stdin.
    pub stdin: Option<ChildStdin>,
    ended: oneshot::Receiver<Ended>,
    _owner: Owner,
}

/// What `pg_restore` is to do.
pub enum RestoreMode<'a> {
    /// Restore into `url`'s database, reading the dump from stdin.
    Stream { url: &'a str },
    /// Restore into `url`'s database from a file, `jobs` at once.
    File {
        url: &'a str,
        path: &'a Path,
        jobs: usize,
    },
    /// `--list`: print the dump's table of contents (no database).
    List,
}

impl Restore {
    pub fn start(program: &Path, mode: RestoreMode<'_>) -> super::Result<Restore> {
        let (mut command, password, reads_stdin) = match mode {
            RestoreMode::List => {
                let mut command = Command::new(program);
                command.arg("--list").kill_on_drop(true);
                (command, None, true)
            }
            RestoreMode::Stream { url } => {
                let (mut command, password) = command(program, url);
                command.args(RESTORE_FLAGS);
                (command, password, true)
            }
            RestoreMode::File { url, path, jobs } => {
                let (mut command, password) = command(program, url);
                command
                    .args(RESTORE_FLAGS)
                    .arg(format!("--jobs={jobs}"))
                    .arg(path);
                (command, password, false)
            }
        };
        command
            .stdin(if reads_stdin {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().map_err(spawn_error(program))?;
        let stdin = child.stdin.take();
        let (owner, ended) = own(child, true, password);
        Ok(Restore {
            stdin,
            ended,
            _owner: owner,
        })
    }

    /// Waits for it to end (close `stdin` first): its output, or how it failed.
    pub async fn wait(mut self) -> Result<Vec<u8>, Failure> {
        drop(self.stdin.take());
        match (&mut self.ended).await {
            Ok(ended) => ended,
            Err(_) => Err(Failure {
                status: "ended without a status".into(),
                stderr: String::new(),
            }),
        }
    }
}

/// Into a new, empty database: objects owned by the restoring role (the
/// roles of the server the backup came from may not exist here), no
/// grants, stop at the first error.
const RESTORE_FLAGS: &[&str] = &["--no-owner", "--no-acl", "--exit-on-error"];
