//! Located validation problems: each one a stable code, a message, a label on
//! the offending YAML text and an optional help line, rendered by `miette`.
//! Validation pushes into a [`Diagnostics`] list and keeps going, so the user
//! sees every problem in one pass.

use std::sync::Arc;

use miette::{Diagnostic as MietteDiagnostic, LabeledSpan, NamedSource, Severity};

use super::yaml::Span;

/// One problem found in a file.
#[derive(Debug, Clone)]
pub struct Problem {
    /// Stable, greppable code such as `flightpath::needs::unknown`.
    pub code: &'static str,
    pub message: String,
    pub span: Span,
    pub label: String,
    pub help: Option<String>,
}

impl Problem {
    pub fn new(
        code: &'static str,
        message: impl Into<String>,
        span: Span,
        label: impl Into<String>,
    ) -> Self {
        Problem {
            code,
            message: message.into(),
            span,
            label: label.into(),
            help: None,
        }
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Sets the help line unless one is already set.
    pub fn help_if_none(self, help: impl Into<String>) -> Self {
        if self.help.is_some() {
            self
        } else {
            self.help(help)
        }
    }

    /// Adds "did you mean `x`?" when one of `candidates` is close to `name`.
    pub fn suggest<'a>(self, name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Self {
        match did_you_mean(name, candidates) {
            Some(best) => self.help(format!("did you mean `{best}`?")),
            None => self,
        }
    }
}

/// The closest candidate to `name`, if any is close enough to be a typo.
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(name, c), c))
        .filter(|(distance, c)| *distance <= (name.len().max(c.len()) / 3).max(1) && *distance > 0)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, c)| c)
}

/// Problems found in one source file.
#[derive(Debug, Default)]
pub struct Diagnostics {
    pub problems: Vec<Problem>,
}

impl Diagnostics {
    pub fn push(&mut self, problem: Problem) {
        self.problems.push(problem);
    }

    pub fn is_empty(&self) -> bool {
        self.problems.is_empty()
    }
}

/// A problem bound to its file, ready for `miette` to render.
#[derive(Debug)]
pub struct Located {
    pub problem: Problem,
    pub source: Arc<NamedSource<String>>,
}

impl std::fmt::Display for Located {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.problem.message)
    }
}

impl std::error::Error for Located {}

impl MietteDiagnostic for Located {
    // The code goes into the header line (`error[code]: message`), written
    // by `render`, not into miette's own code line.
    fn severity(&self) -> Option<Severity> {
        Some(Severity::Error)
    }
    fn help<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        self.problem
            .help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn std::fmt::Display>)
    }
    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Some(self.source.as_ref())
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        Some(Box::new(std::iter::once(LabeledSpan::new_with_span(
            Some(self.problem.label.clone()),
            self.problem.span,
        ))))
    }
}

/// Renders problems as text: `error[code]: message`, the located snippet,
/// the help line. Colour only when `color` is set.
pub fn render(problems: &[Located], color: bool) -> String {
    let theme = if color {
        miette::GraphicalTheme::unicode()
    } else {
        miette::GraphicalTheme::unicode_nocolor()
    };
    let handler = miette::GraphicalReportHandler::new_themed(theme)
        .with_width(100)
        .with_links(false);
    let mut out = String::new();
    for located in problems {
        let masked = mask(located);
        let located = masked.as_ref().unwrap_or(located);
        let clipped = clip(located);
        let located = clipped.as_ref().unwrap_or(located);
        let header = format!(
            "error[{}]: {}",
            located.problem.code, located.problem.message
        );
        let mut snippet = String::new();
        if handler.render_report(&mut snippet, located).is_err() {
            snippet.clear();
        }
        // miette starts with `  × message` (wrapped onto `  │ …` lines
        // when long); our header replaces those lines.
        let body = snippet
            .trim_start_matches('\n')
            .split_once('\n')
            .map_or("", |(_, rest)| rest);
        let mut body = body;
        while let Some(rest) = body.strip_prefix("  │ ") {
            body = rest.split_once('\n').map_or("", |(_, rest)| rest);
        }
        out.push_str(&header);
        out.push('\n');
        out.push_str(body.trim_end());
        out.push_str("\n\n");
    }
    out
}

/// The most of one line a snippet quotes: a file with a very long line (a
/// minified blob, a binary file read as text) shows a window of it, not
/// all of it.
pub const MAX_QUOTED_CHARS: usize = 80;

