//! `shell`: runs a command through `sh -c` (migrations, maintenance mode,
//! cache priming) in its own process group, with stdout and stderr captured
//! into one bounded buffer (the last [`CAPTURE_LIMIT`] bytes). A timeout or
//! a cancelled run kills the whole process group, so nothing the command
//! started keeps running behind the report's back.
//!
//! This module owns running and capturing; it never prints the output itself
//! (it goes to the report, redacted) and never shows `env:` values in a plan.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::process::{Child, ChildStderr, ChildStdout, Command};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::progress::Unit;
use crate::report::model::Detail;
use crate::syntax::reader::{LoadCtx, MapReader};
use crate::syntax::template::{Quoting, Template};

use super::{Kind, StepCtx, StepError, StepOutcome};

/// How much output is kept: the last 64 KiB.
pub const CAPTURE_LIMIT: usize = 64 * 1024;

/// How many lines of output a failure shows.
const FAILURE_TAIL_LINES: usize = 20;

/// How long to keep reading after the shell exited, for output still in the
/// pipes. A background process that holds the pipes open is not waited for.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(1);

/// How long to keep reading after killing the process group.
const DRAIN_AFTER_KILL: Duration = Duration::from_millis(300);

#[derive(Debug, Clone)]
pub struct Params {
    /// The command line, run by `sh -c`. `${VAR}` and `${steps.…}` values
    /// become one single-quoted word each; `${raw:VAR}` goes in as it is.
    pub run: Template,
    /// Extra environment variables; the process environment is inherited.
    pub env: BTreeMap<String, Template>,
    /// The working directory, relative to the directory flightpath runs in.
    pub dir: Option<Template>,
    /// Kill the command (and everything it started) after this long.
    pub timeout: Option<Duration>,
}

impl Kind for Params {
    const NAME: &'static str = "shell";
    const OUTPUTS: &'static [&'static str] = &["exit_code"];
    const DESTRUCTIVE: bool = true;

    fn parse(with: &mut MapReader, cx: &mut LoadCtx) -> Option<Self> {
        // Read every key before giving up, so each one counts as known.
        // Each value becomes one shell word: `--var V='x; rm -rf ~'` is an argument, not a command.
        let run = with.required_template_in(cx, "run", Quoting::ShellWord);
        let env = with.template_map(cx, "env").unwrap_or_default();
        let dir = with.template(cx, "dir");
        let timeout = with.duration(cx, "timeout");
        Some(Params {
            run: run?,
            env,
            dir,
            timeout,
        })
    }

    fn templates(&self) -> Vec<&Template> {
        let mut all = vec![&self.run];
        all.extend(self.env.values());
        all.extend(self.dir.as_ref());
        all
    }

    async fn plan(&self, ctx: &StepCtx) -> Result<StepOutcome, StepError> {
        let command = ctx.redactor.redact(&ctx.preview(&self.run));
        let mut outcome = StepOutcome::new(format!("would run `{}`", short_command(&command)))
            .detail(Detail::block("command", command.clone()));
        if let Some(dir) = &self.dir {
            outcome = outcome.detail(Detail::fact("dir", ctx.redactor.redact(&ctx.preview(dir))));
        }
        if !self.env.is_empty() {
            let keys: Vec<&str> = self.env.keys().map(String::as_str).collect();
            outcome = outcome.detail(Detail::fact("env", keys.join(", ")));
        }
        if let Some(timeout) = self.timeout {
            outcome = outcome.detail(Detail::fact("timeout", format_duration(timeout)));
        }
        Ok(outcome)
    }

    async fn run(&self, ctx: &StepCtx) -> Result<StepOutcome, StepError> {
        let command = ctx.render(&self.run)?;
        let shown = ctx.redactor.redact(&short_command(&command));
        let dir = match &self.dir {
            Some(dir) => ctx.workdir.join(ctx.render(dir)?),
            None => ctx.workdir.clone(),
        };
        if !dir.is_dir() {
            return Err(StepError::failed(ctx.redactor.redact(&format!(
                "working directory {} does not exist; create it, or correct `dir:` (relative to {})",
                dir.display(),
                ctx.workdir.display()
            ))));
        }
        let mut env = Vec::with_capacity(self.env.len());
        for (key, value) in &self.env {
            env.push((key.clone(), ctx.render(value)?));
        }

        let bar = ctx.progress.bar(
            &ctx.step_id,
            &format!("running `{shown}`"),
            None,
            Unit::Items,
        );
        let result = execute(&command, &dir, &env, self.timeout, &ctx.cancel).await;
        bar.finish();
        let (end, output) = result?;
        let output = ctx.redactor.redact(&output);

        match end {
            End::Exited(status) if status.success() => {
                let mut outcome = StepOutcome::new(format!("ran `{shown}`")).output("exit_code", 0);
                if !output.is_empty() {
                    outcome = outcome.detail(Detail::block("output", output));
                }
                Ok(outcome)
            }
            End::Exited(status) => Err(StepError::Failed {
                message: format!("`{shown}` {}", describe_exit(status)),
                details: failure_details(&output),
            }),
            End::TimedOut(after) => Err(StepError::Failed {
                message: format!("`{shown}` timed out after {}", format_duration(after)),
                details: failure_details(&output),
            }),
            End::Cancelled => Err(StepError::Cancelled),
        }
    }
}

