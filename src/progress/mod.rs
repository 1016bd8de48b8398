//! Progress display for long steps. On a terminal: `indicatif` bars. When
//! stderr is not a terminal or `CI` is set: a plain line per bar every few
//! seconds. Under `--json`: nothing from bars. Steps only hold a [`Bar`]
//! handle; they never know which of the three is drawing.
//!
//! Under GitHub Actions (`GITHUB_ACTIONS=true`): plain lines, each step's
//! inside its own `::group::` (see [`github`] for how concurrent steps
//! share the log), all of them on stdout (on stderr under `--json`) so the
//! group commands and the lines they group stay in one ordered stream.
//!
//! This module owns everything written to the terminal while a run is in
//! flight: bars, log lines ([`Progress::println`]) and user-facing messages
//! ([`Progress::message`]), so that none of them tears the others. It must not
//! slow the hot path: updating a bar is a few atomic operations unless a line
//! is due.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressFinish, ProgressStyle};

mod github;

/// How progress is shown for this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Bars,
    Lines,
    Quiet,
}

/// What a bar counts, for formatting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Bytes,
    Rows,
    Items,
}

/// How often a bar prints a line in [`Mode::Lines`] unless told otherwise.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Clone, Debug)]
pub struct Progress {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    mode: Mode,
    /// Minimum time between two lines of one bar in [`Mode::Lines`].
    interval: Duration,
    /// The bars' shared drawing area on stderr; only in [`Mode::Bars`].
    multi: Option<MultiProgress>,
    sink: Sink,
    /// Under GitHub Actions: the per-step groups, and the stream they go to.
    groups: Option<Grouping>,
}

/// Every live line under GitHub Actions goes through `state`, and is
/// written while it is locked, so lines come out in the order decided.
#[derive(Debug)]
struct Grouping {
    state: Mutex<github::Groups>,
    stream: Stream,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stream {
    Stdout,
    Stderr,
}

impl Progress {
    pub fn new(mode: Mode) -> Self {
        Progress::with_interval(mode, DEFAULT_INTERVAL)
    }

    /// Like [`Progress::new`], with the time between plain lines chosen (tests).
    pub fn with_interval(mode: Mode, interval: Duration) -> Self {
        let multi = (mode == Mode::Bars).then(MultiProgress::new);
        Progress::build(mode, interval, multi, Sink::Std, None)
    }

    /// Plain lines grouped per step for GitHub Actions' log, on stdout
    /// (under `--json`: no bar lines, and the rest on stderr).
    pub fn github_actions(json: bool) -> Self {
        let (mode, stream) = if json {
            (Mode::Quiet, Stream::Stderr)
        } else {
            (Mode::Lines, Stream::Stdout)
        };
        Progress::build(mode, DEFAULT_INTERVAL, None, Sink::Std, Some(stream))
    }

    /// Whether lines are grouped for GitHub Actions.
    pub fn is_github_actions(&self) -> bool {
        self.inner.groups.is_some()
    }

    /// See [`detect`]; under GitHub Actions, [`Progress::github_actions`].
    pub fn detect(json: bool) -> Self {
        if std::env::var_os(crate::report::github::ACTIONS_VAR).is_some_and(|v| v == "true") {
            return Progress::github_actions(json);
        }
        let mode = detect_mode(
            json,
            std::io::stderr().is_terminal(),
            std::env::var_os("CI"),
        );
        Progress::new(mode)
    }

    fn build(
        mode: Mode,
        interval: Duration,
        multi: Option<MultiProgress>,
        sink: Sink,
        grouped: Option<Stream>,
    ) -> Self {
        Progress {
            inner: Arc::new(Inner {
                mode,
                interval,
                multi,
                sink,
                groups: grouped.map(|stream| Grouping {
                    state: Mutex::new(github::Groups::default()),
                    stream,
                }),
            }),
        }
    }

