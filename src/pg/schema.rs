//! The schema half of a clone: finding a `pg_dump` that can read the source,
//! dumping the pre-data and post-data sections as SQL text, cutting
//! post-data into its entries (indexes, constraints, triggers, …) with the
//! table each belongs to, leaving out the entries that would recreate a
//! foreign server, user mapping or foreign table, and running such SQL on
//! the target.
//!
//! It must not decide when an entry runs (the clone's scheduler does) and
//! must never show a connection URL's password: `pg_dump` gets it through
//! its environment, and its error output is masked.

use std::fmt;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio_postgres::Client;
use tokio_postgres::error::ErrorPosition;

use crate::pg::catalog::qualified;
use crate::pg::connect::describe;
use crate::pg::conninfo::url_after_scheme;
use crate::pg::ident::quote_ident;
use crate::redact::{MASK, mask_secrets, percent_decode_bytes, postgres_credentials};

use lex::{Kind, Token};

/// Where Debian and Ubuntu keep the client of each installed major version.
const VERSIONED_BIN_ROOT: &str = "/usr/lib/postgresql";

/// How many lines of `pg_dump`'s error output an error quotes.
const STDERR_TAIL_LINES: usize = 20;

/// How much of a failing statement an error quotes.
const STATEMENT_PREVIEW_CHARS: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("pg_dump was not found on PATH nor under {VERSIONED_BIN_ROOT}/*/bin; {hint}")]
    PgDumpNotFound { need: u32, hint: String },

    #[error(
        "the newest pg_dump found is version {have}, too old for the source server \
         (PostgreSQL {need}); {hint}"
    )]
    PgDumpTooOld { have: u32, need: u32, hint: String },

    #[error("could not run {}: {source}", .path.display())]
    PgDumpSpawn {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("pg_dump --section={section} failed ({status}){}", quote_tail(.stderr))]
    PgDumpFailed {
        section: Section,
        status: String,
        /// The last lines of its error output, passwords masked.
        stderr: String,
    },

    #[error("pg_dump --section={section} wrote text that is not UTF-8")]
    NotUtf8 { section: Section },

    /// The server's message (see [`describe`]) and, when it can be told,
    /// the start of the statement that failed.
    #[error("{message}{}", .statement.as_ref().map(|s| format!("\nstatement: {s}")).unwrap_or_default())]
    Sql {
        message: String,
        statement: Option<String>,
        /// The server chose this statement as a deadlock's victim: running
        /// it again can succeed.
        deadlock: bool,
    },
}

fn quote_tail(text: &str) -> String {
    if text.trim().is_empty() {
        String::new()
    } else {
        format!(":\n{}", text.trim_end())
    }
}

fn install_hint(need: u32) -> String {
    format!("install postgresql-client-{need} (apt) or put a newer pg_dump on PATH")
}

/// A `pg_dump` executable and its major version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgDump {
    pub path: PathBuf,
    pub major: u32,
}

/// Finds a `pg_dump` whose major version is at least `server_major`: the
/// one on `PATH` and those under `/usr/lib/postgresql/*/bin` (Debian keeps
/// several majors there). Of those new enough, the *closest* to the server
/// wins: a newer pg_dump reads an older server, but PostgreSQL does not
/// promise that its output loads into that older version — which staging
/// usually runs too. On a tie the one on `PATH` wins.
///
/// Debian's `/usr/bin/pg_dump` is a wrapper that chooses a version per call
/// (by cluster configuration, not by the server dumped); it is skipped in
/// favour of the versioned binaries it would run.
pub fn find_pg_dump(server_major: u32) -> Result<PgDump, SchemaError> {
    let found: Vec<PgDump> = candidates()
        .into_iter()
        .filter_map(|path| {
            Some(PgDump {
                major: major_of(&path)?,
                path,
            })
        })
        .collect();
    choose(found, server_major)
}

/// `found` in order of preference on a tie.
fn choose(found: Vec<PgDump>, need: u32) -> Result<PgDump, SchemaError> {
    let newest = found.iter().map(|d| d.major).max();
    let mut fitting: Vec<PgDump> = found.into_iter().filter(|d| d.major >= need).collect();
    // Stable: on equal majors the earlier (PATH) one stays first.
    fitting.sort_by_key(|d| d.major);
    match (fitting.into_iter().next(), newest) {
        (Some(chosen), _) => Ok(chosen),
        (None, Some(have)) => Err(SchemaError::PgDumpTooOld {
            have,
            need,
            hint: install_hint(need),
        }),
        (None, None) => Err(SchemaError::PgDumpNotFound {
            need,
            hint: install_hint(need),
        }),
    }
}

/// `pg_dump` on PATH (unless it is Debian's wrapper), then the versioned
/// binaries, newest first.
fn candidates() -> Vec<PathBuf> {
    let mut out = Vec::new();
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|dir| dir.join("pg_dump"))
        .find(|path| path.is_file());
    if let Some(path) = on_path {
        let real = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
        if real.file_name().is_some_and(|name| name == "pg_dump") {
            out.push(path);
        }
    }
    let mut versioned: Vec<PathBuf> = std::fs::read_dir(VERSIONED_BIN_ROOT)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("bin").join("pg_dump"))
        .filter(|path| path.is_file())
        .collect();
    versioned.sort();
    versioned.reverse();
    out.extend(versioned);
    out
}

/// The major version `pg_dump --version` reports.
fn major_of(path: &Path) -> Option<u32> {
    let output = std::process::Command::new(path)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .ok()?;
    parse_major(&String::from_utf8_lossy(&output.stdout))
}

/// "pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)" → 15.
fn parse_major(version: &str) -> Option<u32> {
    let rest = version.split_once(')')?.1.trim_start();
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

/// A section of a schema dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// Types, functions, tables, sequences, views: what the data needs.
    PreData,
    /// Indexes, constraints, triggers, rules, policies, materialized view
    /// refreshes: what is faster to build once the data is in.
    PostData,
}

impl fmt::Display for Section {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Section::PreData => "pre-data",
            Section::PostData => "post-data",
        })
    }
}

/// Runs `pg_dump --section=<section>` against `url` (inside `snapshot`
/// when given) and returns the SQL, ready for [`apply`]: owners, privileges,
/// publications and subscriptions left out, comments kept, and psql
/// meta-commands (`\restrict …`) removed.
///
/// `--schema-only` is deliberately not passed: with it pg_dump leaves out
/// the `REFRESH MATERIALIZED VIEW` entries of post-data, and materialized
/// views would arrive empty. A section alone never contains table data.
///
/// A password in `url` (user-info, `?password=` or `password=`) is handed
/// to pg_dump as `PGPASSWORD`, not on its command line where other local
/// users could read it. Dropping the
/// returned future kills pg_dump.
pub async fn dump_section(
    pg_dump: &PgDump,
    url: &str,
    section: Section,
    snapshot: Option<&str>,
) -> Result<String, SchemaError> {
    dump_section_excluding(pg_dump, url, section, snapshot, &[]).await
}

