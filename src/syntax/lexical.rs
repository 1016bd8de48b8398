//! Where in a shell command or SQL text an interpolation lands.
//!
//! A quoted value (see [`super::template::Quoting`]) is one whole shell word
//! or one whole SQL literal, which is only safe where a word or a literal may
//! start: outside quotes, comments, here-documents and dollar-quoted bodies.
//! [`place`] scans the text written so far (literal text and the values
//! already put in, which end where they began) and says whether the next
//! value lands in such a place, or names the construct it would be inside.
//! The scanners are deliberately conservative: anything they do not follow
//! is treated as "inside", and a value there is refused, never guessed at.

use super::template::Quoting;

/// A construct a quoted value may not be put inside.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inside {
    SingleQuotes,
    DoubleQuotes,
    Backquotes,
    Comment,
    HereDocument,
    SqlString,
    QuotedIdentifier,
    DollarQuoted,
}

impl Inside {
    pub fn describe(self) -> &'static str {
        match self {
            Inside::SingleQuotes => "inside single quotes",
            Inside::DoubleQuotes => "inside double quotes",
            Inside::Backquotes => "inside backquotes",
            Inside::Comment => "inside a comment",
            Inside::HereDocument => "after a here-document (`<<`)",
            Inside::SqlString => "inside a SQL string literal",
            Inside::QuotedIdentifier => "inside a quoted identifier",
            Inside::DollarQuoted => {
                "inside a dollar-quoted body (`$$ … $$`), where it would be code"
            }
        }
    }
}

/// `Ok(())` when a value quoted for `quoting` may follow `before`.
pub fn place(quoting: Quoting, before: &str) -> Result<(), Inside> {
    match quoting {
        Quoting::Plain => Ok(()),
        Quoting::ShellWord => shell(before),
        Quoting::SqlLiteral => sql(before),
    }
}

fn shell(text: &str) -> Result<(), Inside> {
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    let mut state: Option<Inside> = None;
    let mut here_document = false;
    while i < chars.len() {
        let c = chars[i];
        match state {
            None => match c {
                '\\' => i += 1,
                '\'' => state = Some(Inside::SingleQuotes),
                '"' => state = Some(Inside::DoubleQuotes),
                '`' => state = Some(Inside::Backquotes),
                '#' if i == 0 || " \t\n;&|()<>".contains(chars[i - 1]) => {
                    state = Some(Inside::Comment)
                }
                '<' if chars.get(i + 1) == Some(&'<') => {
                    if chars.get(i + 2) == Some(&'<') {
                        i += 2; // a here-string: one word follows
                    } else {
                        here_document = true;
                    }
                }
                _ => {}
            },
            Some(Inside::SingleQuotes) if c == '\'' => state = None,
            Some(Inside::DoubleQuotes) | Some(Inside::Backquotes) if c == '\\' => i += 1,
            Some(Inside::DoubleQuotes) if c == '"' => state = None,
            Some(Inside::Backquotes) if c == '`' => state = None,
            Some(Inside::Comment) if c == '\n' => state = None,
            Some(_) => {}
        }
        i += 1;
    }
    match state {
        Some(inside) => Err(inside),
        None if here_document => Err(Inside::HereDocument),
        None => Ok(()),
    }
}

fn sql(text: &str) -> Result<(), Inside> {
    let chars: Vec<char> = text.chars().collect();
    let word = |c: char| c.is_alphanumeric() || c == '_' || c == '$';
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let start = i;
        match c {
            '\'' => {
                let escapes = start > 0
                    && matches!(chars[start - 1], 'e' | 'E')
                    && (start < 2 || !word(chars[start - 2]));
                i = sql_string(&chars, i + 1, escapes).ok_or(Inside::SqlString)?;
            }
            '"' => {
                i = find(&chars, i + 1, &['"']).ok_or(Inside::QuotedIdentifier)? + 1;
            }
            '-' if next == Some('-') => {
                i = find(&chars, i, &['\n']).ok_or(Inside::Comment)? + 1;
            }
            '/' if next == Some('*') => i = block_comment(&chars, i).ok_or(Inside::Comment)?,
            '$' if start == 0 || !word(chars[start - 1]) => match dollar_tag(&chars, i) {
                Some(tag) => {
                    let body = i + tag.len();
                    i = find_seq(&chars, body, &tag).ok_or(Inside::DollarQuoted)? + tag.len();
                }
                None => i += 1,
            },
            _ => i += 1,
        }
    }
    Ok(())
}