    /// A new bar for `step`; `total` is unknown for spinners.
    pub fn bar(&self, step: &str, message: &str, total: Option<u64>, unit: Unit) -> Bar {
        let kind = match (self.inner.mode, &self.inner.multi) {
            (Mode::Bars, Some(multi)) => {
                BarKind::Drawn(drawn_bar(multi, step, message, total, unit))
            }
            (Mode::Lines, _) => BarKind::Lines(Arc::new(LineBar::new(
                step,
                message,
                total,
                unit,
                self.inner.interval,
                self.clone(),
            ))),
            _ => BarKind::Hidden,
        };
        Bar { kind, unit }
    }

    /// Prints a line to stderr without tearing the bars.
    pub fn println(&self, line: &str) {
        if self.grouped(|groups| groups.line(None, line)) {
            return;
        }
        match &self.inner.multi {
            Some(multi) if !multi.is_hidden() => {
                // Only fails if stderr is gone; there is nowhere left to say so.
                let _ = multi.println(line);
            }
            _ => self.inner.sink.stderr(line),
        }
    }

    /// A message for the person running flightpath (`notify` with
    /// `to: stdout`): on stdout, except under `--json` where stdout is the
    /// JSON report and the message goes to stderr instead.
    pub fn message(&self, text: &str) {
        if self.grouped(|groups| groups.line(None, text)) {
            return;
        }
        match self.inner.mode {
            Mode::Quiet => self.inner.sink.stderr(text),
            _ => self.suspend(|| self.inner.sink.stdout(text)),
        }
    }

    /// `step` started (`kind` is its `uses:`): under GitHub Actions its
    /// group opens, or waits for the open one to close. Prints nothing
    /// otherwise.
    pub fn step_started(&self, step: &str, kind: &str) {
        self.grouped(|groups| groups.begin(step, &group_title(step, kind)));
    }

    /// A line about `step` while it runs, as [`Progress::println`] prints
    /// it; under GitHub Actions, inside the step's group.
    pub fn step_line(&self, step: &str, line: &str) {
        if !self.grouped(|groups| groups.line(Some(step), line)) {
            self.println(line);
        }
    }

    /// `step`'s final status line, as [`Progress::println`] prints it;
    /// under GitHub Actions, the last line of the step's group.
    pub fn step_finished(&self, step: &str, kind: &str, line: &str) {
        if !self.grouped(|groups| groups.end(step, &group_title(step, kind), line)) {
            self.println(line);
        }
    }

    /// [`Progress::message`] from `step`; under GitHub Actions, inside the
    /// step's group.
    pub fn step_message(&self, step: &str, text: &str) {
        if !self.grouped(|groups| groups.line(Some(step), text)) {
            self.message(text);
        }
    }

    /// The run is over: under GitHub Actions, the open group is closed and
    /// what waited (steps abandoned after Ctrl-C) is written out.
    pub fn finish(&self) {
        self.grouped(github::Groups::flush);
    }

    /// Writes what `decide` returns under the groups' lock; false (and
    /// nothing done) when lines are not grouped.
    fn grouped(&self, decide: impl FnOnce(&mut github::Groups) -> Vec<String>) -> bool {
        let Some(grouping) = &self.inner.groups else {
            return false;
        };
        let mut groups = grouping
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for line in decide(&mut groups) {
            match grouping.stream {
                Stream::Stdout => self.inner.sink.stdout(&line),
                Stream::Stderr => self.inner.sink.stderr(&line),
            }
        }
        true
    }

    /// Hides the bars while `f` runs (to ask a question on the terminal).
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.inner.multi {
            Some(multi) => multi.suspend(f),
            None => f(),
        }
    }
}

/// `database (postgres.clone)`.
fn group_title(step: &str, kind: &str) -> String {
    format!("{step} ({kind})")
}

/// The decision behind [`detect`], apart from the process's environment.
fn detect_mode(json: bool, stderr_is_terminal: bool, ci: Option<OsString>) -> Mode {
    let in_ci = ci.is_some_and(|value| !value.is_empty());
    if json {
        Mode::Quiet
    } else if !stderr_is_terminal || in_ci {
        Mode::Lines
    } else {
        Mode::Bars
    }
}

