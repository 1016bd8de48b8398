//! SQL on a read-only target: the guard `postgres.sql { readonly: true }`
//! puts in front of a protected database, and the choice of what a plan may
//! `EXPLAIN`.
//!
//! Read-only is not left to the session, which SQL can undo (`ROLLBACK;
//! INSERT …`, `SET transaction_read_only = off`, `set_config(…)`). The text is
//! split into statements by a real SQL tokenizer and each statement is parsed
//! (sqlparser, PostgreSQL dialect); only queries pass: `SELECT`, `WITH`
//! without data-modifying parts, `VALUES`, `TABLE`, `SHOW`, and `EXPLAIN`
//! without `ANALYZE`. Each statement then goes alone through the extended
//! protocol (which refuses a second statement in one message) inside a
//! `READ ONLY` transaction that has already run a query (after which the
//! server refuses `SET TRANSACTION READ WRITE`).
//!
//! A read-only transaction does not stop every effect: ending other
//! sessions, large objects, files, advisory locks, settings, the WAL. Every
//! function a statement calls is resolved against the server's `pg_proc`
//! (so a schema-qualified call, or a function made as an alias of a server
//! function, is caught by what it runs, not by its name) and refused when
//! its effects can escape the transaction: a server or C function that is
//! volatile and not known to be read-only, one on the deny list, or one in
//! an untrusted language. Functions in trusted languages (SQL, PL/pgSQL)
//! stay allowed: the transaction itself refuses their writes.
//!
//! Everything here refuses before any of the user's SQL is sent. What it
//! does not see: functions called through operators, views and triggers
//! that already exist on the server, and SQL a trusted function builds and
//! runs itself.

use std::ops::ControlFlow;

use sqlparser::ast::{
    self, Expr, ObjectName, SetExpr, Statement as Ast, TableFactor, Visit, Visitor,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Location, Token, Tokenizer, Whitespace};
use tokio_postgres::Client;

/// What a read-only step may run, in the message of every refusal.
const ALLOWED: &str = "a read-only step runs only queries: SELECT, WITH, VALUES, TABLE, SHOW, EXPLAIN without ANALYZE";

/// Statements are shown cut to this many characters in refusals.
const SHOWN_CHARS: usize = 80;

/// Why a statement may not run on a read-only target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("statement {number} `{shown}` {why}")]
pub struct Refusal {
    /// 1-based position of the statement in the SQL.
    pub number: usize,
    /// The statement, cut short.
    pub shown: String,
    pub why: String,
}

impl Refusal {
    /// Why, without the list of what a read-only step may run (for SQL
    /// that is not a step's, such as a clone rule's predicate).
    pub fn reason(&self) -> &str {
        self.why
            .strip_suffix(ALLOWED)
            .map_or(self.why.as_str(), |w| w.trim_end_matches("; "))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReadOnlyError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The server failed a statement (or the guard's own query); `sql` is
    /// the statement's text, for the error position.
    #[error("{}", crate::pg::connect::describe(.source, Some(.sql)))]
    Server {
        source: tokio_postgres::Error,
        sql: String,
    },
}

/// One statement of the SQL that passed the offline checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub number: usize,
    /// The statement as written, without its `;`: what is sent.
    pub text: String,
    /// Every function it calls, as written.
    functions: Vec<FunctionName>,
    /// A query (not `SHOW` or `EXPLAIN`), which `EXPLAIN` can describe.
    explainable: bool,
}

/// A function name as the server will look it up: unquoted parts folded to
/// lower case, the schema when one is given.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct FunctionName {
    schema: Option<String>,
    name: String,
}

/// Splits `sql` into statements and refuses anything that is not a query.
/// Pure: nothing is sent anywhere.
pub fn read_only_statements(sql: &str) -> Result<Vec<Statement>, Refusal> {
    let mut out = Vec::new();
    for (number, text) in split(sql).map_err(|why| Refusal {
        number: 1,
        shown: shown(sql),
        why,
    })? {
        let refuse = |why: String| Refusal {
            number,
            shown: shown(&text),
            why,
        };
        if has_unicode_escaped_name(&text) {
            return Err(refuse(format!(
                "names something with Unicode escapes (`U&\"…\"`), which the guard cannot read as the server does; write the name plainly; {ALLOWED}"
            )));
        }
        let parsed = parse_one(&text).map_err(|error| refuse(unparsed_reason(&text, &error)))?;
        let explainable = check_statement(&parsed).map_err(refuse)?;
        let mut functions = FunctionCalls::default();
        let _ = parsed.visit(&mut functions);
        if let Some(why) = functions.refusal {
            return Err(refuse(why));
        }
        functions.names.sort();
        functions.names.dedup();
        out.push(Statement {
            number,
            text,
            functions: functions.names,
            explainable,
        });
    }
    if out.is_empty() {
        return Err(Refusal {
            number: 1,
            shown: shown(sql),
            why: "holds no statement".into(),
        });
    }
    Ok(out)
}