/// [`dump_section`] without the tables `exclude` names (qualified like
/// [`crate::pg::catalog::Table::qualified`]): pg_dump leaves out each one
/// and everything that depends on it (comments, column defaults, labels).
/// Each name is passed as a pattern quoted whole, so no character in it is
/// a wildcard.
pub async fn dump_section_excluding(
    pg_dump: &PgDump,
    url: &str,
    section: Section,
    snapshot: Option<&str>,
    exclude: &[String],
) -> Result<String, SchemaError> {
    let (url, password) = without_password(url);
    let mut command = tokio::process::Command::new(&pg_dump.path);
    command
        .arg(format!("--section={section}"))
        .args([
            "--no-owner",
            "--no-acl",
            "--no-publications",
            "--no-subscriptions",
            // Large objects are copied by the clone itself, or not at all
            // (`large_objects:`): never created empty by the schema.
            "--no-blobs",
            "--no-password",
            "--encoding=UTF8",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(id) = snapshot {
        command.arg(format!("--snapshot={id}"));
    }
    for table in exclude {
        command.arg(format!("--exclude-table={table}"));
    }
    command.arg(format!("--dbname={url}"));
    if let Some(password) = &password {
        command.env("PGPASSWORD", password);
    }
    // The connector's default, so a server that never answers fails pg_dump
    // too instead of hanging it; a `connect_timeout` in the URL wins.
    command.env(
        "PGCONNECT_TIMEOUT",
        crate::pg::connect::DEFAULT_CONNECT_TIMEOUT
            .as_secs()
            .to_string(),
    );
    let output = command
        .output()
        .await
        .map_err(|source| SchemaError::PgDumpSpawn {
            path: pg_dump.path.clone(),
            source,
        })?;
    if !output.status.success() {
        let mut stderr = mask_secrets(&tail(
            &String::from_utf8_lossy(&output.stderr),
            STDERR_TAIL_LINES,
        ));
        if let Some(password) = password.filter(|p| !p.is_empty()) {
            stderr = stderr.replace(&password, MASK);
        }
        return Err(SchemaError::PgDumpFailed {
            section,
            status: output.status.to_string(),
            stderr,
        });
    }
    let text = String::from_utf8(output.stdout).map_err(|_| SchemaError::NotUtf8 { section })?;
    Ok(strip_meta_commands(&text))
}

/// `url` for a client program's command line, and its password for the
/// program's environment (`PGPASSWORD`): out of the command line, where
/// other local users could read it, go a `password` parameter and the
/// password of a URL's user-info. Used for pg_dump and pg_restore alike.
pub fn without_password(url: &str) -> (String, Option<String>) {
    let (url, parameter) = crate::pg::connect::take_password(url);
    let (url, userinfo) = split_password(&url);
    (url, parameter.or(userinfo))
}

/// The URL without its password, and the password (percent-decoded),
/// split where the connector splits it ([`postgres_credentials`]), so a raw
/// `?`, `/` or `#` in the password never reaches pg_dump's command line. A
/// `key=value` connection string is returned unchanged.
fn split_password(url: &str) -> (String, Option<String>) {
    let Some(after_scheme) = url_after_scheme(url) else {
        return (url.to_string(), None);
    };
    let scheme_end = url.len() - after_scheme.len();
    let Some(credentials) = postgres_credentials(after_scheme) else {
        return (url.to_string(), None);
    };
    let Some(decoded) = credentials.password.and_then(percent_decode) else {
        return (url.to_string(), None);
    };
    let without = format!(
        "{}{}@{}",
        &url[..scheme_end],
        credentials.user,
        credentials.rest
    );
    (without, Some(decoded))
}

/// `p%40ss` → `p@ss`; `None` when the result is not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    String::from_utf8(percent_decode_bytes(text)).ok()
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// `script` without psql meta-command lines (`\restrict`, `\unrestrict`,
/// `\connect`, …), which the server would reject. Only lines outside
/// strings, quoted names and comments are meta-commands.
pub fn strip_meta_commands(script: &str) -> String {
    let mut out = String::with_capacity(script.len());
    let mut from = 0;
    for token in lex::tokens(script) {
        if token.kind == Kind::Meta {
            out.push_str(&script[from..token.start]);
            from = token.end();
            if script[from..].starts_with('\n') {
                from += 1;
            }
        }
    }
    out.push_str(&script[from..]);
    out
}

/// Runs `sql` (any number of statements) through the simple query
/// protocol. Without explicit transaction control in `sql`, the server
/// runs it as one transaction: on error nothing of it remains. Session
/// settings it makes (`SET search_path`, …) do remain on `client`.
pub async fn apply(client: &Client, sql: &str) -> Result<(), SchemaError> {
    client
        .batch_execute(sql)
        .await
        .map_err(|err| SchemaError::Sql {
            message: describe(&err, Some(sql)),
            statement: failing_statement(&err, sql),
            deadlock: err.code() == Some(&tokio_postgres::error::SqlState::T_R_DEADLOCK_DETECTED),
        })
}

/// The statement the server's error position points into; else, when
/// `sql` holds only one statement, that one. Shortened to one line.
fn failing_statement(err: &tokio_postgres::Error, sql: &str) -> Option<String> {
    let tokens = lex::tokens(sql);
    let statements = lex::statements(&tokens);
    let span = |range: &Range<usize>| tokens[range.start].start..tokens[range.end - 1].end();
    let position = match err.as_db_error().and_then(|db| db.position()) {
        Some(ErrorPosition::Original(at)) => Some(*at as usize),
        _ => None,
    };
    let chosen = match position {
        Some(at) => {
            // A 1-based character position in `sql`.
            let byte = sql
                .char_indices()
                .nth(at.saturating_sub(1))
                .map_or(sql.len(), |(i, _)| i);
            statements.iter().map(span).find(|s| s.contains(&byte))
        }
        None if statements.len() == 1 => statements.first().map(span),
        None => None,
    }?;
    Some(preview(&sql[chosen]))
}

/// Whitespace runs collapsed, cut at [`STATEMENT_PREVIEW_CHARS`].
fn preview(statement: &str) -> String {
    let one_line = statement.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(STATEMENT_PREVIEW_CHARS) {
        Some((cut, _)) => format!("{}…", &one_line[..cut]),
        None => one_line,
    }
}

/// A post-data script cut into entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostData {
    /// Session settings (`SET …`) every entry needs: run them before each
    /// entry, on whichever connection runs it.
    pub preamble: String,
    /// In pg_dump's order, which respects dependencies.
    pub entries: Vec<Entry>,
}

/// One TOC entry of post-data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: EntryKind,
    /// As in the header (`-` for objects outside schemas).
    pub schema: String,
    /// As in the header, e.g. `users users_pkey` for a constraint.
    pub name: String,
    /// The table (or materialized view) the entry belongs to, as
    /// `"schema"."name"` like [`crate::pg::catalog::Table::qualified`], when
    /// its SQL names one.
    pub table: Option<String>,
    /// For a foreign key, the table it references (same form as `table`).
    pub references: Option<String>,
    /// The statement(s), self-contained apart from the preamble: an entry
    /// in a tablespace starts with its own `SET default_tablespace`.
    pub sql: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    Index,
    /// Primary key, unique, exclusion, or a `NOT VALID` check constraint.
    Constraint,
    ForeignKey,
    Trigger,
    /// `ALTER INDEX parent ATTACH PARTITION child`: after both exist.
    IndexAttach,
    /// Anything else, by its header's type: `RULE`, `POLICY`, `COMMENT`,
    /// `MATERIALIZED VIEW DATA`, `ROW SECURITY`, `EVENT TRIGGER`, …
    Other(String),
}

impl EntryKind {
    fn from_header(kind: &str) -> EntryKind {
        match kind {
            "INDEX" => EntryKind::Index,
            "CONSTRAINT" | "CHECK CONSTRAINT" => EntryKind::Constraint,
            "FK CONSTRAINT" => EntryKind::ForeignKey,
            "TRIGGER" => EntryKind::Trigger,
            "INDEX ATTACH" => EntryKind::IndexAttach,
            other => EntryKind::Other(other.to_string()),
        }
    }
}