/// One step's progress bar. Cheap to clone and to update from the hot path.
#[derive(Clone, Debug)]
pub struct Bar {
    kind: BarKind,
    unit: Unit,
}

#[derive(Clone, Debug)]
enum BarKind {
    /// An `indicatif` bar in the shared [`MultiProgress`]; clones share it.
    Drawn(ProgressBar),
    Lines(Arc<LineBar>),
    Hidden,
}

impl Bar {
    pub fn inc(&self, delta: u64) {
        match &self.kind {
            BarKind::Drawn(bar) => bar.inc(delta),
            BarKind::Lines(bar) => {
                bar.position.fetch_add(delta, Ordering::Relaxed);
                bar.tick();
            }
            BarKind::Hidden => {}
        }
    }

    pub fn set_position(&self, position: u64) {
        match &self.kind {
            BarKind::Drawn(bar) => bar.set_position(position),
            BarKind::Lines(bar) => {
                bar.position.store(position, Ordering::Relaxed);
                bar.tick();
            }
            BarKind::Hidden => {}
        }
    }

    pub fn set_total(&self, total: u64) {
        match &self.kind {
            BarKind::Drawn(bar) => {
                let was_spinner = bar.length().is_none();
                bar.set_length(total);
                if was_spinner {
                    bar.set_style(bar_style(self.unit, true));
                }
            }
            BarKind::Lines(bar) => bar.total.store(total, Ordering::Relaxed),
            BarKind::Hidden => {}
        }
    }

    pub fn set_message(&self, message: &str) {
        match &self.kind {
            BarKind::Drawn(bar) => bar.set_message(message.to_string()),
            BarKind::Lines(bar) => bar.state().message = message.to_string(),
            BarKind::Hidden => {}
        }
    }

    pub fn finish(&self) {
        match &self.kind {
            BarKind::Drawn(bar) => bar.finish_and_clear(),
            BarKind::Lines(bar) => bar.finish(),
            BarKind::Hidden => {}
        }
    }
}