/// The one statement of `sql` a plan may prefix with `EXPLAIN` (which does
/// not execute it): a query, `INSERT`, `UPDATE`, `DELETE` or `MERGE`.
/// `None` for anything else, several statements, or what cannot be parsed,
/// so no other text (`ANALYZE SELECT …` would become `EXPLAIN ANALYZE`) is
/// ever explained.
pub fn explainable(sql: &str) -> Option<String> {
    let statements = split(sql).ok()?;
    let [(_, text)] = statements.as_slice() else {
        return None;
    };
    match parse_one(text).ok()? {
        Ast::Query(_) | Ast::Insert(_) | Ast::Update(_) | Ast::Delete(_) | Ast::Merge(_) => {
            Some(text.clone())
        }
        _ => None,
    }
}

impl Statement {
    /// Whether a plan may show this statement's `EXPLAIN`.
    pub fn explainable(&self) -> bool {
        self.explainable
    }
}

/// Opens the read-only transaction every statement runs in: read-only for
/// the session too, standard strings (so `\` means what the tokenizer took
/// it to mean), and a first query, after which the server refuses to make
/// the transaction read-write.
pub async fn begin(client: &Client) -> Result<(), ReadOnlyError> {
    let setup = "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY; \
                 SET standard_conforming_strings = on; \
                 BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";
    client.batch_execute(setup).await.map_err(server(setup))?;
    let first = "SELECT 1";
    client.query_one(first, &[]).await.map_err(server(first))?;
    Ok(())
}

/// [`begin`], then [`check_functions`]: the read-only transaction the
/// statements are to run in, with every function they call checked.
pub async fn begin_checked(client: &Client, statements: &[Statement]) -> Result<(), ReadOnlyError> {
    begin(client).await?;
    check_functions(client, statements).await
}

/// Refuses a statement that calls a function whose effects can escape a
/// read-only transaction, resolving every name against `pg_proc`. Runs
/// inside the transaction [`begin`] opened.
pub async fn check_functions(
    client: &Client,
    statements: &[Statement],
) -> Result<(), ReadOnlyError> {
    let mut names: Vec<String> = statements
        .iter()
        .flat_map(|s| s.functions.iter().map(|f| f.name.clone()))
        .collect();
    names.sort();
    names.dedup();
    if names.is_empty() {
        return Ok(());
    }
    let sql = "SELECT p.proname::text, n.nspname::text, \
                      n.nspname = ANY (pg_catalog.current_schemas(true)), \
                      p.provolatile = 'v', l.lanname::text, l.lanpltrusted, p.prosrc, \
                      p.prorettype::regtype::text IN ('trigger', 'event_trigger', 'internal', \
                        'tsm_handler', 'index_am_handler', 'table_am_handler', 'fdw_handler', \
                        'language_handler') \
                      OR 'internal'::regtype = ANY (p.proargtypes::oid[]) \
               FROM pg_catalog.pg_proc p \
               JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace \
               JOIN pg_catalog.pg_language l ON l.oid = p.prolang \
               WHERE p.proname = ANY ($1)";
    let rows = client.query(sql, &[&names]).await.map_err(server(sql))?;
    let candidates: Vec<Candidate> = rows
        .iter()
        .map(|row| Candidate {
            name: row.get(0),
            schema: row.get(1),
            on_path: row.get(2),
            volatile: row.get(3),
            language: row.get(4),
            trusted: row.get(5),
            source: row.get(6),
            uncallable: row.get(7),
        })
        .collect();
    for statement in statements {
        for called in &statement.functions {
            // Without overload resolution, every function the name could
            // mean is judged; one that may not run refuses the call.
            let refused = candidates
                .iter()
                .filter(|c| c.name == called.name && !c.uncallable)
                .filter(|c| match &called.schema {
                    Some(schema) => &c.schema == schema,
                    None => c.on_path,
                })
                .find_map(|c| c.refusal().map(|why| (c, why)));
            if let Some((candidate, why)) = refused {
                return Err(Refusal {
                    number: statement.number,
                    shown: shown(&statement.text),
                    why: format!("calls `{}.{}`, {why}", candidate.schema, candidate.name),
                }
                .into());
            }
        }
    }
    Ok(())
}

/// Runs each statement alone through the extended protocol, inside the
/// transaction [`begin`] opened; the rows each reported, summed. The
/// transaction is rolled back: it is read-only, there is nothing to keep.
pub async fn execute(client: &Client, statements: &[Statement]) -> Result<u64, ReadOnlyError> {
    let mut rows = 0;
    for statement in statements {
        rows += client
            .execute(statement.text.as_str(), &[])
            .await
            .map_err(server(&statement.text))?;
    }
    client
        .batch_execute("ROLLBACK")
        .await
        .map_err(server("ROLLBACK"))?;
    Ok(rows)
}

