//! Site-URL rewrites (`rewrite:` of `postgres.clone`): production's hosts
//! and URLs replaced by staging's in text and inside JSON string values, in
//! flight.
//!
//! At each position the longest match wins, whatever the order the rules
//! were written in, so `www.example.org` and `example.org` rules do not
//! fight. A host is only replaced as a whole host: not as the tail of a
//! longer one (`cdn.example.org`), not as the head of another
//! (`example.organic`), and not as the domain of an e-mail address
//! (`info@example.org`, `mailto:` links): those are addresses, not URLs, and
//! stay unless a rule says otherwise.

use aho_corasick::{AhoCorasick, MatchKind};
use regex::Regex;

/// Compiled `replace:` rules.
#[derive(Debug, Clone)]
pub struct Rewriter {
    literals: Option<AhoCorasick>,
    /// Replacement of each literal, by pattern index.
    literal_to: Vec<String>,
    literal_from: Vec<String>,
    regexes: Vec<(Regex, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum RewriteError {
    #[error("`{from}` is not a valid regular expression: {error}")]
    Regex { from: String, error: regex::Error },
    #[error("an empty string cannot be replaced")]
    Empty,
    #[error("building the matcher: {0}")]
    Build(#[from] aho_corasick::BuildError),
}

/// One match found in a text.
struct Hit {
    start: usize,
    end: usize,
    replacement: String,
}

impl Rewriter {
    /// `rules` are `(from, to)`; a `from` starting with `regex:` is a regular
    /// expression whose replacement may use `$1`.
    pub fn new(rules: &[(String, String)]) -> Result<Rewriter, RewriteError> {
        let mut literal_from = Vec::new();
        let mut literal_to = Vec::new();
        let mut regexes = Vec::new();
        for (from, to) in rules {
            if let Some(pattern) = from.strip_prefix("regex:") {
                let re = Regex::new(pattern).map_err(|error| RewriteError::Regex {
                    from: from.clone(),
                    error,
                })?;
                regexes.push((re, to.clone()));
            } else if from.is_empty() {
                return Err(RewriteError::Empty);
            } else {
                literal_from.push(from.clone());
                literal_to.push(to.clone());
            }
        }
        let literals = if literal_from.is_empty() {
            None
        } else {
            Some(
                AhoCorasick::builder()
                    .match_kind(MatchKind::LeftmostLongest)
                    .build(&literal_from)?,
            )
        };
        Ok(Rewriter {
            literals,
            literal_to,
            literal_from,
            regexes,
        })
    }

    /// False when `bytes` certainly holds nothing to rewrite (a quick test
    /// before decoding a value).
    pub fn might_match(&self, bytes: &[u8]) -> bool {
        !self.regexes.is_empty() || self.literals.as_ref().is_some_and(|ac| ac.is_match(bytes))
    }

    /// The rewritten text and the number of replacements; `None` when
    /// nothing matched (the caller keeps the original bytes).
    pub fn rewrite(&self, text: &str) -> Option<(String, usize)> {
        let mut out = String::new();
        let mut copied = 0;
        let mut at = 0;
        let mut count = 0;
        while at <= text.len() {
            let Some(hit) = self.next_hit(text, at) else {
                break;
            };
            out.push_str(&text[copied..hit.start]);
            out.push_str(&hit.replacement);
            copied = hit.end;
            count += 1;
            at = if hit.end > hit.start {
                hit.end
            } else {
                // An empty regex match: step over one character.
                match text[hit.end..].chars().next() {
                    Some(c) => hit.end + c.len_utf8(),
                    None => break,
                }
            };
        }
        if count == 0 {
            return None;
        }
        out.push_str(&text[copied..]);
        Some((out, count))
    }

    /// The leftmost acceptable match at or after `at`; the longest at a tie.
    fn next_hit(&self, text: &str, at: usize) -> Option<Hit> {
        let mut best: Option<Hit> = None;
        let consider = |hit: Hit, best: &mut Option<Hit>| {
            let better = match best {
                None => true,
                Some(b) => hit.start < b.start || (hit.start == b.start && hit.end > b.end),
            };
            if better {
                *best = Some(hit);
            }
        };
        if let Some(ac) = &self.literals {
            let mut from = at;
            while from <= text.len() {
                let input = aho_corasick::Input::new(text).range(from..);
                let Some(m) = ac.find(input) else { break };
                let pattern = &self.literal_from[m.pattern().as_usize()];
                if whole_host(text, m.start(), m.end(), pattern) {
                    consider(
                        Hit {
                            start: m.start(),
                            end: m.end(),
                            replacement: self.literal_to[m.pattern().as_usize()].clone(),
                        },
                        &mut best,
                    );
                    break;
                }
                from = m.start() + text[m.start()..].chars().next().map_or(1, char::len_utf8);
            }
        }
        for (re, to) in &self.regexes {
            let mut from = at;
            while from <= text.len() {
                let Some(caps) = re.captures_at(text, from) else {
                    break;
                };
                let m = caps.get(0).expect("group 0 always matches");
                if !after_at_sign(text, m.start()) {
                    let mut replacement = String::new();
                    caps.expand(to, &mut replacement);
                    consider(
                        Hit {
                            start: m.start(),
                            end: m.end(),
                            replacement,
                        },
                        &mut best,
                    );
                    break;
                }
                from = m.start() + text[m.start()..].chars().next().map_or(1, char::len_utf8);
            }
        }
        best
    }
}

/// Whether `text[start..end]` (a match of `pattern`) stands as a whole host
/// or URL: not glued to a longer name on either side, not an e-mail domain.
fn whole_host(text: &str, start: usize, end: usize, pattern: &str) -> bool {
    let bytes = text.as_bytes();
    let name_char = |c: u8| c.is_ascii_alphanumeric() || c == b'-' || c == b'_';
    if pattern.as_bytes().first().copied().is_some_and(name_char) && start > 0 {
        let before = bytes[start - 1];
        if name_char(before) || before == b'.' || before == b'@' {
            return false;
        }
        // `%40` is a URL-encoded `@`.
        if text[..start].to_ascii_lowercase().ends_with("%40") {
            return false;
        }
    }
    if pattern.as_bytes().last().copied().is_some_and(name_char) {
        match bytes.get(end) {
            Some(&c) if name_char(c) => return false,
            // `example.org.uk`: a longer host, not this one.
            Some(b'.') if bytes.get(end + 1).copied().is_some_and(name_char) => return false,
            _ => {}
        }
    }
    true
}

fn after_at_sign(text: &str, start: usize) -> bool {
    start > 0
        && (text.as_bytes()[start - 1] == b'@'
            || text[..start].to_ascii_lowercase().ends_with("%40"))
}

/// Rewrites every string inside a JSON value (keys are left alone, so the
/// document keeps its shape); the number of replacements.
pub fn rewrite_json(rewriter: &Rewriter, value: &mut serde_json::Value) -> usize {
    match value {
        serde_json::Value::String(s) => match rewriter.rewrite(s) {
            Some((new, n)) => {
                *s = new;
                n
            }
            None => 0,
        },
        serde_json::Value::Array(items) => {
            items.iter_mut().map(|v| rewrite_json(rewriter, v)).sum()
        }
        serde_json::Value::Object(map) => map.values_mut().map(|v| rewrite_json(rewriter, v)).sum(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewriter(rules: &[(&str, &str)]) -> Rewriter {
        Rewriter::new(
            &rules
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect::<Vec<_>>(),
        )
        .unwrap()
    }

    fn apply(r: &Rewriter, text: &str) -> String {
        r.rewrite(text).map_or(text.to_string(), |(s, _)| s)
    }

    #[test]
    fn longest_match_wins_whatever_the_order() {
        for rules in [
            [
                ("example.org", "staging.example.net"),
                ("www.example.org", "www.staging.example.net"),
            ],
            [
                ("www.example.org", "www.staging.example.net"),
                ("example.org", "staging.example.net"),
            ],
        ] {
            let r = rewriter(&rules);
            assert_eq!(
                apply(&r, "see https://www.example.org/a and http://example.org/b"),
                "see https://www.staging.example.net/a and http://staging.example.net/b"
            );
        }
    }

    #[test]
    fn email_domains_and_longer_hosts_are_left_alone() {
        let r = rewriter(&[("example.org", "staging.example.net")]);
        for text in [
            "write to info@example.org",
            "<a href=\"mailto:info@example.org\">",
            "?to=info%40example.org",
            "cdn.example.org",
            "example.organic.com",
            "myexample.org",
            "example.org.uk",
        ] {
            assert_eq!(r.rewrite(text), None, "{text}");
        }
        assert_eq!(
            r.rewrite("example.org. Next").unwrap().0,
            "staging.example.net. Next"
        );
        assert_eq!(
            r.rewrite("(example.org)").unwrap(),
            ("(staging.example.net)".into(), 1)
        );
    }

    #[test]
    fn regexes_with_groups_and_counts() {
        let r = rewriter(&[
            (
                "regex:https?://(\\w+)\\.example\\.org",
                "https://$1.staging.example.net",
            ),
            ("example.org", "staging.example.net"),
        ]);
        let (text, n) = r
            .rewrite("http://shop.example.org/x, example.org, https://blog.example.org")
            .unwrap();
        assert_eq!(
            text,
            "https://shop.staging.example.net/x, staging.example.net, https://blog.staging.example.net"
        );
        assert_eq!(n, 3);
        assert!(Rewriter::new(&[("regex:(".into(), "x".into())]).is_err());
    }

    #[test]
    fn json_strings_are_rewritten_and_stay_valid() {
        let r = rewriter(&[("https://www.example.org", "https://staging.example.net")]);
        let mut v: serde_json::Value = serde_json::from_str(
            r#"{"https://www.example.org": 1, "body": [{"type": "link", "value": "https://www.example.org/about\"q"}], "n": 2}"#,
        )
        .unwrap();
        assert_eq!(rewrite_json(&r, &mut v), 1);
        assert_eq!(
            v["body"][0]["value"],
            "https://staging.example.net/about\"q"
        );
        assert!(v.get("https://www.example.org").is_some(), "keys stay");
    }

    #[test]
    fn multibyte_text_is_safe() {
        let r = rewriter(&[("example.org", "e.test"), ("regex:é+", "e")]);
        assert_eq!(apply(&r, "ééé → example.org ✓"), "e → e.test ✓");
    }
}