/// A bar added to `multi`. A spinner (with elapsed time) while the total is
/// unknown. Dropped unfinished (the step failed), it clears itself.
fn drawn_bar(
    multi: &MultiProgress,
    step: &str,
    message: &str,
    total: Option<u64>,
    unit: Unit,
) -> ProgressBar {
    let bar = match total {
        Some(total) => ProgressBar::new(total),
        None => ProgressBar::new_spinner(),
    }
    .with_style(bar_style(unit, total.is_some()))
    .with_prefix(step.to_string())
    .with_message(message.to_string())
    .with_finish(ProgressFinish::AndClear);
    let bar = multi.add(bar);
    // Redraws a spinner and its elapsed time even while nothing moves.
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

fn bar_style(unit: Unit, has_total: bool) -> ProgressStyle {
    let counts = match (unit, has_total) {
        (Unit::Bytes, true) => {
            "{wide_bar} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta}"
        }
        (Unit::Rows, true) => "{wide_bar} {human_pos}/{human_len} rows",
        (Unit::Items, true) => "{wide_bar} {human_pos}/{human_len} items",
        (Unit::Bytes, false) => "{binary_bytes} {binary_bytes_per_sec} {elapsed}",
        (Unit::Rows, false) => "{human_pos} rows {elapsed}",
        (Unit::Items, false) => "{human_pos} items {elapsed}",
    };
    let lead = if has_total { "  " } else { "{spinner} " };
    let template = format!("{lead}[{{prefix}}] {{msg}} {counts}");
    ProgressStyle::with_template(&template).unwrap_or_else(|_| ProgressStyle::default_bar())
}

/// Where plain output goes: the process's streams, or a buffer in tests.
#[derive(Clone, Debug)]
enum Sink {
    Std,
    #[cfg(test)]
    Capture(Arc<Mutex<Vec<String>>>),
}

impl Sink {
    fn stderr(&self, line: &str) {
        match self {
            // A closed stderr leaves nowhere to report the failure to write to it.
            Sink::Std => {
                let _ = writeln!(std::io::stderr().lock(), "{line}");
            }
            #[cfg(test)]
            Sink::Capture(lines) => push(lines, format!("stderr: {line}")),
        }
    }

    fn stdout(&self, text: &str) {
        match self {
            // A closed stdout (`| head`) is not an error of the run.
            Sink::Std => {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{text}").and_then(|()| out.flush());
            }
            #[cfg(test)]
            Sink::Capture(lines) => push(lines, format!("stdout: {text}")),
        }
    }
}

#[cfg(test)]
fn push(lines: &Mutex<Vec<String>>, line: String) {
    lines
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(line);
}

/// `total` when the total is unknown.
const NO_TOTAL: u64 = u64::MAX;
/// `next_line_at` once the bar is finished: no more periodic lines.
const FINISHED: u64 = u64::MAX;

/// A bar in [`Mode::Lines`]: counters updated lock-free; the updater that
/// finds a line due claims it with one compare-exchange and prints it.
#[derive(Debug)]
struct LineBar {
    step: String,
    unit: Unit,
    position: AtomicU64,
    total: AtomicU64,
    started: Instant,
    interval_ms: u64,
    /// Milliseconds after `started` when the next line is due, or [`FINISHED`].
    next_line_at: AtomicU64,
    /// Whether a periodic line was printed (then `finish` prints a last one).
    printed: AtomicBool,
    /// Touched only by `set_message` and by whoever prints a line.
    state: Mutex<LineState>,
    /// Where its lines go: [`Progress::step_line`].
    out: Progress,
}

#[derive(Debug)]
struct LineState {
    message: String,
    /// Position and time of the previous line, for the rate since then.
    last_position: u64,
    last_at_ms: u64,
}

impl LineBar {
    fn new(
        step: &str,
        message: &str,
        total: Option<u64>,
        unit: Unit,
        interval: Duration,
        out: Progress,
    ) -> Self {
        let interval_ms = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX - 1);
        LineBar {
            step: step.to_string(),
            unit,
            position: AtomicU64::new(0),
            total: AtomicU64::new(total.unwrap_or(NO_TOTAL)),
            started: Instant::now(),
            interval_ms,
            next_line_at: AtomicU64::new(interval_ms),
            printed: AtomicBool::new(false),
            state: Mutex::new(LineState {
                message: message.to_string(),
                last_position: 0,
                last_at_ms: 0,
            }),
            out,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, LineState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(FINISHED - 1)
    }

    /// Prints a line if one is due; otherwise costs two atomic loads and a
    /// clock read.
    fn tick(&self) {
        let due = self.next_line_at.load(Ordering::Relaxed);
        let now = self.elapsed_ms();
        if now < due || due == FINISHED {
            return;
        }
        let next = now.saturating_add(self.interval_ms).min(FINISHED - 1);
        let claimed =
            self.next_line_at
                .compare_exchange(due, next, Ordering::Relaxed, Ordering::Relaxed);
        if claimed.is_ok() {
            self.printed.store(true, Ordering::Relaxed);
            self.print_line(now);
        }
    }

    fn print_line(&self, now_ms: u64) {
        let position = self.position.load(Ordering::Relaxed);
        let line = {
            let mut state = self.state();
            let window_ms = now_ms.saturating_sub(state.last_at_ms);
            let moved = position.saturating_sub(state.last_position);
            state.last_position = position;
            state.last_at_ms = now_ms;
            format_line(&LineView {
                step: &self.step,
                message: &state.message,
                unit: self.unit,
                position,
                total: self.total(),
                rate_per_sec: (window_ms > 0).then(|| moved as f64 * 1000.0 / window_ms as f64),
                elapsed: Duration::from_millis(now_ms),
            })
        };
        self.out.step_line(&self.step, &line);
    }

    fn total(&self) -> Option<u64> {
        Some(self.total.load(Ordering::Relaxed)).filter(|&t| t != NO_TOTAL)
    }

    /// Stops periodic lines; says "done" only if the bar said anything before.
    fn finish(&self) {
        let was = self.next_line_at.swap(FINISHED, Ordering::Relaxed);
        if was == FINISHED || !self.printed.load(Ordering::Relaxed) {
            return;
        }
        let line = format_done(&LineView {
            step: &self.step,
            message: &self.state().message,
            unit: self.unit,
            position: self.position.load(Ordering::Relaxed),
            total: self.total(),
            rate_per_sec: None,
            elapsed: self.started.elapsed(),
        });
        self.out.step_line(&self.step, &line);
    }
}

/// Everything one plain progress line shows.
#[derive(Debug)]
struct LineView<'a> {
    step: &'a str,
    message: &'a str,
    unit: Unit,
    position: u64,
    total: Option<u64>,
    /// Units per second since the previous line.
    rate_per_sec: Option<f64>,
    elapsed: Duration,
}