/// A warning when the role connected to a protected target could write it
/// if flightpath's guards were not there: a superuser, or write privileges
/// on its tables.
pub async fn write_access_warning(
    client: &Client,
    target: &str,
) -> Result<Option<String>, ReadOnlyError> {
    let sql = "SELECT current_user::text, \
                      (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user), \
                      (SELECT count(*) FROM pg_catalog.pg_class c \
                       JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                       WHERE c.relkind IN ('r', 'p', 'm') \
                         AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
                         AND n.nspname NOT LIKE 'pg\\_toast%' \
                         AND pg_catalog.has_table_privilege(c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE'))";
    let row = client.query_one(sql, &[]).await.map_err(server(sql))?;
    let (role, superuser, writable): (String, Option<bool>, i64) =
        (row.get(0), row.get(1), row.get(2));
    let power = if superuser == Some(true) {
        "is a superuser".to_string()
    } else if writable > 0 {
        format!(
            "may write {writable} {} there",
            if writable == 1 { "table" } else { "tables" }
        )
    } else {
        return Ok(None);
    };
    Ok(Some(format!(
        "role `{role}` of protected target `{target}` {power}; flightpath only reads it, \
         but a role that cannot write is the surest guard: \
         `CREATE ROLE flightpath_reader LOGIN PASSWORD '…' IN ROLE pg_read_all_data` \
         (PostgreSQL 14+; before that, GRANT SELECT on the tables) and use it in the URL"
    )))
}

fn server(sql: &str) -> impl FnOnce(tokio_postgres::Error) -> ReadOnlyError {
    let sql = sql.to_string();
    move |source| ReadOnlyError::Server { source, sql }
}

/// The statements of `sql`, numbered from 1, each as written: the text
/// between top-level semicolons, as PostgreSQL's lexer sees them (strings,
/// quoted names, dollar quotes and comments hold no statement breaks).
/// Pieces with nothing but whitespace and comments are left out.
fn split(sql: &str) -> Result<Vec<(usize, String)>, String> {
    let dialect = PostgreSqlDialect {};
    let tokens = Tokenizer::new(&dialect, sql)
        .tokenize_with_location()
        .map_err(|e| format!("could not be read as SQL ({e}); {ALLOWED}"))?;
    let offsets = Offsets::new(sql);
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    let mut end = 0;
    for token in &tokens {
        let at = offsets.of(token.span.start);
        match &token.token {
            Token::SemiColon | Token::EOF => {
                if let Some(from) = start.take() {
                    out.push((out.len() + 1, sql[from..end].trim().to_string()));
                }
            }
            Token::Whitespace(
                Whitespace::Space
                | Whitespace::Newline
                | Whitespace::Tab
                | Whitespace::SingleLineComment { .. }
                | Whitespace::MultiLineComment(_),
            ) => {}
            _ => {
                start.get_or_insert(at);
                end = offsets.of(token.span.end).max(at);
            }
        }
    }
    if let Some(from) = start {
        out.push((out.len() + 1, sql[from..end].trim().to_string()));
    }
    Ok(out)
}

/// Byte offsets of the tokenizer's 1-based line and column (in characters).
struct Offsets<'a> {
    text: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> Offsets<'a> {
    fn new(text: &'a str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Offsets { text, line_starts }
    }

    fn of(&self, location: Location) -> usize {
        let Some(&line_start) = self
            .line_starts
            .get((location.line as usize).saturating_sub(1))
        else {
            return self.text.len();
        };
        let line = &self.text[line_start..];
        let column = (location.column as usize).saturating_sub(1);
        line_start
            + line
                .char_indices()
                .nth(column)
                .map_or(line.len(), |(i, _)| i)
    }
}

/// `U&"…"`: a quoted name with Unicode escapes, which the parser does not
/// decode (it reads `U & "…"`), so the name it checks would not be the one
/// the server calls.
fn has_unicode_escaped_name(text: &str) -> bool {
    let Ok(tokens) = Tokenizer::new(&PostgreSqlDialect {}, text).tokenize() else {
        return true;
    };
    let word = |t: &Token, value: &str| matches!(t, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(value));
    tokens.windows(3).any(|w| {
        word(&w[0], "u")
            && w[1] == Token::Ampersand
            && matches!(&w[2], Token::Word(q) if q.quote_style == Some('"'))
    }) || tokens.iter().any(|t| word(t, "uescape"))
}