/// The fields of a `-- Name: …; Type: …; Schema: …; Owner: …[; Tablespace: …]`
/// header. Names are not escaped there; the fixed separators are searched
/// from the left, which only a name containing "; Type: " could fool.
#[derive(Debug, PartialEq, Eq)]
struct Header<'a> {
    name: &'a str,
    kind: &'a str,
    schema: &'a str,
    tablespace: Option<&'a str>,
}

fn parse_header(line: &str) -> Option<Header<'_>> {
    let rest = line.strip_prefix("-- Name: ")?;
    let (name, rest) = rest.split_once("; Type: ")?;
    let (kind, rest) = rest.split_once("; Schema: ")?;
    let (schema, rest) = rest.split_once("; Owner: ").unwrap_or((rest, ""));
    let tablespace = rest.split_once("; Tablespace: ").map(|(_, t)| t);
    Some(Header {
        name,
        kind,
        schema,
        tablespace,
    })
}

/// Cuts a post-data script (as [`dump_section`] returns it) into its
/// entries. pg_dump writes a comment header before each entry; the
/// statements before the first header are the preamble. pg_dump also sets
/// `default_tablespace` between entries, for every entry that follows:
/// those settings are dropped, and an entry in a tablespace (its header
/// says so) carries its own.
pub fn split_post_data(script: &str) -> PostData {
    let script = strip_meta_commands(script);
    let tokens = lex::tokens(&script);
    let headers: Vec<usize> = (0..tokens.len())
        .filter(|&i| is_header(&script, &tokens[i]))
        .collect();
    // Where each header's comment block starts (the `--` line above it).
    let block_start = |h: usize| match h.checked_sub(1).map(|p| &tokens[p]) {
        Some(above) if above.kind == Kind::LineComment && above.text == "--" => h - 1,
        _ => h,
    };

    let preamble_end = headers.first().map_or(tokens.len(), |&h| block_start(h));
    let mut preamble: Vec<&str> = statement_spans(&tokens[..preamble_end])
        .into_iter()
        .map(|span| &script[span])
        .filter(|s| !sets_default_tablespace(s))
        .collect();
    preamble.push("SET default_tablespace = '';");

    let mut entries = Vec::with_capacity(headers.len());
    let mut carried: Vec<&str> = Vec::new();
    for (n, &h) in headers.iter().enumerate() {
        let header = parse_header(tokens[h].text).expect("is_header checked the format");
        let end = headers
            .get(n + 1)
            .map_or(tokens.len(), |&next| block_start(next));
        let body = &tokens[h + 1..end];
        let mut spans = statement_spans(body);
        // Settings after the entry's own statements are for the next entry.
        let own = spans
            .iter()
            .rposition(|span| !is_set(&script[span.clone()]))
            .map_or(0, |last| last + 1);
        let next_carried: Vec<&str> = spans
            .split_off(own)
            .into_iter()
            .map(|span| &script[span])
            .filter(|s| !sets_default_tablespace(s))
            .collect();

        let first_tokens = spans
            .first()
            .map(|first| lex::tokens(&script[first.clone()]))
            .unwrap_or_default();
        let kind = EntryKind::from_header(header.kind);
        let table = table_of(&first_tokens, header.schema);
        let references = (kind == EntryKind::ForeignKey)
            .then(|| references_of(&first_tokens, header.schema))
            .flatten();
        let mut sql = String::new();
        for set in carried.drain(..) {
            sql.push_str(set);
            sql.push('\n');
        }
        if let Some(tablespace) = header.tablespace {
            sql.push_str(&format!(
                "SET default_tablespace = {};\n",
                quote_ident(tablespace)
            ));
        }
        if let (Some(first), Some(last)) = (spans.first(), spans.last()) {
            // From the first statement to the end of the last, as written.
            sql.push_str(&script[first.start..last.end]);
        }
        carried = next_carried;
        entries.push(Entry {
            kind,
            schema: header.schema.to_string(),
            name: header.name.to_string(),
            table,
            references,
            sql,
        });
    }
    PostData {
        preamble: preamble.join("\n"),
        entries,
    }
}

/// Header types of the entries that reach another server.
const FOREIGN_KINDS: &[&str] = &["SERVER", "USER MAPPING", "FOREIGN TABLE"];

/// `script` (a pre-data or post-data section) without the entries that
/// recreate a foreign server, a user mapping or a foreign table, nor those
/// that hang on one (its `COMMENT`, `SECURITY LABEL`, `ACL`, or any
/// statement that alters a foreign table). The foreign-data wrapper, which
/// its extension creates, stays. Returns the script and the entries left
/// out, as `TYPE name`.
pub fn without_foreign(script: &str) -> (String, Vec<String>) {
    let tokens = lex::tokens(script);
    let headers: Vec<usize> = (0..tokens.len())
        .filter(|&i| is_header(script, &tokens[i]))
        .collect();
    let block_start = |h: usize| match h.checked_sub(1).map(|p| &tokens[p]) {
        Some(above) if above.kind == Kind::LineComment && above.text == "--" => tokens[h - 1].start,
        _ => tokens[h].start,
    };
    let mut out = String::with_capacity(script.len());
    let mut dropped = Vec::new();
    let mut from = 0;
    for (n, &h) in headers.iter().enumerate() {
        let header = parse_header(tokens[h].text).expect("is_header checked the format");
        let start = block_start(h);
        let end = headers
            .get(n + 1)
            .map_or(script.len(), |&next| block_start(next));
        let on_foreign = FOREIGN_KINDS.iter().any(|kind| {
            header.kind == *kind
                || header
                    .name
                    .strip_prefix(kind)
                    .is_some_and(|rest| rest.starts_with(' '))
        });
        let alters_foreign = lex::tokens(&script[tokens[h].end()..end])
            .iter()
            .filter(|t| !t.is_comment())
            .take(3)
            .map(|t| t.text.to_ascii_uppercase())
            .collect::<Vec<_>>()
            == ["ALTER", "FOREIGN", "TABLE"];
        if on_foreign || alters_foreign {
            out.push_str(&script[from..start]);
            from = end;
            dropped.push(format!("{} {}", header.kind, header.name));
        }
    }
    out.push_str(&script[from..]);
    (out, dropped)
}

/// `script` (a pre-data or post-data section) with the text of every
/// `COMMENT ON … IS '…'` and `SECURITY LABEL … IS '…'` statement passed
/// through `redact`, which returns the new text or `None` to leave it as it
/// was. Returns the script and how many texts changed.
///
/// pg_dump writes these literals as standard strings (`'…'`, a quote
/// doubled; the script sets `standard_conforming_strings = on`); `E'…'`
/// escapes and dollar quotes are read too, so a hand-edited script cannot
/// slip a text past. A new text is always written as a standard string.
pub fn map_comments(
    script: &str,
    mut redact: impl FnMut(&str) -> Option<String>,
) -> (String, usize) {
    let tokens = lex::tokens(script);
    let mut out = String::with_capacity(script.len());
    let mut from = 0;
    let mut changed = 0;
    for range in lex::statements(&tokens) {
        let statement: Vec<&Token<'_>> = tokens[range].iter().filter(|t| !t.is_comment()).collect();
        let labels = match statement.as_slice() {
            [first, second, ..] => {
                (first.is_word("COMMENT") && second.is_word("ON"))
                    || (first.is_word("SECURITY") && second.is_word("LABEL"))
            }
            _ => false,
        };
        if !labels {
            continue;
        }
        // The text is the literal right after the statement's last `IS`.
        let Some(is) = statement.iter().rposition(|t| t.is_word("IS")) else {
            continue;
        };
        let Some(literal) = statement.get(is + 1).filter(|t| t.kind == Kind::Literal) else {
            continue;
        };
        let Some(new) = redact(&literal_value(literal.text)) else {
            continue;
        };
        out.push_str(&script[from..literal.start]);
        out.push('\'');
        out.push_str(&new.replace('\'', "''"));
        out.push('\'');
        from = literal.end();
        changed += 1;
    }
    out.push_str(&script[from..]);
    (out, changed)
}