/// `  [database] copying orders: 1.2 GiB / 3.4 GiB (35%), 40.1 MiB/s`,
/// `  [database] copying orders: 12,000 / 40,000 rows (30%)` or, without a
/// total, `  [database] copying orders: 12,000 rows, 31s elapsed`.
fn format_line(view: &LineView) -> String {
    let mut line = line_lead(view);
    let amount = |n| amount(view.unit, n);
    match view.total {
        Some(total) => {
            let _ = write!(
                line,
                "{} / {}{} ({}%)",
                amount(view.position),
                amount(total),
                unit_suffix(view.unit),
                percent(view.position, total)
            );
            push_rate(&mut line, view);
        }
        None => {
            let _ = write!(line, "{}{}", amount(view.position), unit_suffix(view.unit));
            push_rate(&mut line, view);
            let _ = write!(line, ", {} elapsed", elapsed(view.elapsed));
        }
    }
    line
}

/// `  [database] copying orders: done, 3.4 GiB in 1m25s`.
fn format_done(view: &LineView) -> String {
    format!(
        "{}done, {}{} in {}",
        line_lead(view),
        amount(view.unit, view.position),
        unit_suffix(view.unit),
        elapsed(view.elapsed)
    )
}

fn line_lead(view: &LineView) -> String {
    if view.message.is_empty() {
        format!("  [{}] ", view.step)
    } else {
        format!("  [{}] {}: ", view.step, view.message)
    }
}

/// Byte throughput helps read a log; row and item rates are left out.
fn push_rate(line: &mut String, view: &LineView) {
    if let (Unit::Bytes, Some(rate)) = (view.unit, view.rate_per_sec) {
        let _ = write!(line, ", {}/s", crate::human::human_bytes(rate));
    }
}

fn amount(unit: Unit, n: u64) -> String {
    match unit {
        Unit::Bytes => crate::human::human_bytes(n as f64),
        Unit::Rows | Unit::Items => crate::human::thousands(n),
    }
}

fn unit_suffix(unit: Unit) -> &'static str {
    match unit {
        Unit::Bytes => "",
        Unit::Rows => " rows",
        Unit::Items => " items",
    }
}

fn percent(position: u64, total: u64) -> u64 {
    if total == 0 {
        return 100;
    }
    let pct = u128::from(position) * 100 / u128::from(total);
    u64::try_from(pct.min(100)).unwrap_or(100)
}

/// `31s`, `1m04s`, `2h05m`.
fn elapsed(duration: Duration) -> String {
    let secs = duration.as_secs();
    if secs < 60 {
        format!("{secs}s")
    } else if secs < 3_600 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{}h{:02}m", secs / 3_600, secs % 3_600 / 60)
    }
}

#[cfg(test)]
mod tests {
    use indicatif::ProgressDrawTarget;

    use super::*;