fn parse_one(text: &str) -> Result<Ast, String> {
    // `TABLE name …` is PostgreSQL's `SELECT * FROM name …`, which the
    // parser knows; the text sent is still the one written.
    let rewritten;
    let text = match text.get(..6) {
        Some(head) if head.eq_ignore_ascii_case("table ") => {
            rewritten = format!("SELECT * FROM {}", &text[6..]);
            rewritten.as_str()
        }
        _ => text,
    };
    let mut parsed = Parser::parse_sql(&PostgreSqlDialect {}, text).map_err(|e| e.to_string())?;
    match parsed.len() {
        1 => Ok(parsed.remove(0)),
        n => Err(format!("{n} statements where one was expected")),
    }
}

/// Why a statement the parser could not read is refused: named by its first
/// word when that word says it is not a query, else the parser's message.
fn unparsed_reason(text: &str, error: &str) -> String {
    let first = first_word(text);
    match kind_of_word(&first) {
        Some(reason) => format!("{reason}; {ALLOWED}"),
        None => format!(
            "could not be parsed as PostgreSQL ({error}); a read-only step runs only statements it can check, and of those only queries: SELECT, WITH, VALUES, TABLE, SHOW, EXPLAIN without ANALYZE"
        ),
    }
}

fn first_word(text: &str) -> String {
    text.trim_start_matches(|c: char| !c.is_ascii_alphabetic())
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or_default()
        .to_ascii_uppercase()
}

/// The reason a statement starting with `word` is not a query, if it says.
fn kind_of_word(word: &str) -> Option<String> {
    Some(match word {
        "BEGIN" | "START" | "COMMIT" | "END" | "ROLLBACK" | "ABORT" | "SAVEPOINT" | "RELEASE"
        | "PREPARE" => "is transaction control, which could end the read-only transaction".into(),
        "SET" | "RESET" | "DISCARD" => "changes a setting, which could turn read-only off".into(),
        "INSERT" | "UPDATE" | "DELETE" | "MERGE" | "TRUNCATE" | "COPY" | "CREATE" | "ALTER"
        | "DROP" | "GRANT" | "REVOKE" | "COMMENT" | "SECURITY" | "REINDEX" | "VACUUM"
        | "ANALYZE" | "CLUSTER" | "REFRESH" | "LOCK" | "CALL" | "DO" | "LISTEN" | "NOTIFY"
        | "UNLISTEN" | "CHECKPOINT" | "LOAD" | "EXECUTE" | "DECLARE" | "FETCH" | "MOVE"
        | "CLOSE" | "IMPORT" | "REASSIGN" => format!("is `{word}`, not a query"),
        _ => return None,
    })
}

/// Refuses a top-level statement that is not a query; whether a plan may
/// `EXPLAIN` it.
fn check_statement(statement: &Ast) -> Result<bool, String> {
    match statement {
        Ast::Query(_) => Ok(true),
        Ast::ShowVariable { .. } | Ast::ShowVariables { .. } => Ok(false),
        Ast::Explain {
            analyze, options, ..
        } => {
            let mut runs = *analyze;
            for option in options.iter().flatten() {
                let name = option.name.value.to_ascii_lowercase();
                match name.as_str() {
                    "analyze" | "analyse" => runs |= !option.arg.as_ref().is_some_and(is_off),
                    "costs" | "verbose" | "format" | "settings" | "buffers" | "wal" | "timing"
                    | "summary" | "generic_plan" | "memory" => {}
                    _ => {
                        return Err(format!(
                            "uses the EXPLAIN option `{name}`, which is not known to be read-only; {ALLOWED}"
                        ));
                    }
                }
            }
            if runs {
                Err(format!(
                    "is EXPLAIN ANALYZE, which runs the statement it explains; {ALLOWED}"
                ))
            } else {
                Ok(false)
            }
        }
        other => {
            let word = first_word(&other.to_string());
            Err(match kind_of_word(&word) {
                Some(reason) => format!("{reason}; {ALLOWED}"),
                None => format!("is `{word}`, not a query; {ALLOWED}"),
            })
        }
    }
}

/// `off`, `false` or `0`, as an option's argument (`EXPLAIN (ANALYZE off)`).
fn is_off(arg: &Expr) -> bool {
    let text = arg.to_string().to_ascii_lowercase();
    matches!(text.trim_matches('\''), "off" | "false" | "0")
}

/// Walks a statement: collects every function it calls, and refuses the
/// parts of a query that write or lock (a data-modifying `WITH`, `SELECT …
/// INTO`, `FOR UPDATE`). The statement under an `EXPLAIN` is not executed,
/// so it may be any statement `EXPLAIN` takes.
#[derive(Default)]
struct FunctionCalls {
    names: Vec<FunctionName>,
    statements: usize,
    under_explain: bool,
    refusal: Option<String>,
}