/// `located` with every line of its file longer than [`MAX_QUOTED_CHARS`]
/// cut short (the problem's own line to a window around the problem), or
/// `None` when no line is that long.
fn clip(located: &Located) -> Option<Located> {
    let source = located.source.inner();
    if source.lines().all(|line| line.len() <= MAX_QUOTED_CHARS) {
        return None;
    }
    let span = located.problem.span;
    let mut text = String::with_capacity(source.len().min(1 << 20));
    let mut new_span = None;
    let mut start = 0;
    for line in source.split_inclusive('\n') {
        let body = line.strip_suffix('\n').unwrap_or(line);
        let end = start + body.len();
        let here = (start..=end).contains(&span.offset) && new_span.is_none();
        if body.chars().count() <= MAX_QUOTED_CHARS {
            if here {
                new_span = Some(Span {
                    offset: text.len() + (span.offset - start),
                    len: span.len.min(end - span.offset),
                });
            }
            text.push_str(body);
        } else {
            let at = if here { span.offset - start } else { 0 };
            let (window, shift) = window(body, at);
            if here {
                let prefix = if shift > 0 { "…".len() } else { 0 };
                let within = at - shift;
                new_span = Some(Span {
                    offset: text.len() + prefix + within,
                    len: span.len.min(window.len() - within).max(1),
                });
            }
            if shift > 0 {
                text.push('…');
            }
            text.push_str(window);
            if shift + window.len() < body.len() {
                text.push('…');
            }
        }
        if line.ends_with('\n') {
            text.push('\n');
        }
        start += line.len();
    }
    let span = new_span.unwrap_or(Span {
        offset: text.len(),
        len: 0,
    });
    Some(Located {
        problem: Problem {
            span,
            ..located.problem.clone()
        },
        source: Arc::new(NamedSource::new(located.source.name(), text)),
    })
}

/// `located` with the secrets its snippet would quote (URL passwords,
/// `password=` values) replaced by as many `*` as they have bytes, so every
/// span still points at the same text; `None` when there are none.
fn mask(located: &Located) -> Option<Located> {
    let source = located.source.inner();
    let mut text = String::with_capacity(source.len());
    let mut changed = false;
    for line in source.split_inclusive('\n') {
        let masked = crate::redact::mask_secrets(line);
        if masked == line {
            text.push_str(line);
            continue;
        }
        changed = true;
        // What changed lies between the common start and end.
        let start = line
            .char_indices()
            .zip(masked.chars())
            .find(|((_, a), b)| a != b)
            .map_or(0, |((i, _), _)| i);
        let common_end = line
            .bytes()
            .rev()
            .zip(masked.bytes().rev())
            .take_while(|(a, b)| a == b)
            .count();
        let end = (line.len() - common_end).max(start);
        let end = (end..=line.len())
            .find(|&i| line.is_char_boundary(i))
            .unwrap_or(line.len());
        text.push_str(&line[..start]);
        text.push_str(&"*".repeat(end - start));
        text.push_str(&line[end..]);
    }
    changed.then(|| Located {
        problem: located.problem.clone(),
        source: Arc::new(NamedSource::new(located.source.name(), text)),
    })
}

/// At most [`MAX_QUOTED_CHARS`] characters of `line` around byte `at`
/// (from a little before it), and the byte where they start.
fn window(line: &str, at: usize) -> (&str, usize) {
    let boundaries: Vec<usize> = line.char_indices().map(|(i, _)| i).collect();
    let index = boundaries.partition_point(|&b| b < at);
    // A little context before the problem, and a full window when the
    // line ends soon after it.
    let first = index
        .saturating_sub(MAX_QUOTED_CHARS / 4)
        .min(boundaries.len().saturating_sub(MAX_QUOTED_CHARS));
    let begin = boundaries[first.min(boundaries.len() - 1)];
    let end = boundaries
        .get(first + MAX_QUOTED_CHARS)
        .copied()
        .unwrap_or(line.len());
    (&line[begin..end], begin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        let names = ["database", "backup", "media"];
        assert_eq!(did_you_mean("databse", names), Some("database"));
        assert_eq!(did_you_mean("bakup", names), Some("backup"));
        assert_eq!(did_you_mean("smoke", names), None);
    }

    #[test]
    fn long_lines_are_quoted_as_a_window_around_the_problem() {
        let long = format!("key: {}BAD{}\n", "a".repeat(500), "b".repeat(500));
        let source = format!("name: x\n{long}other: {}\n", "c".repeat(200));
        let at = source.find("BAD").unwrap();
        let located = Located {
            problem: Problem::new("test::code", "bad", Span { offset: at, len: 3 }, "this"),
            source: Arc::new(NamedSource::new("f.yaml", source)),
        };
        let rendered = render(&[located], false);
        for line in rendered.lines() {
            assert!(line.chars().count() < MAX_QUOTED_CHARS + 20, "{line}");
        }
        assert!(rendered.contains("BAD"), "{rendered}");
        assert!(rendered.contains("2 │ …aaaa"), "{rendered}");
    }
}