    fn view(unit: Unit, position: u64, total: Option<u64>) -> LineView<'static> {
        LineView {
            step: "database",
            message: "copying orders",
            unit,
            position,
            total,
            rate_per_sec: None,
            elapsed: Duration::from_secs(31),
        }
    }

    fn capturing(mode: Mode, interval: Duration) -> (Progress, Arc<Mutex<Vec<String>>>) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let multi = (mode == Mode::Bars)
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::hidden()));
        let progress = Progress::build(mode, interval, multi, Sink::Capture(lines.clone()), None);
        (progress, lines)
    }

    fn taken(lines: &Mutex<Vec<String>>) -> Vec<String> {
        std::mem::take(&mut *lines.lock().unwrap())
    }

    #[test]
    fn bytes_line_with_total_and_rate() {
        let mut v = view(Unit::Bytes, 1_288_490_189, Some(3_650_722_202));
        v.rate_per_sec = Some(42_048_307.0);
        assert_eq!(
            format_line(&v),
            "  [database] copying orders: 1.2 GiB / 3.4 GiB (35%), 40.1 MiB/s"
        );
    }

    #[test]
    fn rows_line_with_total() {
        assert_eq!(
            format_line(&view(Unit::Rows, 12_000, Some(40_000))),
            "  [database] copying orders: 12,000 / 40,000 rows (30%)"
        );
    }

    #[test]
    fn line_without_total_says_elapsed() {
        assert_eq!(
            format_line(&view(Unit::Rows, 12_000, None)),
            "  [database] copying orders: 12,000 rows, 31s elapsed"
        );
        let mut v = view(Unit::Items, 7, None);
        v.message = "";
        v.elapsed = Duration::from_secs(64);
        assert_eq!(format_line(&v), "  [database] 7 items, 1m04s elapsed");
    }

    #[test]
    fn done_line() {
        let mut v = view(Unit::Bytes, 3_650_722_202, Some(3_650_722_202));
        v.elapsed = Duration::from_secs(85);
        assert_eq!(
            format_done(&v),
            "  [database] copying orders: done, 3.4 GiB in 1m25s"
        );
    }

    #[test]
    fn number_formats() {
        assert_eq!(crate::human::thousands(0), "0");
        assert_eq!(crate::human::thousands(999), "999");
        assert_eq!(crate::human::thousands(1_000), "1,000");
        assert_eq!(crate::human::thousands(1_234_567), "1,234,567");
        assert_eq!(crate::human::human_bytes(512.0), "512 B");
        assert_eq!(crate::human::human_bytes(1536.0), "1.5 KiB");
        assert_eq!(percent(5, 0), 100);
        assert_eq!(percent(50, 40), 100);
        assert_eq!(percent(u64::MAX - 1, u64::MAX - 1), 100);
        assert_eq!(elapsed(Duration::from_secs(7_500)), "2h05m");
    }

    #[test]
    fn mode_detection() {
        let ci = |v: &str| Some(OsString::from(v));
        assert_eq!(detect_mode(true, true, None), Mode::Quiet);
        assert_eq!(detect_mode(true, false, ci("true")), Mode::Quiet);
        assert_eq!(detect_mode(false, false, None), Mode::Lines);
        assert_eq!(detect_mode(false, true, ci("true")), Mode::Lines);
        assert_eq!(detect_mode(false, true, ci("")), Mode::Bars);
        assert_eq!(detect_mode(false, true, None), Mode::Bars);
    }

    #[test]
    fn lines_mode_prints_when_due_and_a_last_line() {
        let (progress, lines) = capturing(Mode::Lines, Duration::ZERO);
        let bar = progress.bar("database", "copying orders", Some(40_000), Unit::Rows);
        bar.inc(12_000);
        bar.set_message("copying users");
        bar.set_position(40_000);
        bar.finish();
        bar.finish();
        bar.inc(1);
        let printed = taken(&lines);
        assert_eq!(printed.len(), 3, "{printed:#?}");
        assert_eq!(
            printed[0],
            "stderr:   [database] copying orders: 12,000 / 40,000 rows (30%)"
        );
        assert_eq!(
            printed[1],
            "stderr:   [database] copying users: 40,000 / 40,000 rows (100%)"
        );
        assert!(
            printed[2].starts_with("stderr:   [database] copying users: done, 40,000 rows in "),
            "{}",
            printed[2]
        );
    }

    #[test]
    fn lines_mode_is_silent_before_the_interval() {
        let (progress, lines) = capturing(Mode::Lines, Duration::from_secs(3_600));
        let bar = progress.bar("media", "", None, Unit::Bytes);
        bar.clone().inc(1 << 20);
        bar.set_total(1 << 30);
        bar.finish();
        assert!(taken(&lines).is_empty());
    }

    #[test]
    fn quiet_mode_bars_print_nothing_but_logs_still_reach_stderr() {
        let (progress, lines) = capturing(Mode::Quiet, Duration::ZERO);
        let bar = progress.bar("database", "copying", Some(10), Unit::Rows);
        bar.inc(5);
        bar.set_total(20);
        bar.set_message("still copying");
        bar.set_position(20);
        bar.finish();
        assert!(taken(&lines).is_empty());
        progress.println("a log line");
        progress.message("staging is ready");
        assert_eq!(
            taken(&lines),
            ["stderr: a log line", "stderr: staging is ready"]
        );
    }

    #[test]
    fn messages_go_to_stdout_outside_quiet_mode() {
        for mode in [Mode::Lines, Mode::Bars] {
            let (progress, lines) = capturing(mode, Duration::ZERO);
            progress.message("staging is ready");
            assert_eq!(taken(&lines), ["stdout: staging is ready"], "{mode:?}");
        }
    }

    #[test]
    fn hidden_bars_fall_back_to_plain_stderr_lines() {
        let (progress, lines) = capturing(Mode::Bars, Duration::ZERO);
        let bar = progress.bar("media", "syncing", None, Unit::Items);
        bar.inc(3);
        bar.set_total(10);
        bar.finish();
        progress.println("a log line");
        assert_eq!(progress.suspend(|| 42), 42);
        assert_eq!(taken(&lines), ["stderr: a log line"]);
    }

    #[test]
    fn github_actions_groups_each_steps_lines_on_stdout() {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let progress = Progress::build(
            Mode::Lines,
            Duration::ZERO,
            None,
            Sink::Capture(lines.clone()),
            Some(Stream::Stdout),
        );
        assert!(progress.is_github_actions());
        progress.step_started("a", "shell");
        progress.step_started("b", "notify");
        let bar = progress.bar("b", "sending", None, Unit::Items);
        bar.inc(1);
        progress.step_line("a", "▶ a (shell)");
        progress.println("run-level");
        progress.step_finished("a", "shell", "✓ a");
        progress.step_message("b", "hello");
        progress.finish();
        assert_eq!(
            taken(&lines),
            [
                "stdout: ::group::a (shell)",
                "stdout: ▶ a (shell)",
                "stdout: ✓ a",
                "stdout: ::endgroup::",
                "stdout: run-level",
                "stdout: ::group::b (notify)",
                "stdout:   [b] sending: 1 items, 0s elapsed",
                "stdout: hello",
                "stdout: ::endgroup::",
            ]
        );
    }

    #[test]
    fn outside_github_actions_step_lines_are_plain_lines() {
        let (progress, lines) = capturing(Mode::Lines, Duration::ZERO);
        assert!(!progress.is_github_actions());
        progress.step_started("a", "shell");
        progress.step_line("a", "▶ a (shell)");
        progress.step_message("a", "hello");
        progress.step_finished("a", "shell", "✓ a");
        progress.finish();
        assert_eq!(
            taken(&lines),
            ["stderr: ▶ a (shell)", "stdout: hello", "stderr: ✓ a"]
        );
    }

    #[test]
    fn bar_is_cheap_to_share_across_threads() {
        fn assert_handle<T: Clone + Send + Sync + 'static>() {}
        assert_handle::<Bar>();
        assert_handle::<Progress>();
    }
}