impl FunctionCalls {
    fn refuse(&mut self, why: String) -> ControlFlow<()> {
        self.refusal = Some(format!("{why}; {ALLOWED}"));
        ControlFlow::Break(())
    }

    fn called(&mut self, name: &ObjectName) {
        let parts: Vec<String> = name
            .0
            .iter()
            .filter_map(|p| p.as_ident())
            .map(folded)
            .collect();
        if let Some((name, qualifiers)) = parts.split_last() {
            self.names.push(FunctionName {
                schema: qualifiers.last().cloned(),
                name: name.clone(),
            });
        }
    }
}

/// A name as the server folds it: unquoted to lower case.
fn folded(ident: &ast::Ident) -> String {
    match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => ident.value.to_lowercase(),
    }
}

impl Visitor for FunctionCalls {
    type Break = ();

    fn pre_visit_statement(&mut self, statement: &Ast) -> ControlFlow<()> {
        self.statements += 1;
        if self.statements == 1 {
            self.under_explain = matches!(statement, Ast::Explain { .. });
            return ControlFlow::Continue(());
        }
        if self.under_explain || matches!(statement, Ast::Query(_)) {
            return ControlFlow::Continue(());
        }
        let word = first_word(&statement.to_string());
        self.refuse(format!("holds a data-modifying `{word}`"))
    }