/// The value of a string literal token: `'it''s'`, `E'it\'s\n'`,
/// `$x$it's$x$`.
fn literal_value(token: &str) -> String {
    if let Some(after) = token.strip_prefix('$') {
        let tag = after.find('$').map_or(0, |at| at + 2);
        return token
            .get(tag..token.len().saturating_sub(tag))
            .unwrap_or_default()
            .to_owned();
    }
    let escaped = token.starts_with(['E', 'e']);
    let body = token.trim_start_matches(['E', 'e']);
    let body = body
        .strip_prefix('\'')
        .and_then(|b| b.strip_suffix('\''))
        .unwrap_or(body);
    if !escaped {
        return body.replace("''", "'");
    }
    let mut out = String::with_capacity(body.len());
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                // A doubled quote.
                chars.next();
                out.push('\'');
            }
            '\\' => match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('r') => out.push('\r'),
                Some('b') => out.push('\u{8}'),
                Some('f') => out.push('\u{c}'),
                Some(kind @ ('x' | 'u' | 'U' | '0'..='7')) => {
                    let (radix, most) = match kind {
                        'x' => (16, 2),
                        'u' => (16, 4),
                        'U' => (16, 8),
                        _ => (8, 2),
                    };
                    let mut digits: String =
                        (kind.is_digit(8)).then_some(kind).into_iter().collect();
                    while digits.len() < most + usize::from(kind.is_digit(8))
                        && chars.clone().next().is_some_and(|d| d.is_digit(radix))
                    {
                        digits.extend(chars.next());
                    }
                    // Bytes above ASCII from `\x`/octal escapes are kept as
                    // their Latin-1 character: only ASCII matters to a match.
                    match u32::from_str_radix(&digits, radix)
                        .ok()
                        .and_then(char::from_u32)
                    {
                        Some(decoded) => out.push(decoded),
                        None => out.push(kind),
                    }
                }
                Some(other) => out.push(other),
                None => {}
            },
            c => out.push(c),
        }
    }
    out
}

/// A `-- Name: …` comment at the start of a line, outside any statement.
fn is_header(script: &str, token: &Token<'_>) -> bool {
    token.kind == Kind::LineComment
        && (token.start == 0 || script[..token.start].ends_with('\n'))
        && parse_header(token.text).is_some()
}