/// The index after the closing quote of a string whose body starts at `i`.
fn sql_string(chars: &[char], mut i: usize, escapes: bool) -> Option<usize> {
    while i < chars.len() {
        match chars[i] {
            '\\' if escapes => i += 2,
            '\'' if chars.get(i + 1) == Some(&'\'') => i += 2,
            '\'' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// The index after a (nesting) block comment starting at `i`.
fn block_comment(chars: &[char], mut i: usize) -> Option<usize> {
    let mut depth = 0;
    while i < chars.len() {
        match (chars[i], chars.get(i + 1)) {
            ('/', Some('*')) => {
                depth += 1;
                i += 2;
            }
            ('*', Some('/')) => {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => i += 1,
        }
    }
    None
}

/// `$tag$` (or `$$`) starting at `i`, if one does; `$1` is a parameter.
fn dollar_tag(chars: &[char], i: usize) -> Option<Vec<char>> {
    let mut j = i + 1;
    if chars.get(j).is_some_and(|c| c.is_ascii_digit()) {
        return None;
    }
    while chars
        .get(j)
        .is_some_and(|c| c.is_alphanumeric() || *c == '_')
    {
        j += 1;
    }
    (chars.get(j) == Some(&'$')).then(|| chars[i..=j].to_vec())
}

fn find(chars: &[char], from: usize, any: &[char]) -> Option<usize> {
    (from..chars.len()).find(|&k| any.contains(&chars[k]))
}

fn find_seq(chars: &[char], from: usize, seq: &[char]) -> Option<usize> {
    (from..chars.len()).find(|&k| chars[k..].starts_with(seq))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_places() {
        let ok = |t: &str| assert_eq!(shell(t), Ok(()), "{t}");
        ok("pg_dump ");
        ok("echo 'a' \"b\" `c` x#y ");
        ok("echo \\' ");
        ok("# comment\necho ");
        ok("cat <<< ");
        assert_eq!(shell("pg_dump \""), Err(Inside::DoubleQuotes));
        assert_eq!(shell("echo 'it"), Err(Inside::SingleQuotes));
        assert_eq!(shell("echo \"a\\\" "), Err(Inside::DoubleQuotes));
        assert_eq!(shell("x=`echo "), Err(Inside::Backquotes));
        assert_eq!(shell("true # "), Err(Inside::Comment));
        assert_eq!(shell("cat <<EOF\n"), Err(Inside::HereDocument));
    }

    #[test]
    fn sql_places() {
        let ok = |t: &str| assert_eq!(sql(t), Ok(()), "{t}");
        ok("SELECT ");
        ok("SELECT 'it''s', E'\\'', \"a\"\"b\", $1, a$b, $$x$$, $t$ $$ $t$ -- c\n/* a /* b */ */ ");
        assert_eq!(sql("WHERE h = '"), Err(Inside::SqlString));
        assert_eq!(sql("WHERE h = E'\\'"), Err(Inside::SqlString));
        assert_eq!(sql("SELECT \"t"), Err(Inside::QuotedIdentifier));
        assert_eq!(sql("DO $$ BEGIN "), Err(Inside::DollarQuoted));
        assert_eq!(sql("SELECT 1 -- "), Err(Inside::Comment));
        assert_eq!(sql("/* a /* b */ "), Err(Inside::Comment));
    }
}