    fn pre_visit_query(&mut self, query: &ast::Query) -> ControlFlow<()> {
        if let SetExpr::Insert(inner)
        | SetExpr::Update(inner)
        | SetExpr::Delete(inner)
        | SetExpr::Merge(inner) = query.body.as_ref()
            && !self.under_explain
        {
            let word = first_word(&inner.to_string());
            return self.refuse(format!("holds a data-modifying `{word}`"));
        }
        if !query.locks.is_empty() && !self.under_explain {
            return self.refuse("locks rows (`FOR UPDATE` / `FOR SHARE`)".into());
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, select: &ast::Select) -> ControlFlow<()> {
        if select.into.is_some() && !self.under_explain {
            return self.refuse("creates a table (`SELECT … INTO`)".into());
        }
        ControlFlow::Continue(())
    }

    /// Every name may be a function: PostgreSQL reads `(x).f` as `f(x)`,
    /// which the parser takes for a field. Unqualified, as the server
    /// would look it up.
    fn pre_visit_ident(&mut self, ident: &ast::Ident) -> ControlFlow<()> {
        self.names.push(FunctionName {
            schema: None,
            name: folded(ident),
        });
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        if let Expr::Function(function) = expr {
            self.called(&function.name);
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        match factor {
            TableFactor::Table {
                name,
                args: Some(_),
                ..
            }
            | TableFactor::Function { name, .. } => self.called(name),
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

/// A function of the server's `pg_proc` that a called name may mean.
struct Candidate {
    name: String,
    schema: String,
    on_path: bool,
    volatile: bool,
    language: String,
    trusted: bool,
    /// The C symbol for `internal` and `c` functions, which says what the
    /// function runs whatever it is called.
    source: String,
    /// Takes or returns `internal` or a handler type (triggers, access
    /// methods): SQL cannot call it, whatever shares its name.
    uncallable: bool,
}

impl Candidate {
    fn refusal(&self) -> Option<String> {
        let native = matches!(self.language.as_str(), "internal" | "c");
        let symbol = self.source.trim_start_matches("be_");
        let denied = denied(&self.name).or_else(|| native.then(|| denied(symbol)).flatten());
        if let Some(reason) = denied {
            return Some(format!(
                "which {reason}, and a read-only transaction does not stop that"
            ));
        }
        if native && self.volatile {
            let known = if self.schema == "pg_catalog" && self.language == "internal" {
                READ_ONLY_SERVER_FUNCTIONS.contains(&self.name.as_str())
                    || self.name.starts_with("pg_stat_get_xact_")
            } else {
                self.language == "c" && is_read_only_extension_symbol(&self.source)
            };
            return (!known).then(|| {
                "a volatile server function that is not known to be read-only, so its effects could escape the transaction".to_string()
            });
        }
        if !native && !self.trusted {
            return Some(format!(
                "which is written in the untrusted language `{}`, whose effects escape a read-only transaction",
                self.language
            ));
        }
        None
    }
}

/// Functions (by name or C symbol) whose effects escape a read-only
/// transaction, and what they do.
fn denied(name: &str) -> Option<&'static str> {
    const DENIED: &[(&str, &str)] = &[
        ("pg_terminate_backend", "ends another session"),
        ("pg_cancel_backend", "cancels another session's query"),
        ("lo_creat", "creates a large object"),
        ("lo_create", "creates a large object"),
        ("lo_from_bytea", "creates a large object"),
        (
            "lo_import",
            "creates a large object from a file on the server",
        ),
        ("lo_export", "writes a file on the server"),
        ("lo_unlink", "deletes a large object"),
        ("lo_put", "writes a large object"),
        ("lo_truncate", "writes a large object"),
        ("lowrite", "writes a large object"),
        (
            "set_config",
            "changes a setting (it could turn read-only off)",
        ),
        (
            "pg_advisory",
            "takes or releases an advisory lock, which can outlive the statement",
        ),
        (
            "pg_try_advisory",
            "takes an advisory lock, which can outlive the statement",
        ),
        ("pg_notify", "notifies other sessions"),
        ("pg_reload_conf", "reloads the server's configuration"),
        ("pg_rotate_logfile", "rotates the server's log"),
        ("pg_switch_wal", "switches the server's WAL file"),
        (
            "pg_create_restore_point",
            "writes a restore point to the WAL",
        ),
        ("pg_logical_emit_message", "writes a message to the WAL"),
        ("pg_stat_reset", "resets the server's statistics"),
        ("pg_backup_", "starts or stops a backup"),
        ("pg_start_backup", "starts a backup"),
        ("pg_stop_backup", "stops a backup"),
        ("pg_promote", "promotes a standby"),
        ("pg_wal_replay_", "pauses or resumes replay"),
        ("pg_create_", "creates a replication slot"),
        ("pg_copy_", "creates a replication slot"),
        ("pg_drop_replication_slot", "drops a replication slot"),
        ("pg_replication_slot_advance", "moves a replication slot"),
        (
            "pg_logical_slot_get",
            "consumes a replication slot's changes",
        ),
        ("pg_replication_origin_", "changes replication origins"),
        (
            "pg_log_backend_memory_contexts",
            "writes to the server's log",
        ),
        (
            "pg_import_system_collations",
            "adds collations to the catalog",
        ),
        ("brin_summarize", "writes to an index"),
        ("brin_desummarize", "writes to an index"),
        ("gin_clean_pending_list", "writes to an index"),
        (
            "dblink",
            "connects to another database, outside this transaction",
        ),
        ("pg_file_", "writes files on the server"),
        ("pg_stat_statements_reset", "resets the server's statistics"),
    ];
    if matches!(name, "txid_current" | "pg_current_xact_id") {
        return Some("assigns a transaction ID, which writes to the WAL");
    }
    DENIED
        .iter()
        .find(|(prefix, _)| name.starts_with(prefix))
        .map(|(_, what)| *what)
}

/// Volatile functions of `pg_catalog` that only read: clocks, random
/// numbers, sizes, the WAL position, recovery and lock state.
const READ_ONLY_SERVER_FUNCTIONS: &[&str] = &[
    "clock_timestamp",
    "timeofday",
    "random",
    "setseed",
    "gen_random_uuid",
    "currval",
    "lastval",
    "pg_sleep",
    "pg_sleep_for",
    "pg_sleep_until",
    "pg_blocking_pids",
    "pg_safe_snapshot_blocking_pids",
    "pg_control_checkpoint",
    "pg_control_init",
    "pg_control_recovery",
    "pg_control_system",
    "pg_current_wal_flush_lsn",
    "pg_current_wal_insert_lsn",
    "pg_current_wal_lsn",
    "pg_current_logfile",
    "pg_database_size",
    "pg_indexes_size",
    "pg_relation_size",
    "pg_table_size",
    "pg_tablespace_size",
    "pg_total_relation_size",
    "pg_is_in_recovery",
    "pg_is_wal_replay_paused",
    "pg_get_wal_replay_pause_state",
    "pg_jit_available",
    "pg_last_committed_xact",
    "pg_last_wal_receive_lsn",
    "pg_last_wal_replay_lsn",
    "pg_last_xact_replay_timestamp",
    "pg_lock_status",
    "pg_notification_queue_usage",
    "pg_partition_ancestors",
    "pg_partition_tree",
    "pg_prepared_xact",
    "pg_sequence_last_value",
    "pg_stat_have_stats",
    "pg_stat_clear_snapshot",
    "pg_xact_commit_timestamp",
    "pg_xact_commit_timestamp_origin",
    "pg_xact_status",
    "txid_status",
    "pg_get_backend_memory_contexts",
    "pg_get_shmem_allocations",
    "pg_get_multixact_members",
    "pg_get_wal_resource_managers",
    "pg_collation_actual_version",
    "pg_database_collation_actual_version",
    "pg_show_replication_origin_status",
    "current_query",
    "pg_ls_dir",
    "pg_ls_waldir",
    "pg_ls_logdir",
    "pg_ls_tmpdir",
    "pg_ls_archive_statusdir",
    "pg_ls_logicalmapdir",
    "pg_ls_logicalsnapdir",
    "pg_ls_replslotdir",
    "pg_stat_file",
    "pg_hba_file_rules",
    "pg_ident_file_mappings",
    "pg_show_all_file_settings",
    "lo_get",
    "lo_open",
    "loread",
    "lo_close",
    "lo_lseek",
    "lo_lseek64",
    "lo_tell",
    "lo_tell64",
];

/// Volatile C functions of common extensions that only read or make random
/// values: uuid-ossp, pgcrypto, pg_stat_statements.
fn is_read_only_extension_symbol(symbol: &str) -> bool {
    matches!(
        symbol,
        "uuid_generate_v1"
            | "uuid_generate_v1mc"
            | "uuid_generate_v4"
            | "pg_random_bytes"
            | "pg_random_uuid"
            | "pg_gen_salt"
            | "pg_gen_salt_rounds"
            | "pg_stat_statements"
            | "pg_stat_statements_info"
    ) || symbol.starts_with("pg_stat_statements_1_")
}

/// The statement on one line, cut to [`SHOWN_CHARS`] characters.
fn shown(text: &str) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= SHOWN_CHARS {
        return one_line;
    }
    let cut: String = one_line.chars().take(SHOWN_CHARS - 1).collect();
    format!("{cut}…")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(sql: &str) -> Vec<String> {
        split(sql).unwrap().into_iter().map(|(_, t)| t).collect()
    }

    fn refusal(sql: &str) -> String {
        read_only_statements(sql).unwrap_err().to_string()
    }

    #[test]
    fn splits_where_the_server_would() {
        assert_eq!(
            texts("SELECT 1; SELECT ';' AS \"a;b\" -- x;y\n; SELECT $q$;$q$ /* ; */;;"),
            ["SELECT 1", "SELECT ';' AS \"a;b\"", "SELECT $q$;$q$"]
        );
        assert_eq!(texts("  -- only a comment\n"), Vec::<String>::new());
        assert_eq!(
            texts("SELECT 'é;ü'; SELECT 2"),
            ["SELECT 'é;ü'", "SELECT 2"]
        );
        // Interpolated values arrive as E'' literals when they hold a
        // backslash; an escaped quote does not end them.
        assert_eq!(
            texts(r"SELECT E'it\'s; \\'; SELECT 'a''b;'"),
            [r"SELECT E'it\'s; \\'", "SELECT 'a''b;'"]
        );
    }

    #[test]
    fn queries_pass_and_know_their_functions() {
        let statements = read_only_statements(
            "SELECT count(*) FROM site; WITH x AS (SELECT 1) SELECT * FROM x; VALUES (1); \
             TABLE site; SHOW search_path; EXPLAIN SELECT pg_catalog.NOW(), \"MixedCase\"(1) \
             FROM generate_series(1, 2)",
        )
        .unwrap();
        assert_eq!(statements.len(), 6);
        assert!(statements[0].explainable());
        assert!(!statements[4].explainable());
        let last: Vec<_> = statements[5]
            .functions
            .iter()
            .map(|f| format!("{:?}.{}", f.schema, f.name))
            .collect();
        assert_eq!(
            last,
            // Every name counts, as a field may be a call: `(x).f` is `f(x)`.
            [
                "None.MixedCase",
                "None.generate_series",
                "None.now",
                "None.pg_catalog",
                "Some(\"pg_catalog\").now"
            ]
        );
    }

    #[test]
    fn transaction_control_settings_and_writes_are_refused_by_name() {
        for (sql, why) in [
            ("SET TRANSACTION READ WRITE", "changes a setting"),
            ("ROLLBACK", "is transaction control"),
            ("COMMIT", "is transaction control"),
            ("END", "is transaction control"),
            ("BEGIN READ WRITE", "is transaction control"),
            ("START TRANSACTION READ WRITE", "is transaction control"),
            ("RESET ALL", "changes a setting"),
            ("SET transaction_read_only = off", "changes a setting"),
            ("INSERT INTO t VALUES (1)", "is `INSERT`, not a query"),
            ("COPY (SELECT 1) TO '/tmp/x'", "is `COPY`, not a query"),
            ("CHECKPOINT", "is `CHECKPOINT`, not a query"),
            ("DO $$ BEGIN END $$", "is `DO`, not a query"),
        ] {
            let message = refusal(&format!("SELECT 1; {sql}"));
            assert!(
                message.starts_with(&format!("statement 2 `{sql}` {why}")),
                "{sql}: {message}"
            );
        }
    }

    #[test]
    fn queries_that_write_or_lock_are_refused() {
        assert_eq!(
            refusal("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d"),
            format!(
                "statement 1 `WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d` holds a data-modifying `DELETE`; {ALLOWED}"
            )
        );
        assert!(refusal("SELECT * INTO new_t FROM t").contains("creates a table"));
        assert!(refusal("SELECT * FROM t FOR UPDATE").contains("locks rows"));
        assert!(refusal("EXPLAIN ANALYZE SELECT 1").contains("EXPLAIN ANALYZE"));
        assert!(refusal("EXPLAIN (ANALYZE) SELECT 1").contains("EXPLAIN ANALYZE"));
        assert!(read_only_statements("EXPLAIN (ANALYZE off) SELECT 1").is_ok());
        assert!(refusal("EXPLAIN (ANALYSE) SELECT 1").contains("EXPLAIN ANALYZE"));
        assert!(refusal("EXPLAIN (SERIALIZE) SELECT 1").contains("option `serialize`"));
        assert!(read_only_statements("EXPLAIN (VERBOSE, COSTS off, FORMAT json) SELECT 1").is_ok());
        assert!(refusal(r#"SELECT U&"pg_terminate_backen\0064"(1)"#).contains("Unicode escapes"));
        assert!(read_only_statements(r"SELECT U&'caf\00e9'").is_ok());
        assert!(read_only_statements("EXPLAIN DELETE FROM t").is_ok());
        assert!(refusal("").contains("holds no statement"));
    }

    #[test]
    fn a_plan_explains_only_one_query_or_dml_statement() {
        assert_eq!(
            explainable("UPDATE site SET name = 'x';"),
            Some("UPDATE site SET name = 'x'".into())
        );
        assert_eq!(explainable("SELECT 1"), Some("SELECT 1".into()));
        assert_eq!(
            explainable("ANALYZE SELECT pg_terminate_backend(pid) FROM pg_stat_activity"),
            None
        );
        assert_eq!(explainable("SELECT 1; SELECT 2"), None);
        assert_eq!(explainable("VACUUM site"), None);
        assert_eq!(explainable("SELECT 'unclosed"), None);
    }

    #[test]
    fn a_function_called_as_a_field_is_still_a_function() {
        let statements = read_only_statements("SELECT (pid).pg_terminate_backend FROM t").unwrap();
        assert!(
            statements[0]
                .functions
                .iter()
                .any(|f| f.name == "pg_terminate_backend" && f.schema.is_none())
        );
    }

    #[test]
    fn long_statements_are_cut_in_refusals() {
        let long = format!("INSERT INTO t VALUES ('{}')", "x".repeat(200));
        let message = refusal(&long);
        let shown = message.split('`').nth(1).unwrap();
        assert_eq!(shown.chars().count(), SHOWN_CHARS);
        assert!(shown.ends_with('…'));
    }

    #[test]
    fn deny_list_matches_names_and_symbols() {
        let candidate = |name: &str, schema: &str, volatile, language: &str, source: &str| {
            Candidate {
                name: name.into(),
                schema: schema.into(),
                on_path: true,
                volatile,
                language: language.into(),
                trusted: language != "internal" && language != "c" && language != "plpython3u",
                source: source.into(),
                uncallable: false,
            }
            .refusal()
        };
        assert!(
            candidate("pg_terminate_backend", "pg_catalog", true, "internal", "x")
                .unwrap()
                .contains("ends another session")
        );
        // An alias made with LANGUAGE internal is judged by what it runs.
        assert!(
            candidate(
                "harmless",
                "public",
                false,
                "internal",
                "pg_terminate_backend"
            )
            .unwrap()
            .contains("ends another session")
        );
        assert!(
            candidate(
                "lo_from_bytea",
                "pg_catalog",
                true,
                "internal",
                "be_lo_from_bytea"
            )
            .is_some()
        );
        assert!(candidate("brin_summarize_range", "pg_catalog", true, "internal", "x").is_some());
        assert!(
            candidate(
                "query_to_xml",
                "pg_catalog",
                true,
                "internal",
                "query_to_xml"
            )
            .unwrap()
            .contains("not known to be read-only")
        );
        assert!(candidate("random", "pg_catalog", true, "internal", "drandom").is_none());
        assert!(candidate("random", "public", true, "internal", "brin_x").is_some());
        assert!(candidate("now", "pg_catalog", false, "internal", "now").is_none());
        assert!(candidate("mine", "public", true, "plpgsql", "BEGIN END").is_none());
        assert!(candidate("mine", "public", true, "plpython3u", "pass").is_some());
        assert!(candidate("uuid_generate_v4", "public", true, "c", "uuid_generate_v4").is_none());
        assert!(candidate("dblink_exec", "public", true, "c", "dblink_exec").is_some());
        assert!(
            candidate(
                "txid_current",
                "pg_catalog",
                false,
                "internal",
                "txid_current"
            )
            .is_some()
        );
        assert!(
            candidate(
                "pg_ls_waldir",
                "pg_catalog",
                true,
                "internal",
                "pg_ls_waldir"
            )
            .is_none()
        );
    }
}
