//! Live lines grouped per step for GitHub Actions' log (`::group::` …
//! `::endgroup::`). GitHub's groups cannot nest or interleave, but steps run
//! concurrently (`--parallel-steps`), so this decides, line by line, what
//! is written now and what waits:
//!
//! - One group is open at a time: that of the first step to start while
//!   none was open. Its lines are written as they come.
//! - A step that starts while another's group is open waits: its lines are
//!   held, in order, and written when its own group opens.
//! - When the open group's step finishes (its final status line is the
//!   group's last line), the group closes; held run-level lines are written,
//!   then every waiting step that has finished meanwhile gets its whole
//!   group (in the order they started), then the first waiting step still
//!   running opens its group, its held lines first.
//! - A line that belongs to no step (or to one that has not started, or
//!   has finished) is a run-level line: written outside any group, so held
//!   while a group is open.
//! - [`Groups::flush`] (the run is over, or was abandoned) closes the open
//!   group and writes everything still held, each step in its own group.
//!
//! So the log is deterministic for a given order of events, each step's
//! lines are together, and no line is lost; the price is that a step
//! running beside a long one shows its lines only when that one ends.
//!
//! This type only decides; [`super::Progress`] writes what it returns, in
//! order, under one lock.

use crate::report::github::{endgroup, group};

/// Which step's group is open and what waits.
#[derive(Debug, Default)]
pub(super) struct Groups {
    /// The step whose group is open in the log, and its title.
    open: Option<String>,
    /// Steps started while another's group was open, in the order they started.
    waiting: Vec<Held>,
    /// Run-level lines that came while a group was open.
    run_lines: Vec<String>,
}

/// A step whose group has not opened yet.
#[derive(Debug)]
struct Held {
    step: String,
    title: String,
    lines: Vec<String>,
    /// Its final line is among `lines`: the group can be written whole.
    finished: bool,
}

impl Groups {
    /// `step` started; `title` names its group (`database (postgres.clone)`).
    pub(super) fn begin(&mut self, step: &str, title: &str) -> Vec<String> {
        if self.open.as_deref() == Some(step) || self.held(step).is_some() {
            return Vec::new();
        }
        if self.open.is_none() {
            self.open = Some(step.to_string());
            return vec![group(title)];
        }
        self.waiting.push(Held {
            step: step.to_string(),
            title: title.to_string(),
            lines: Vec::new(),
            finished: false,
        });
        Vec::new()
    }

    /// A line of `step`, or a run-level line when `step` is `None` or has
    /// no group in the making.
    pub(super) fn line(&mut self, step: Option<&str>, line: &str) -> Vec<String> {
        if let Some(step) = step {
            if self.open.as_deref() == Some(step) {
                return vec![line.to_string()];
            }
            if let Some(held) = self.held(step) {
                held.lines.push(line.to_string());
                return Vec::new();
            }
        }
        if self.open.is_none() {
            return vec![line.to_string()];
        }
        self.run_lines.push(line.to_string());
        Vec::new()
    }

    /// `step` finished with `line` (its status line), which ends its group.
    /// A step that never began (a plan that failed) gets a group of its own.
    pub(super) fn end(&mut self, step: &str, title: &str, line: &str) -> Vec<String> {
        let mut out = self.begin(step, title);
        if self.open.as_deref() == Some(step) {
            out.push(line.to_string());
            out.push(endgroup());
            self.open = None;
            out.extend(self.promote());
        } else if let Some(held) = self.held(step) {
            held.lines.push(line.to_string());
            held.finished = true;
        }
        out
    }

    /// Everything still open or held, written out: the run is over.
    pub(super) fn flush(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        if self.open.take().is_some() {
            out.push(endgroup());
        }
        out.append(&mut self.run_lines);
        for held in self.waiting.drain(..) {
            out.push(group(&held.title));
            out.extend(held.lines);
            out.push(endgroup());
        }
        out
    }