/// Where each statement among `tokens` is in the text, from its first
/// significant token to its last (comments around it left out).
fn statement_spans(tokens: &[Token<'_>]) -> Vec<Range<usize>> {
    lex::statements(tokens)
        .into_iter()
        .map(|range| tokens[range.start].start..tokens[range.end - 1].end())
        .collect()
}

fn is_set(statement: &str) -> bool {
    lex::tokens(statement)
        .iter()
        .find(|t| !t.is_comment())
        .is_some_and(|t| t.is_word("SET"))
}

fn sets_default_tablespace(statement: &str) -> bool {
    let tokens = lex::tokens(statement);
    let mut words = tokens.iter().filter(|t| !t.is_comment());
    matches!(
        (words.next(), words.next()),
        (Some(set), Some(name)) if set.is_word("SET") && name.is_word("default_tablespace")
    )
}

/// The table a post-data statement belongs to, always quoted; `schema` is
/// the header's, for a name written without one (pg_dump always writes it).
fn table_of(tokens: &[Token<'_>], schema: &str) -> Option<String> {
    let tokens: Vec<Token<'_>> = tokens.iter().copied().filter(|t| !t.is_comment()).collect();
    let mut c = Cursor {
        tokens: &tokens,
        at: 0,
        schema,
    };
    if c.words(&["ALTER", "TABLE"]) {
        c.words(&["IF", "EXISTS"]);
        c.word("ONLY");
        return c.qualified_name();
    }
    if c.word("CREATE") {
        c.words(&["OR", "REPLACE"]);
        c.word("UNIQUE");
        if c.word("INDEX") {
            c.word("CONCURRENTLY");
            c.words(&["IF", "NOT", "EXISTS"]);
            if !c.word("ON") {
                c.skip_name();
                c.word("ON").then_some(())?;
            }
            c.word("ONLY");
            return c.qualified_name();
        }
        if c.word("TRIGGER") || c.words(&["CONSTRAINT", "TRIGGER"]) {
            c.skip_name();
            c.skip_to_word("ON")?;
            return c.qualified_name();
        }
        if c.word("RULE") {
            c.skip_name();
            c.skip_to_word("TO")?;
            return c.qualified_name();
        }
        if c.word("POLICY") {
            c.skip_name();
            c.word("ON").then_some(())?;
            return c.qualified_name();
        }
        if c.word("STATISTICS") {
            c.skip_to_word("FROM")?;
            return c.qualified_name();
        }
        return None;
    }
    if c.words(&["REFRESH", "MATERIALIZED", "VIEW"]) {
        c.word("CONCURRENTLY");
        return c.qualified_name();
    }
    if c.words(&["COMMENT", "ON"])
        && (c.word("CONSTRAINT") || c.word("TRIGGER") || c.word("POLICY") || c.word("RULE"))
    {
        c.skip_name();
        c.word("ON").then_some(())?;
        if c.word("DOMAIN") {
            return None;
        }
        return c.qualified_name();
    }
    None
}

/// The table a foreign key statement references: the name after `REFERENCES`.
fn references_of(tokens: &[Token<'_>], schema: &str) -> Option<String> {
    let tokens: Vec<Token<'_>> = tokens.iter().copied().filter(|t| !t.is_comment()).collect();
    let mut c = Cursor {
        tokens: &tokens,
        at: 0,
        schema,
    };
    c.skip_to_word("REFERENCES")?;
    c.qualified_name()
}

/// Reads names and keywords off a statement's tokens (comments removed).
struct Cursor<'t, 'a> {
    tokens: &'t [Token<'a>],
    at: usize,
    schema: &'t str,
}

impl Cursor<'_, '_> {
    /// Consumes `word` (a keyword, any case) if it comes next.
    fn word(&mut self, word: &str) -> bool {
        let next = self.tokens.get(self.at).is_some_and(|t| t.is_word(word));
        self.at += usize::from(next);
        next
    }

    /// Consumes all of `words` if they all come next, else nothing.
    fn words(&mut self, words: &[&str]) -> bool {
        let all = words
            .iter()
            .enumerate()
            .all(|(i, w)| self.tokens.get(self.at + i).is_some_and(|t| t.is_word(w)));
        if all {
            self.at += words.len();
        }
        all
    }

    /// Moves past the next bare `word` outside parentheses. Quoted names
    /// never match, so a column called "on" cannot fool it.
    fn skip_to_word(&mut self, word: &str) -> Option<()> {
        let mut depth = 0usize;
        while let Some(token) = self.tokens.get(self.at) {
            self.at += 1;
            if token.is_punct('(') {
                depth += 1;
            } else if token.is_punct(')') {
                depth = depth.saturating_sub(1);
            } else if depth == 0 && token.is_word(word) {
                return Some(());
            }
        }
        None
    }

    /// Skips one possibly qualified name.
    fn skip_name(&mut self) {
        let _ = self.qualified_name();
    }

    fn identifier(&mut self) -> Option<String> {
        let token = self.tokens.get(self.at)?;
        let name = identifier_value(token)?;
        self.at += 1;
        Some(name)
    }

    /// `name` or `schema.name`, as `"schema"."name"`.
    fn qualified_name(&mut self) -> Option<String> {
        let first = self.identifier()?;
        if self.tokens.get(self.at).is_some_and(|t| t.is_punct('.')) {
            self.at += 1;
            let second = self.identifier()?;
            return Some(qualified(&first, &second));
        }
        Some(qualified(self.schema, &first))
    }
}

/// The name a bare or quoted identifier token stands for: bare ones fold to
/// lower case (ASCII, as the server does), quoted ones lose their quotes.
fn identifier_value(token: &Token<'_>) -> Option<String> {
    match token.kind {
        Kind::Word => Some(token.text.to_ascii_lowercase()),
        Kind::QuotedIdent => {
            let inner = token.text.strip_prefix('"')?.strip_suffix('"')?;
            Some(inner.replace("\"\"", "\""))
        }
        _ => None,
    }
}

/// A tokenizer for the SQL pg_dump writes: enough to tell names, strings
/// and comments apart and to find where statements end, so nothing inside
/// a string, a quoted name or a function body is mistaken for structure.
mod lex {
    use std::ops::Range;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(super) enum Kind {
        /// A keyword or bare identifier.
        Word,
        /// `"…"`, with `""` for a quote inside.
        QuotedIdent,
        /// `'…'`, `E'…'` or `$tag$…$tag$`.
        Literal,
        /// `--` to the end of the line (the newline not included).
        LineComment,
        /// `/* … */`, nested.
        BlockComment,
        /// A psql meta-command: a line starting with a backslash.
        Meta,
        /// `;`, `.`, `(`, `)` or `,`.
        Punct,
        /// Numbers, operators, parameters.
        Other,
    }

    #[derive(Debug, Clone, Copy)]
    pub(super) struct Token<'a> {
        pub kind: Kind,
        pub text: &'a str,
        /// Byte offset in the tokenized text.
        pub start: usize,
    }

    impl Token<'_> {
        pub fn end(&self) -> usize {
            self.start + self.text.len()
        }

        pub fn is_word(&self, word: &str) -> bool {
            self.kind == Kind::Word && self.text.eq_ignore_ascii_case(word)
        }

        pub fn is_punct(&self, c: char) -> bool {
            self.kind == Kind::Punct && self.text.starts_with(c)
        }

        pub fn is_comment(&self) -> bool {
            matches!(
                self.kind,
                Kind::LineComment | Kind::BlockComment | Kind::Meta
            )
        }
    }

    pub(super) fn tokens(sql: &str) -> Vec<Token<'_>> {
        let mut out = Vec::new();
        let mut pos = 0;
        while let Some(c) = sql[pos..].chars().next() {
            if c.is_whitespace() {
                pos += c.len_utf8();
                continue;
            }
            let rest = &sql[pos..];
            let (kind, len) = if rest.starts_with("--") {
                (Kind::LineComment, line_len(rest))
            } else if rest.starts_with("/*") {
                (Kind::BlockComment, block_comment_len(rest))
            } else if c == '\'' {
                (Kind::Literal, quoted_len(rest, b'\'', false))
            } else if c == '"' {
                (Kind::QuotedIdent, quoted_len(rest, b'"', false))
            } else if c == '$' {
                match dollar_tag_len(rest) {
                    Some(tag) => (Kind::Literal, dollar_quoted_len(rest, tag)),
                    None => (Kind::Other, 1),
                }
            } else if c == '\\' && at_line_start(sql, pos) {
                (Kind::Meta, line_len(rest))
            } else if is_word_start(c) {
                let word = word_len(rest);
                if word == 1 && matches!(c, 'E' | 'e') && rest[1..].starts_with('\'') {
                    (Kind::Literal, 1 + quoted_len(&rest[1..], b'\'', true))
                } else {
                    (Kind::Word, word)
                }
            } else if c.is_ascii_digit() {
                (Kind::Other, word_len(rest))
            } else if matches!(c, ';' | '.' | '(' | ')' | ',') {
                (Kind::Punct, 1)
            } else {
                (Kind::Other, c.len_utf8())
            };
            out.push(Token {
                kind,
                text: &sql[pos..pos + len],
                start: pos,
            });
            pos += len;
        }
        out
    }

    fn is_word_start(c: char) -> bool {
        c.is_ascii_alphabetic() || c == '_' || !c.is_ascii()
    }

    fn is_word_byte(b: u8) -> bool {
        b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || !b.is_ascii()
    }

    /// Up to the newline, not including it.
    fn line_len(rest: &str) -> usize {
        rest.find('\n').unwrap_or(rest.len())
    }

    /// Lengths below are found by scanning bytes: every delimiter is ASCII
    /// and no byte of a multi-byte UTF-8 character is, so each length ends
    /// on a character boundary.
    fn word_len(rest: &str) -> usize {
        rest.bytes()
            .position(|b| !is_word_byte(b))
            .unwrap_or(rest.len())
    }

    fn block_comment_len(rest: &str) -> usize {
        let bytes = rest.as_bytes();
        let mut depth = 0usize;
        let mut i = 0;
        while i + 1 < bytes.len() {
            match (bytes[i], bytes[i + 1]) {
                (b'/', b'*') => {
                    depth += 1;
                    i += 2;
                }
                (b'*', b'/') => {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        return i;
                    }
                }
                _ => i += 1,
            }
        }
        rest.len()
    }

    /// `rest` starts with `quote`; a doubled quote stays inside, and so
    /// does a backslash-escaped character when `backslash` is set.
    fn quoted_len(rest: &str, quote: u8, backslash: bool) -> usize {
        let bytes = rest.as_bytes();
        let mut i = 1;
        while i < bytes.len() {
            if backslash && bytes[i] == b'\\' {
                i += 2;
            } else if bytes[i] == quote {
                if bytes.get(i + 1) == Some(&quote) {
                    i += 2;
                } else {
                    return i + 1;
                }
            } else {
                i += 1;
            }
        }
        rest.len()
    }

    /// The length of `$tag$` at the start of `rest`, if it is one.
    fn dollar_tag_len(rest: &str) -> Option<usize> {
        let bytes = rest.as_bytes();
        for (i, &b) in bytes.iter().enumerate().skip(1) {
            if b == b'$' {
                return Some(i + 1);
            }
            let fits = if i == 1 {
                b.is_ascii_alphabetic() || b == b'_' || !b.is_ascii()
            } else {
                b.is_ascii_alphanumeric() || b == b'_' || !b.is_ascii()
            };
            if !fits {
                return None;
            }
        }
        None
    }

    fn dollar_quoted_len(rest: &str, tag: usize) -> usize {
        rest[tag..]
            .find(&rest[..tag])
            .map_or(rest.len(), |at| tag + at + tag)
    }

    fn at_line_start(sql: &str, pos: usize) -> bool {
        let line = sql[..pos].rfind('\n').map_or(0, |at| at + 1);
        sql[line..pos].chars().all(|c| c == ' ' || c == '\t')
    }

    /// The statements among `tokens`, as index ranges of their first to
    /// their last significant token (the `;` included when there is one).
    /// Comments between statements belong to none. The `;`s inside a
    /// `BEGIN ATOMIC … END` function body do not end the statement.
    pub(super) fn statements(tokens: &[Token<'_>]) -> Vec<Range<usize>> {
        let mut out = Vec::new();
        let mut first: Option<usize> = None;
        let mut last = 0;
        let mut atomic_depth = 0usize;
        for (i, token) in tokens.iter().enumerate() {
            if token.is_comment() {
                continue;
            }
            let start = *first.get_or_insert(i);
            last = i;
            let previous = (i > start).then(|| &tokens[i - 1]);
            let opens_atomic =
                token.is_word("ATOMIC") && previous.is_some_and(|p| p.is_word("BEGIN"));
            if opens_atomic || (atomic_depth > 0 && token.is_word("CASE")) {
                atomic_depth += 1;
            } else if atomic_depth > 0 && token.is_word("END") {
                atomic_depth -= 1;
            } else if atomic_depth == 0 && token.is_punct(';') {
                out.push(start..i + 1);
                first = None;
            }
        }
        if let Some(start) = first {
            out.push(start..last + 1);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `pg_dump --section=post-data` of PostgreSQL 15.18, for a schema with
    /// quoted names, a partitioned table, a tablespace, and a comment whose
    /// text looks like a header and a meta-command.
    const POST_DATA: &str = r#"--
-- PostgreSQL database dump
--

\restrict ulFe5fPMECTaQhFnG64o6REARGomTo2yAbc8Zo70geGcPrpIFiOJwt6W9wFTSrn

-- Dumped from database version 15.18 (Debian 15.18-0+deb12u1)
-- Dumped by pg_dump version 15.18 (Debian 15.18-0+deb12u1)

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

SET default_tablespace = '';

--
-- Name: Order Items Order Items_pkey; Type: CONSTRAINT; Schema: Sales Dept; Owner: -
--

ALTER TABLE ONLY "Sales Dept"."Order Items"
    ADD CONSTRAINT "Order Items_pkey" PRIMARY KEY ("Item ID");


--
-- Name: Order Items order"select unique; Type: CONSTRAINT; Schema: Sales Dept; Owner: -
--

ALTER TABLE ONLY "Sales Dept"."Order Items"
    ADD CONSTRAINT "order""select unique" UNIQUE ("order", "select");


--
-- Name: events events_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.events
    ADD CONSTRAINT events_pkey PRIMARY KEY (id, happened);


--
-- Name: events_default events_default_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.events_default
    ADD CONSTRAINT events_default_pkey PRIMARY KEY (id, happened);


--
-- Name: users users_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.users
    ADD CONSTRAINT users_pkey PRIMARY KEY (id);


--
-- Name: Items by user; Type: INDEX; Schema: Sales Dept; Owner: -
--

CREATE INDEX "Items by user" ON "Sales Dept"."Order Items" USING btree ("user");


--
-- Name: user_counts_age; Type: INDEX; Schema: public; Owner: -
--

CREATE UNIQUE INDEX user_counts_age ON public.user_counts USING btree (age);


--
-- Name: users_adults_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX users_adults_idx ON public.users USING btree (age) WHERE (age >= 18);


SET default_tablespace = fast;

--
-- Name: users_name_idx; Type: INDEX; Schema: public; Owner: -; Tablespace: fast
--

CREATE INDEX users_name_idx ON public.users USING btree (last_name) INCLUDE (first_name);


--
-- Name: INDEX users_name_idx; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON INDEX public.users_name_idx IS 'not a header:
--
-- Name: evil; Type: INDEX; Schema: public; Owner: -
--
\unrestrict nope';


--
-- Name: events_default_pkey; Type: INDEX ATTACH; Schema: public; Owner: -
--

ALTER INDEX public.events_pkey ATTACH PARTITION public.events_default_pkey;


--
-- Name: no_pk no_delete; Type: RULE; Schema: public; Owner: -
--

CREATE RULE no_delete AS
    ON DELETE TO public.no_pk DO INSTEAD NOTHING;


--
-- Name: Order Items Items Touch; Type: TRIGGER; Schema: Sales Dept; Owner: -
--

CREATE TRIGGER "Items Touch" BEFORE UPDATE OF "order" ON "Sales Dept"."Order Items" FOR EACH ROW EXECUTE FUNCTION public.touch();


--
-- Name: Order Items Order Items_user_fkey; Type: FK CONSTRAINT; Schema: Sales Dept; Owner: -
--

ALTER TABLE ONLY "Sales Dept"."Order Items"
    ADD CONSTRAINT "Order Items_user_fkey" FOREIGN KEY ("user") REFERENCES public.users(id);


--
-- Name: users own_rows; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY own_rows ON public.users USING (true);


--
-- Name: users; Type: ROW SECURITY; Schema: public; Owner: -
--

ALTER TABLE public.users ENABLE ROW LEVEL SECURITY;

--
-- Name: user_counts; Type: MATERIALIZED VIEW DATA; Schema: public; Owner: -
--

REFRESH MATERIALIZED VIEW public.user_counts;


--
-- PostgreSQL database dump complete
--

\unrestrict ulFe5fPMECTaQhFnG64o6REARGomTo2yAbc8Zo70geGcPrpIFiOJwt6W9wFTSrn
"#;

    const ITEMS: &str = r#""Sales Dept"."Order Items""#;
    const USERS: &str = r#""public"."users""#;

    fn other(kind: &str) -> EntryKind {
        EntryKind::Other(kind.to_string())
    }

    #[test]
    fn post_data_splits_into_entries_with_their_tables() {
        let post = split_post_data(POST_DATA);
        let got: Vec<(EntryKind, &str, &str, Option<&str>)> = post
            .entries
            .iter()
            .map(|e| {
                (
                    e.kind.clone(),
                    e.schema.as_str(),
                    e.name.as_str(),
                    e.table.as_deref(),
                )
            })
            .collect();
        use EntryKind::*;
        let events = Some(r#""public"."events""#);
        let expected = vec![
            (
                Constraint,
                "Sales Dept",
                "Order Items Order Items_pkey",
                Some(ITEMS),
            ),
            (
                Constraint,
                "Sales Dept",
                "Order Items order\"select unique",
                Some(ITEMS),
            ),
            (Constraint, "public", "events events_pkey", events),
            (
                Constraint,
                "public",
                "events_default events_default_pkey",
                Some(r#""public"."events_default""#),
            ),
            (Constraint, "public", "users users_pkey", Some(USERS)),
            (Index, "Sales Dept", "Items by user", Some(ITEMS)),
            (
                Index,
                "public",
                "user_counts_age",
                Some(r#""public"."user_counts""#),
            ),
            (Index, "public", "users_adults_idx", Some(USERS)),
            (Index, "public", "users_name_idx", Some(USERS)),
            (other("COMMENT"), "public", "INDEX users_name_idx", None),
            (IndexAttach, "public", "events_default_pkey", None),
            (
                other("RULE"),
                "public",
                "no_pk no_delete",
                Some(r#""public"."no_pk""#),
            ),
            (
                Trigger,
                "Sales Dept",
                "Order Items Items Touch",
                Some(ITEMS),
            ),
            (
                ForeignKey,
                "Sales Dept",
                "Order Items Order Items_user_fkey",
                Some(ITEMS),
            ),
            (other("POLICY"), "public", "users own_rows", Some(USERS)),
            (other("ROW SECURITY"), "public", "users", Some(USERS)),
            (
                other("MATERIALIZED VIEW DATA"),
                "public",
                "user_counts",
                Some(r#""public"."user_counts""#),
            ),
        ];
        assert_eq!(got, expected);
    }

    #[test]
    fn entries_hold_their_statements_only() {
        let post = split_post_data(POST_DATA);
        let sql = |name: &str| {
            post.entries
                .iter()
                .find(|e| e.name == name)
                .map(|e| e.sql.as_str())
                .unwrap()
        };
        assert_eq!(
            sql("Order Items Order Items_pkey"),
            "ALTER TABLE ONLY \"Sales Dept\".\"Order Items\"\n    \
             ADD CONSTRAINT \"Order Items_pkey\" PRIMARY KEY (\"Item ID\");"
        );
        // The footer comment and the final meta-command are gone.
        assert_eq!(
            sql("user_counts"),
            "REFRESH MATERIALIZED VIEW public.user_counts;"
        );
        // pg_dump's `SET default_tablespace = fast` before the index header
        // became the index's own; the entry before does not carry it.
        assert_eq!(
            sql("users_name_idx"),
            "SET default_tablespace = \"fast\";\nCREATE INDEX users_name_idx ON public.users \
             USING btree (last_name) INCLUDE (first_name);"
        );
        assert!(!sql("users_adults_idx").contains("SET"));
        // A header and a meta-command inside a string literal are text.
        let comment = sql("INDEX users_name_idx");
        assert!(comment.starts_with("COMMENT ON INDEX public.users_name_idx IS 'not a header:"));
        assert!(comment.ends_with(
            "-- Name: evil; Type: INDEX; Schema: public; Owner: -\n--\n\\unrestrict nope';"
        ));
    }

    const FOREIGN_PRE_DATA: &str = r#"SET lock_timeout = 0;

--
-- Name: postgres_fdw; Type: EXTENSION; Schema: -; Owner: -
--

CREATE EXTENSION IF NOT EXISTS postgres_fdw WITH SCHEMA public;


--
-- Name: prod_link; Type: SERVER; Schema: -; Owner: -
--

CREATE SERVER prod_link FOREIGN DATA WRAPPER postgres_fdw OPTIONS (
    dbname 'prod',
    host 'localhost'
);


--
-- Name: SERVER prod_link; Type: COMMENT; Schema: -; Owner: -
--

COMMENT ON SERVER prod_link IS 'the live one';


--
-- Name: USER MAPPING app SERVER prod_link; Type: USER MAPPING; Schema: -; Owner: -
--

CREATE USER MAPPING FOR app SERVER prod_link OPTIONS (
    password 'made-up',
    "user" 'app'
);


--
-- Name: remote_users; Type: FOREIGN TABLE; Schema: public; Owner: -
--

CREATE FOREIGN TABLE public.remote_users (
    email text
)
SERVER prod_link
OPTIONS (table_name 'users');


--
-- Name: remote_users email; Type: DEFAULT; Schema: public; Owner: -
--

ALTER FOREIGN TABLE ONLY public.remote_users ALTER COLUMN email SET DEFAULT 'x';


--
-- Name: users; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.users (
    id integer NOT NULL
);
"#;

    #[test]
    fn comment_texts_are_mapped_and_nothing_else() {
        let script = "SET standard_conforming_strings = on;\n\
            CREATE TABLE public.t (a text DEFAULT 'x@mail.test');\n\
            -- Name: TABLE t; Type: COMMENT; Schema: public; Owner: -\n\
            COMMENT ON TABLE public.t IS 'ask x@mail.test, it''s theirs';\n\
            COMMENT ON COLUMN public.t.a IS E'line\\nx\\x40mail.test \\'q\\'';\n\
            COMMENT ON FUNCTION public.f(text) IS $c$x@mail.test$c$;\n\
            COMMENT ON TABLE public.u IS 'nothing here';\n\
            COMMENT ON TABLE public.v IS NULL;\n\
            SECURITY LABEL FOR dummy ON TABLE public.t IS 'x@mail.test';\n";
        let mut seen = Vec::new();
        let (out, changed) = map_comments(script, |text| {
            seen.push(text.to_owned());
            text.contains("x@mail.test")
                .then(|| text.replace("x@mail.test", "fake@example.com"))
        });
        assert_eq!(
            seen,
            [
                "ask x@mail.test, it's theirs",
                "line\nx@mail.test 'q'",
                "x@mail.test",
                "nothing here",
                "x@mail.test",
            ]
        );
        assert_eq!(changed, 4);
        assert!(
            out.contains("COMMENT ON TABLE public.t IS 'ask fake@example.com, it''s theirs';"),
            "{out}"
        );
        assert!(out.contains("IS 'line\nfake@example.com ''q''';"), "{out}");
        assert!(out.contains("f(text) IS 'fake@example.com';"), "{out}");
        assert!(out.contains("public.u IS 'nothing here';"), "{out}");
        assert!(out.contains("public.v IS NULL;"), "{out}");
        // Only comments and labels: the default keeps its literal.
        assert!(out.contains("DEFAULT 'x@mail.test'"), "{out}");
        assert_eq!(out.matches("x@mail.test").count(), 1, "{out}");
    }

    #[test]
    fn foreign_entries_and_what_hangs_on_them_are_left_out() {
        let (kept, dropped) = without_foreign(FOREIGN_PRE_DATA);
        assert_eq!(
            dropped,
            vec![
                "SERVER prod_link",
                "COMMENT SERVER prod_link",
                "USER MAPPING USER MAPPING app SERVER prod_link",
                "FOREIGN TABLE remote_users",
                "DEFAULT remote_users email",
            ]
        );
        for gone in [
            "SERVER prod_link",
            "made-up",
            "remote_users",
            "the live one",
        ] {
            assert!(!kept.contains(gone), "{gone} left in:\n{kept}");
        }
        assert!(kept.starts_with("SET lock_timeout = 0;"));
        assert!(kept.contains("CREATE EXTENSION IF NOT EXISTS postgres_fdw"));
        assert!(kept.contains("CREATE TABLE public.users"));
        // A script without foreign entries is returned as it was.
        assert_eq!(without_foreign(POST_DATA), (POST_DATA.to_string(), vec![]));
    }

    #[test]
    fn preamble_is_the_session_settings() {
        let post = split_post_data(POST_DATA);
        assert_eq!(
            post.preamble,
            "SET statement_timeout = 0;\n\
             SET lock_timeout = 0;\n\
             SET idle_in_transaction_session_timeout = 0;\n\
             SET client_encoding = 'UTF8';\n\
             SET standard_conforming_strings = on;\n\
             SELECT pg_catalog.set_config('search_path', '', false);\n\
             SET check_function_bodies = false;\n\
             SET xmloption = content;\n\
             SET client_min_messages = warning;\n\
             SET row_security = off;\n\
             SET default_tablespace = '';"
        );
    }

    #[test]
    fn a_script_without_entries_is_all_preamble() {
        let post = split_post_data("SET lock_timeout = 0;\n-- nothing to restore\n");
        assert!(post.entries.is_empty());
        assert_eq!(
            post.preamble,
            "SET lock_timeout = 0;\nSET default_tablespace = '';"
        );
    }

    #[test]
    fn meta_commands_go_but_look_alikes_in_strings_stay() {
        let stripped = strip_meta_commands(POST_DATA);
        assert!(!stripped.contains("\\restrict"));
        assert!(!stripped.contains("\\unrestrict ulFe"));
        assert!(stripped.contains("\\unrestrict nope';"));
        assert_eq!(stripped.lines().count(), POST_DATA.lines().count() - 2);
    }

    fn table(sql: &str) -> Option<String> {
        table_of(&lex::tokens(sql), "fallback")
    }

    #[test]
    fn tables_are_read_from_statements_whatever_their_names() {
        let odd = r#""we.ird"."on ""x"" ON y""#;
        for sql in [
            r#"CREATE UNIQUE INDEX "on" ON ONLY "we.ird"."on ""x"" ON y" USING btree (a);"#,
            r#"CREATE INDEX ON "we.ird"."on ""x"" ON y" (a)"#,
            r#"ALTER TABLE ONLY "we.ird"."on ""x"" ON y" ADD CONSTRAINT "a b" UNIQUE (a);"#,
            r#"alter table if exists only "we.ird"."on ""x"" ON y" add constraint c check (a > 0) not valid"#,
            r#"CREATE TRIGGER "t ON x" AFTER UPDATE OF "on", b ON "we.ird"."on ""x"" ON y" FOR EACH ROW EXECUTE FUNCTION f();"#,
            r#"CREATE CONSTRAINT TRIGGER t AFTER INSERT ON "we.ird"."on ""x"" ON y" FROM public.o FOR EACH ROW EXECUTE FUNCTION f();"#,
            r#"CREATE RULE "to" AS ON UPDATE TO "we.ird"."on ""x"" ON y" DO INSTEAD NOTHING;"#,
            r#"CREATE POLICY p ON "we.ird"."on ""x"" ON y" USING (true);"#,
            r#"CREATE STATISTICS public.s (ndistinct) ON (a + 1), b FROM "we.ird"."on ""x"" ON y";"#,
            r#"COMMENT ON CONSTRAINT "c" ON "we.ird"."on ""x"" ON y" IS 'ON nothing';"#,
            r#"REFRESH MATERIALIZED VIEW "we.ird"."on ""x"" ON y";"#,
        ] {
            assert_eq!(table(sql).as_deref(), Some(odd), "{sql}");
        }
        assert_eq!(
            table("CREATE INDEX i ON Users USING btree (a)").as_deref(),
            Some(r#""fallback"."users""#)
        );
        assert_eq!(
            table("ALTER INDEX public.p ATTACH PARTITION public.c;"),
            None
        );
        assert_eq!(table("COMMENT ON INDEX public.i IS 'x';"), None);
        assert_eq!(
            table("COMMENT ON CONSTRAINT c ON DOMAIN public.d IS 'x';"),
            None
        );
        assert_eq!(
            table("CREATE EVENT TRIGGER e ON ddl_command_start EXECUTE FUNCTION f();"),
            None
        );
    }

    #[test]
    fn headers_parse_with_spaces_and_tablespaces() {
        assert_eq!(
            parse_header(
                "-- Name: My Table my; pkey; Type: CONSTRAINT; Schema: a b; Owner: -; Tablespace: t s"
            ),
            Some(Header {
                name: "My Table my; pkey",
                kind: "CONSTRAINT",
                schema: "a b",
                tablespace: Some("t s"),
            })
        );
        assert_eq!(parse_header("-- Name: x"), None);
        assert_eq!(
            parse_header("-- Data for Name: x; Type: TABLE DATA; Schema: s; Owner: -"),
            None
        );
    }

    #[test]
    fn statements_end_at_semicolons_outside_quotes_and_atomic_bodies() {
        let sql = "SET a = 'x;y';\n\
                   CREATE FUNCTION public.f() RETURNS integer\n    LANGUAGE sql\n    BEGIN ATOMIC\n \
                   SELECT CASE WHEN true THEN 1 END;\n SELECT 2;\nEND;\n\
                   /* a ; /* nested ; */ comment */ CREATE FUNCTION g() RETURNS text AS $body$ select ';' $body$ LANGUAGE sql;\n\
                   COMMENT ON TABLE \"a;b\" IS E'it\\'s; fine';\n\
                   SELECT $1, a$b$c FROM t -- trailing; comment\n";
        let tokens = lex::tokens(sql);
        let statements: Vec<&str> = statement_spans(&tokens)
            .into_iter()
            .map(|span| &sql[span])
            .collect();
        assert_eq!(
            statements,
            vec![
                "SET a = 'x;y';",
                "CREATE FUNCTION public.f() RETURNS integer\n    LANGUAGE sql\n    BEGIN ATOMIC\n \
                 SELECT CASE WHEN true THEN 1 END;\n SELECT 2;\nEND;",
                "CREATE FUNCTION g() RETURNS text AS $body$ select ';' $body$ LANGUAGE sql;",
                "COMMENT ON TABLE \"a;b\" IS E'it\\'s; fine';",
                "SELECT $1, a$b$c FROM t",
            ]
        );
    }

    #[test]
    fn long_statements_are_cut_for_messages() {
        let long = format!(
            "CREATE INDEX i ON t\n    USING btree ({})",
            "a, ".repeat(100)
        );
        let shown = preview(&long);
        assert_eq!(shown.chars().count(), STATEMENT_PREVIEW_CHARS + 1);
        assert!(shown.starts_with("CREATE INDEX i ON t USING btree (a, a,"));
        assert!(shown.ends_with('…'));
    }

    fn dump(path: &str, major: u32) -> PgDump {
        PgDump {
            path: PathBuf::from(path),
            major,
        }
    }

    #[test]
    fn the_closest_new_enough_pg_dump_is_chosen() {
        let found = vec![
            dump("/path/pg_dump", 16),
            dump("/v/17", 17),
            dump("/v/16", 16),
        ];
        assert_eq!(
            choose(found.clone(), 15).unwrap(),
            dump("/path/pg_dump", 16)
        );
        assert_eq!(choose(found.clone(), 17).unwrap(), dump("/v/17", 17));
        let err = choose(found, 18).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the newest pg_dump found is version 17, too old for the source server \
             (PostgreSQL 18); install postgresql-client-18 (apt) or put a newer pg_dump on PATH"
        );
        assert!(matches!(
            choose(Vec::new(), 15),
            Err(SchemaError::PgDumpNotFound { need: 15, .. })
        ));
    }

    #[test]
    fn versions_are_read_from_pg_dump() {
        assert_eq!(
            parse_major("pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n"),
            Some(15)
        );
        assert_eq!(parse_major("pg_dump (PostgreSQL) 18beta1\n"), Some(18));
        assert_eq!(parse_major("pg_dump (PostgreSQL) 9.6.24\n"), Some(9));
        assert_eq!(parse_major("garbage"), None);
    }

    #[test]
    fn passwords_leave_the_url_for_the_environment() {
        assert_eq!(
            split_password("postgres://app:p%40ss:w@db:5432/prod?sslmode=require"),
            (
                "postgres://app@db:5432/prod?sslmode=require".to_string(),
                Some("p@ss:w".to_string())
            )
        );
        // Raw `#`, `?` and `/` are the password's, as the connector reads it.
        assert_eq!(
            split_password("postgres://app:p#a?s/s@db/prod?sslmode=disable"),
            (
                "postgres://app@db/prod?sslmode=disable".to_string(),
                Some("p#a?s/s".to_string())
            )
        );
        assert_eq!(
            split_password("postgres://app@db/prod"),
            ("postgres://app@db/prod".to_string(), None)
        );
        assert_eq!(
            split_password("host=db password=x dbname=prod"),
            ("host=db password=x dbname=prod".to_string(), None)
        );
    }
}
