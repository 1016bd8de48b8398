//! `Test`: runs the real `flightpath` binary in a temp dir (after casey/just's
//! test builder).
//!
//! ```ignore
//! let test = Test::new()
//!     .workflow("reset", "
//!         name: reset
//!         steps:
//!           hello: { uses: shell, with: { run: echo hi } }
//!     ")
//!     .args(["run", "reset", "--yes"]);
//! test.run().expect_code(0);
//! let test = test.args(["list"]); // same dir, new command line
//! ```
//!
//! The child runs with the temp dir as its working directory and a cleared
//! environment: only `PATH`, `HOME`, `TMPDIR`, `RUST_BACKTRACE` and
//! `LLVM_PROFILE_FILE` pass through (so no `PG*`, `AWS_*`, `FLIGHTPATH_*` or
//! terminal settings leak in), plus `NO_COLOR=1`, `CI=1` and what `.env()`
//! adds. Stdin is empty unless `.stdin()` gives it text; it is never a TTY.
//! A run that outlives its timeout is killed and fails the test.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// Variables of the test process the child may see.
const PASSED_THROUGH: &[&str] = &[
    "PATH",
    "HOME",
    "TMPDIR",
    "RUST_BACKTRACE",
    "LLVM_PROFILE_FILE",
];

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

pub struct Test {
    dir: TempDir,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    stdin: Option<String>,
    timeout: Duration,
}

/// What a run produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// The exit code; `128 + signal` when killed by a signal.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Default for Test {
    fn default() -> Self {
        Test::new()
    }
}

impl Test {
    pub fn new() -> Test {
        Test {
            dir: tempfile::Builder::new()
                .prefix("flightpath-test-")
                .tempdir()
                .expect("creating the test's temp dir"),
            args: Vec::new(),
            env: Vec::new(),
            stdin: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Writes `contents` (unindented, see [`unindent`]) to `path` under the
    /// test dir, creating parent directories.
    pub fn file(self, path: impl AsRef<Path>, contents: &str) -> Test {
        let path = self.dir.path().join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&path, unindent(contents))
            .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        self
    }

    /// Writes `workflows/<name>.yaml` (unindented).
    pub fn workflow(self, name: &str, yaml: &str) -> Test {
        self.file(format!("workflows/{name}.yaml"), yaml)
    }

    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Test {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Sets the command line (without the program name), replacing any
    /// earlier one.
    pub fn args<I, S>(mut self, args: I) -> Test
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args = args.into_iter().map(Into::into).collect();
        self
    }

    pub fn stdin(mut self, text: &str) -> Test {
        self.stdin = Some(text.to_owned());
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Test {
        self.timeout = timeout;
        self
    }

    /// The working directory of the runs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Reads a file under the test dir.
    pub fn read(&self, path: impl AsRef<Path>) -> String {
        let path = self.dir.path().join(path);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
    }

    /// The run directories under `.flightpath/runs/`, sorted by name.
    pub fn runs(&self) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(self.dir.path().join(".flightpath/runs")) else {
            return Vec::new();
        };
        let mut runs: Vec<PathBuf> = entries
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_dir())
            .collect();
        runs.sort();
        runs
    }

    /// Runs `flightpath` with the current arguments and waits for it.
    /// The binary with `args`, in the test's directory, with a clean
    /// environment: only [`PASSED_THROUGH`] and the test's own variables.
    fn command(&self, args: &[impl AsRef<std::ffi::OsStr>]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_flightpath"));
        command
            .args(args)
            .current_dir(self.dir.path())
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for key in PASSED_THROUGH {
            if let Some(value) = std::env::var_os(key) {
                command.env(key, value);
            }
        }
        command.env("NO_COLOR", "1").env("CI", "1");
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        command
    }