    /// No group is open: held run-level lines, then finished waiting steps
    /// whole, then the first one still running opens its group.
    fn promote(&mut self) -> Vec<String> {
        let mut out = std::mem::take(&mut self.run_lines);
        let (finished, running): (Vec<Held>, Vec<Held>) =
            self.waiting.drain(..).partition(|h| h.finished);
        for held in finished {
            out.push(group(&held.title));
            out.extend(held.lines);
            out.push(endgroup());
        }
        let mut running = running.into_iter();
        if let Some(next) = running.next() {
            out.push(group(&next.title));
            out.extend(next.lines);
            self.open = Some(next.step);
        }
        self.waiting = running.collect();
        out
    }

    fn held(&mut self, step: &str) -> Option<&mut Held> {
        self.waiting.iter_mut().find(|h| h.step == step)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replays events, collecting what is written.
    fn replay(events: &[(&str, Option<&str>, &str)]) -> Vec<String> {
        let mut groups = Groups::default();
        let mut out = Vec::new();
        for &(event, step, text) in events {
            let title = step.map(|s| format!("{s} (shell)")).unwrap_or_default();
            out.extend(match (event, step) {
                ("begin", Some(step)) => groups.begin(step, &title),
                ("line", step) => groups.line(step, text),
                ("end", Some(step)) => groups.end(step, &title, text),
                ("flush", None) => groups.flush(),
                other => panic!("bad event {other:?}"),
            });
        }
        out
    }

    #[test]
    fn one_step_at_a_time_writes_as_it_goes() {
        let out = replay(&[
            ("line", None, "before"),
            ("begin", Some("a"), ""),
            ("line", Some("a"), "a1"),
            ("end", Some("a"), "✓ a"),
            ("line", None, "between"),
            ("begin", Some("b"), ""),
            ("end", Some("b"), "✓ b"),
            ("flush", None, ""),
        ]);
        assert_eq!(
            out,
            [
                "before",
                "::group::a (shell)",
                "a1",
                "✓ a",
                "::endgroup::",
                "between",
                "::group::b (shell)",
                "✓ b",
                "::endgroup::",
            ]
        );
    }

    #[test]
    fn concurrent_steps_wait_for_the_open_group_and_finished_ones_go_first() {
        let out = replay(&[
            ("begin", Some("a"), ""),
            ("begin", Some("b"), ""),
            ("begin", Some("c"), ""),
            ("line", Some("b"), "b1"),
            ("line", Some("a"), "a1"),
            ("line", Some("c"), "c1"),
            ("end", Some("c"), "✓ c"),
            ("line", None, "run-level"),
            ("end", Some("a"), "✓ a"),
            ("line", Some("b"), "b2"),
            ("end", Some("b"), "✓ b"),
        ]);
        assert_eq!(
            out,
            [
                "::group::a (shell)",
                "a1",
                "✓ a",
                "::endgroup::",
                "run-level",
                "::group::c (shell)",
                "c1",
                "✓ c",
                "::endgroup::",
                "::group::b (shell)",
                "b1",
                "b2",
                "✓ b",
                "::endgroup::",
            ]
        );
    }

    #[test]
    fn a_step_that_never_began_gets_its_own_group_and_flush_closes_everything() {
        let out = replay(&[
            ("end", Some("plan"), "✗ plan failed"),
            ("begin", Some("a"), ""),
            ("begin", Some("b"), ""),
            ("line", Some("b"), "b1"),
            ("line", Some("gone"), "a line of no running step"),
            ("flush", None, ""),
            ("line", None, "after"),
        ]);
        assert_eq!(
            out,
            [
                "::group::plan (shell)",
                "✗ plan failed",
                "::endgroup::",
                "::group::a (shell)",
                "::endgroup::",
                "a line of no running step",
                "::group::b (shell)",
                "b1",
                "::endgroup::",
                "after",
            ]
        );
    }
}