/// Why the command stopped.
#[derive(Debug)]
enum End {
    Exited(ExitStatus),
    TimedOut(Duration),
    Cancelled,
}

/// Spawns `sh -c command` in a new process group and waits for it to exit,
/// time out, or be cancelled; returns how it ended and the captured output.
async fn execute(
    command: &str,
    dir: &Path,
    env: &[(String, String)],
    timeout: Option<Duration>,
    cancel: &CancellationToken,
) -> Result<(End, String), StepError> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .current_dir(dir)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group, so a timeout can kill everything the command started.
        .process_group(0)
        // If this future is dropped (the engine gave up on the step), the
        // shell at least does not outlive it.
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| StepError::failed(format!("could not start `sh`: {e}")))?;

    let mut capture = Capture::new(&mut child);
    let deadline = timeout.map(|t| Instant::now() + t);
    let end = loop {
        tokio::select! {
            // Reading is cancel safe: a read that loses the race read nothing.
            _ = capture.read_some(), if capture.is_open() => {}
            status = child.wait() => match status {
                Ok(status) => break End::Exited(status),
                Err(e) => {
                    kill_group(&mut child).await;
                    return Err(StepError::failed(format!("could not wait for `sh`: {e}")));
                }
            },
            _ = sleep_until(deadline) => break End::TimedOut(timeout.unwrap_or_default()),
            _ = cancel.cancelled() => break End::Cancelled,
        }
    };
    let grace = match end {
        End::Exited(_) => DRAIN_AFTER_EXIT,
        End::TimedOut(_) | End::Cancelled => {
            kill_group(&mut child).await;
            DRAIN_AFTER_KILL
        }
    };
    capture.drain(grace).await;
    Ok((end, capture.tail.text()))
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Kills the command's process group, then the shell itself, and reaps it.
async fn kill_group(child: &mut Child) {
    if let Some(pid) = child.id() {
        // The group id is the shell's pid (`process_group(0)`). `kill` is a
        // shell builtin, which spares a dependency on a signals crate.
        let _ = Command::new("sh")
            .args([
                "-c",
                "kill -s KILL -- -\"$0\" 2>/dev/null",
                &pid.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
    }
    let _ = child.kill().await;
}

/// Reads the child's stdout and stderr concurrently into one [`Tail`], in
/// the order the chunks arrive.
struct Capture {
    stdout: Option<ChildStdout>,
    stderr: Option<ChildStderr>,
    tail: Tail,
}

impl Capture {
    fn new(child: &mut Child) -> Self {
        Capture {
            stdout: child.stdout.take(),
            stderr: child.stderr.take(),
            tail: Tail::new(CAPTURE_LIMIT),
        }
    }

    fn is_open(&self) -> bool {
        self.stdout.is_some() || self.stderr.is_some()
    }

    /// Reads one chunk from whichever pipe is ready; a pipe at end of file
    /// (or failing) is closed. Cancel safe.
    async fn read_some(&mut self) {
        let mut out = [0u8; 8192];
        let mut err = [0u8; 8192];
        tokio::select! {
            n = read_pipe(&mut self.stdout, &mut out) => match n {
                Some(n) => self.tail.push(&out[..n]),
                None => self.stdout = None,
            },
            n = read_pipe(&mut self.stderr, &mut err) => match n {
                Some(n) => self.tail.push(&err[..n]),
                None => self.stderr = None,
            },
        }
    }

    /// Reads until both pipes are closed or `grace` has passed.
    async fn drain(&mut self, grace: Duration) {
        let until = Instant::now() + grace;
        while self.is_open() {
            tokio::select! {
                _ = self.read_some() => {}
                _ = tokio::time::sleep_until(until) => break,
            }
        }
    }
}

/// One read from an open pipe: `Some(n)` bytes, `None` at end of file or on
/// error; never completes for a closed (`None`) pipe.
async fn read_pipe(
    pipe: &mut Option<impl tokio::io::AsyncRead + Unpin>,
    buf: &mut [u8],
) -> Option<usize> {
    match pipe {
        Some(pipe) => match pipe.read(buf).await {
            Ok(0) | Err(_) => None,
            Ok(n) => Some(n),
        },
        None => std::future::pending().await,
    }
}

/// The last `limit` bytes of a stream, and how much came before them.
#[derive(Debug)]
pub struct Tail {
    buf: Vec<u8>,
    limit: usize,
    dropped: u64,
}

impl Tail {
    pub fn new(limit: usize) -> Self {
        Tail {
            buf: Vec::new(),
            limit,
            dropped: 0,
        }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() > self.limit {
            let excess = self.buf.len() - self.limit;
            self.buf.drain(..excess);
            self.dropped += excess as u64;
        }
    }

    /// The kept text (invalid UTF-8 replaced). When the start was dropped,
    /// the first partial line goes too and a note says how much is missing.
    pub fn text(&self) -> String {
        let text = String::from_utf8_lossy(&self.buf);
        if self.dropped == 0 {
            return text.into_owned();
        }
        let (cut, kept) = match text.find('\n') {
            Some(at) => (at + 1, &text[at + 1..]),
            None => (0, &text[..]),
        };
        format!(
            "[output truncated: first {} bytes not kept]\n{kept}",
            self.dropped + cut as u64
        )
    }
}

/// The last `n` lines of `text`, without a trailing newline.
pub fn last_lines(text: &str, n: usize) -> &str {
    let text = text.trim_end_matches('\n');
    match text.rmatch_indices('\n').nth(n.saturating_sub(1)) {
        Some((at, _)) if n > 0 => &text[at + 1..],
        _ if n == 0 => "",
        _ => text,
    }
}

fn failure_details(output: &str) -> Vec<Detail> {
    let tail = last_lines(output, FAILURE_TAIL_LINES);
    if tail.trim().is_empty() {
        Vec::new()
    } else {
        vec![Detail::block(
            format!("output (last {FAILURE_TAIL_LINES} lines)"),
            tail,
        )]
    }
}

/// The first line of a command, at most 60 characters, with `…` when
/// anything was left out.
pub fn short_command(command: &str) -> String {
    const MAX: usize = 60;
    let trimmed = command.trim();
    let first = trimmed.lines().next().unwrap_or("").trim_end();
    let mut short: String = first.chars().take(MAX).collect();
    if short.len() < trimmed.len() {
        short = short.trim_end().to_string();
        short.push('…');
    }
    short
}

fn describe_exit(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        (None, None) => format!("ended with {status}"),
    }
}

/// `500ms`, `30s`, `5m`, `2h`, `1m30s`.
pub fn format_duration(d: Duration) -> String {
    if d.subsec_millis() != 0 || d.as_secs() == 0 {
        return format!("{}ms", d.as_millis());
    }
    let secs = d.as_secs();
    match (secs / 3600, secs % 3600 / 60, secs % 60) {
        (h, 0, 0) if h > 0 => format!("{h}h"),
        (0, m, 0) if m > 0 => format!("{m}m"),
        (0, 0, s) => format!("{s}s"),
        (h, m, s) if h > 0 => format!("{h}h{m}m{s}s"),
        (_, m, s) => format!("{m}m{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_end_and_says_so() {
        let mut tail = Tail::new(16);
        tail.push(b"line one\nline two\n");
        tail.push(b"line three\n");
        assert_eq!(
            tail.text(),
            "[output truncated: first 18 bytes not kept]\nline three\n"
        );
        let mut small = Tail::new(16);
        small.push(b"ok\n");
        assert_eq!(small.text(), "ok\n");
    }

    #[test]
    fn last_lines_of_output() {
        assert_eq!(last_lines("a\nb\nc\n", 2), "b\nc");
        assert_eq!(last_lines("a\nb\nc", 5), "a\nb\nc");
        assert_eq!(last_lines("a\nb", 0), "");
        assert_eq!(last_lines("", 3), "");
    }

    #[test]
    fn short_command_takes_the_first_line() {
        assert_eq!(short_command("echo hi"), "echo hi");
        assert_eq!(
            short_command("  set -e\n  ./manage.py migrate\n"),
            "set -e…"
        );
        let long = "x".repeat(70);
        assert_eq!(short_command(&long), format!("{}…", "x".repeat(60)));
        assert_eq!(short_command(&"é".repeat(60)), "é".repeat(60));
    }

    async fn sh(command: &str, timeout: Option<Duration>) -> (End, String) {
        let dir = std::env::temp_dir();
        let env = [("FLIGHTPATH_TEST_VALUE".to_string(), "from env".to_string())];
        execute(command, &dir, &env, timeout, &CancellationToken::new())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn captures_stdout_and_stderr_together() {
        let (end, output) = sh(
            "echo out; sleep 0.05; echo err >&2; sleep 0.05; echo \"$FLIGHTPATH_TEST_VALUE\"",
            None,
        )
        .await;
        assert!(matches!(end, End::Exited(s) if s.success()));
        assert_eq!(output, "out\nerr\nfrom env\n");
    }

    #[tokio::test]
    async fn reports_the_exit_code() {
        let (end, _) = sh("exit 3", None).await;
        let End::Exited(status) = end else {
            panic!("expected an exit, got {end:?}")
        };
        assert_eq!(describe_exit(status), "exited with code 3");
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_group() {
        let started = std::time::Instant::now();
        let (end, output) = sh(
            "echo started; sleep 30 & sleep 30",
            Some(Duration::from_millis(200)),
        )
        .await;
        assert!(matches!(end, End::TimedOut(_)), "{end:?}");
        assert_eq!(output, "started\n");
        // The background `sleep` held the pipes open: killing only the shell
        // would have left the drain waiting for it.
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn cancel_stops_the_command() {
        let cancel = CancellationToken::new();
        let trigger = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            trigger.cancel();
        });
        let dir = std::env::temp_dir();
        let (end, _) = execute("sleep 30", &dir, &[], None, &cancel).await.unwrap();
        assert!(matches!(end, End::Cancelled));
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(format_duration(Duration::from_secs(30)), "30s");
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(format_duration(Duration::from_secs(300)), "5m");
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(Duration::from_secs(7200)), "2h");
    }
}