    /// Runs the binary with the current arguments on a pseudo-terminal
    /// (util-linux `script`), so flightpath asks its questions, and answers
    /// `typed` and a line end. The terminal's output is `stdout`, without
    /// carriage returns. The environment is the test's, as in [`Test::run`],
    /// with `HOME` in the test dir and a dumb terminal.
    pub fn on_terminal(&self, typed: &str) -> Output {
        let line = std::iter::once(env!("CARGO_BIN_EXE_flightpath").into())
            .chain(self.args.iter().map(|a| a.to_string_lossy().into_owned()))
            .map(|word: String| format!("'{word}'"))
            .collect::<Vec<_>>()
            .join(" ");
        let mut command = Command::new("script");
        command
            .args(["--quiet", "--return", "--command", &line, "/dev/null"])
            .current_dir(self.dir.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("NO_COLOR", "1")
            .env("CI", "1")
            .env("TERM", "dumb")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .expect("`script` (util-linux) runs flightpath on a pseudo-terminal");
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(format!("{typed}\n").as_bytes()).unwrap();
        // Kept open until flightpath has asked and read the answer.
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(60));
            drop(stdin);
        });
        let out = child.wait_with_output().unwrap();
        Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).replace('\r', ""),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Starts the binary with `args` without waiting for it (for tests that
    /// signal it or race two runs); see [`Output::of`].
    pub fn spawn(&self, args: &[&str]) -> std::process::Child {
        self.command(args).spawn().expect("starting flightpath")
    }

    pub fn run(&self) -> Output {
        let mut command = self.command(&self.args);
        command.stdin(if self.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let mut child = command.spawn().expect("starting flightpath");
        if let (Some(mut pipe), Some(text)) = (child.stdin.take(), self.stdin.clone()) {
            // A child that exits without reading closes the pipe: ignore.
            std::thread::spawn(move || {
                let _ = pipe.write_all(text.as_bytes());
            });
        }
        // Readers on threads so a full pipe never blocks the child; they
        // report over channels so a grandchild holding a pipe open cannot
        // hang the test past its deadline.
        let stdout = read_in_background(child.stdout.take().unwrap());
        let stderr = read_in_background(child.stderr.take().unwrap());

        let deadline = Instant::now() + self.timeout;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                let collect = |rx: &mpsc::Receiver<String>| {
                    rx.recv_timeout(Duration::from_secs(1)).unwrap_or_default()
                };
                panic!(
                    "flightpath {:?} did not finish within {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                    self.args,
                    self.timeout,
                    collect(&stdout),
                    collect(&stderr),
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let remaining = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_secs(1));
        let collect = |rx: mpsc::Receiver<String>, name: &str| {
            rx.recv_timeout(remaining)
                .unwrap_or_else(|_| panic!("flightpath exited but its {name} stayed open"))
        };
        Output {
            code: status
                .code()
                .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
            stdout: collect(stdout, "stdout"),
            stderr: collect(stderr, "stderr"),
        }
    }
}

impl Output {
    /// Waits for a child from [`Test::spawn`]; a signal is `128 + signal`.
    pub fn of(child: std::process::Child) -> Output {
        let out = child.wait_with_output().expect("waiting for flightpath");
        Output {
            code: out
                .status
                .code()
                .unwrap_or_else(|| 128 + out.status.signal().unwrap_or(0)),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Both streams, labelled, for assertion messages and searches.
    pub fn both(&self) -> String {
        format!("stdout:\n{}\nstderr:\n{}", self.stdout, self.stderr)
    }

    /// stdout as the JSON report (`--json`); both streams shown if it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not a JSON report ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    /// Panics, showing both streams, unless the exit code is `code`.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Output {
        assert!(
            self.code == code,
            "expected exit code {code}, got {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code,
            self.stdout,
            self.stderr,
        );
        self
    }
}

fn read_in_background(mut pipe: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        let _ = tx.send(String::from_utf8_lossy(&bytes).into_owned());
    });
    rx
}

/// Lets tests write files as indented raw strings: drops a first line that
/// is empty and the indentation common to all non-blank lines.
pub fn unindent(text: &str) -> String {
    let text = text.strip_prefix('\n').unwrap_or(text);
    let mut lines: Vec<&str> = text.lines().collect();
    while lines.last().is_some_and(|l| l.trim().is_empty()) {
        lines.pop();
    }
    let indent = lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start_matches(' ').len())
        .min()
        .unwrap_or(0);
    lines
        .iter()
        .map(|l| format!("{}\n", l.get(indent..).unwrap_or("")))
        .collect()
}

#[test]
fn unindent_keeps_relative_indentation() {
    let yaml = "
        name: x
        steps:
          a: { uses: shell }
    ";
    assert_eq!(unindent(yaml), "name: x\nsteps:\n  a: { uses: shell }\n");
    assert_eq!(unindent("a: 1\n"), "a: 1\n");
}

/// The step `id` of a JSON report.
pub fn step<'a>(report: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .unwrap_or_else(|| panic!("no step `{id}` in the report: {report:#}"))
}

/// The text of the block detail titled `title` of a step in a JSON report.
pub fn block<'a>(step: &'a serde_json::Value, title: &str) -> &'a str {
    step["details"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["type"] == "block" && d["title"] == title)
        .and_then(|d| d["text"].as_str())
        .unwrap_or_else(|| panic!("no block `{title}` in {step:#}"))
}
