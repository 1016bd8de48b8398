//! Layers point down (STYLE.md convention 14, DESIGN.md "Layers"): every
//! crate-internal path under `src/` — `use crate::…` (grouped too),
//! `crate::…` inline, and `super::…` that climbs out of its top-level
//! module — is read by a small scanner that skips comments and string and
//! char literals. An import of a higher layer fails, and so does a circle
//! between modules (same-layer ones included). Every violation is listed,
//! sorted, in one failure.
//!
//! The scanner is a tokenizer, not a parser: a path is `crate` or a run of
//! `super` followed by `::`; `pub(crate)` is no path. Inline `mod x { … }`
//! blocks count for `super::`, so `super::super::` inside a file's `mod
//! tests` climbs from the file's module, as the compiler does.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::Path;

/// The layers, top to bottom: a module may use its own layer and those
/// below it (without forming a circle), never one above. `root` is
/// `src/lib.rs` and `src/main.rs` and any item defined there. A new
/// top-level module under `src/` must be added here.
const LAYERS: &[&[&str]] = &[
    &["root"],
    &["cli"],
    &["engine"],
    &["workflow"],
    &["steps"],
    &["clone", "backup", "media", "git", "heroku"],
    &["anonymize"],
    &["pg", "storage"],
    &["syntax", "redact", "human", "report", "progress"],
];

const ROOT: &str = "root";

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

#[test]
fn the_crate_follows_its_layers() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    collect_rs(&root.join("src"), root, &mut files);
    assert!(!files.is_empty(), "no .rs files under src/");
    let violations = check(&files);
    assert!(
        violations.is_empty(),
        "{} layer violation(s) (layers in tests/layers.rs, see DESIGN.md \"Layers\"):\n{}",
        violations.len(),
        violations.join("\n")
    );
}

/// Every `.rs` file under `dir`, as (path relative to `root` with `/`,
/// contents).
fn collect_rs(dir: &Path, root: &Path, out: &mut Vec<(String, String)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect_rs(&path, root, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let relative = path.strip_prefix(root).unwrap();
            let name = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
            out.push((name, text));
        }
    }
}

// ---- The checker.

/// One crate-internal path found in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Import {
    line: usize,
    /// The top-level module it names (`root` for an item of lib.rs).
    target: String,
    /// The path as written, e.g. `crate::steps::StepError`.
    path: String,
}

/// All violations of `files` ((path like `src/pg/x.rs`, contents)), one
/// line each (a circle takes several), sorted.
fn check(files: &[(String, String)]) -> Vec<String> {
    let modules: BTreeSet<String> = files
        .iter()
        .map(|(path, _)| top_module(path))
        .filter(|m| m != ROOT)
        .collect();
    let mut problems = Vec::new();
    for module in &modules {
        if layer_of(module).is_none() {
            let file = files
                .iter()
                .map(|(p, _)| p)
                .find(|p| top_module(p) == *module)
                .unwrap();
            problems.push(format!(
                "{file}: module `{module}` has no layer: add it to LAYERS in tests/layers.rs"
            ));
        }
    }
    // module -> module -> where (file:line and path), the first one sorted.
    let mut edges: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (file, text) in files {
        let from = top_module(file);
        for import in scan(file, text, &modules) {
            if import.target == from {
                continue;
            }
            let witness = format!("{file}:{} ({})", import.line, import.path);
            let slot = edges
                .entry(from.clone())
                .or_default()
                .entry(import.target.clone())
                .or_insert_with(|| witness.clone());
            if witness < *slot {
                *slot = witness;
            }
            let (Some(from_layer), Some(to_layer)) = (layer_of(&from), layer_of(&import.target))
            else {
                continue;
            };
            if to_layer < from_layer {
                problems.push(format!(
                    "{file}:{}: {from} (layer {from_layer}) imports {} (layer {to_layer}): {} \
                     — a lower layer never names a higher one's items",
                    import.line, import.target, import.path
                ));
            }
        }
    }
    problems.sort_by_key(|p| by_file_and_line(p));
    for circle in circles(&edges) {
        let mut text = format!("circle: {}", circle.join(" -> "));
        for pair in circle.windows(2) {
            text.push_str(&format!(
                "\n    {} -> {}: {}",
                pair[0], pair[1], edges[&pair[0]][&pair[1]]
            ));
        }
        problems.push(text);
    }
    problems
}

/// Sorts `src/a.rs:9: …` before `src/a.rs:10: …`.
fn by_file_and_line(problem: &str) -> (String, usize, String) {
    let mut parts = problem.splitn(3, ':');
    let file = parts.next().unwrap_or("").to_owned();
    let line = parts.next().and_then(|l| l.parse().ok()).unwrap_or(0);
    (file, line, problem.to_owned())
}

/// Circles among modules, each as `[a, b, …, a]` starting at its smallest
/// module: for every edge inside a strongly connected component that no
/// earlier circle used, the shortest circle through it.
fn circles(edges: &BTreeMap<String, BTreeMap<String, String>>) -> Vec<Vec<String>> {
    let successors = |m: &str| -> Vec<String> {
        edges
            .get(m)
            .map(|to| to.keys().cloned().collect())
            .unwrap_or_default()
    };
    let mut found: Vec<Vec<String>> = Vec::new();
    let mut covered: BTreeSet<(String, String)> = BTreeSet::new();
    for (from, to) in edges {
        for target in to.keys() {
            if covered.contains(&(from.clone(), target.clone())) {
                continue;
            }
            // Shortest path target -> … -> from closes the circle.
            let mut previous: BTreeMap<String, String> = BTreeMap::new();
            let mut queue = VecDeque::from([target.clone()]);
            let mut seen = BTreeSet::from([target.clone()]);
            while let Some(m) = queue.pop_front() {
                if m == *from {
                    break;
                }
                for next in successors(&m) {
                    if seen.insert(next.clone()) {
                        previous.insert(next.clone(), m.clone());
                        queue.push_back(next);
                    }
                }
            }
            if !seen.contains(from) {
                continue;
            }
            let mut path = vec![from.clone()];
            while let Some(p) = previous.get(path.last().unwrap()) {
                path.push(p.clone());
            }
            path.reverse(); // target … from
            let mut circle = vec![from.clone()];
            circle.extend(path);
            circle.pop(); // `from` twice at the end
            let start = (0..circle.len()).min_by_key(|&i| &circle[i]).unwrap_or(0);
            circle.rotate_left(start);
            circle.push(circle[0].clone());
            for pair in circle.windows(2) {
                covered.insert((pair[0].clone(), pair[1].clone()));
            }
            if !found.contains(&circle) {
                found.push(circle);
            }
        }
    }
    found.sort();
    found
}

/// `src/cli/run.rs` → `cli`, `src/redact.rs` → `redact`, `src/lib.rs` →
/// `root`.
fn top_module(file: &str) -> String {
    module_path(file)
        .into_iter()
        .next()
        .unwrap_or_else(|| ROOT.to_owned())
}

/// The module a file is: `src/pg/connect/tls.rs` → `[pg, connect, tls]`,
/// `src/pg/mod.rs` → `[pg]`, `src/lib.rs` → `[]`.
fn module_path(file: &str) -> Vec<String> {
    let inner = file.strip_prefix("src/").unwrap_or(file);
    let inner = inner.strip_suffix(".rs").unwrap_or(inner);
    let mut parts: Vec<String> = inner.split('/').map(str::to_owned).collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

// ---- The scanner.

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Ident(String),
    /// `::`
    PathSep,
    Punct(char),
}

/// The tokens of Rust source with their lines, without comments, string,
/// char and number literals, and lifetimes.
fn tokenize(text: &str) -> Vec<(Token, usize)> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut line = 1;
    let mut i = 0;
    // Advances past `count` chars, counting newlines.
    let skip = |i: &mut usize, line: &mut usize, count: usize| {
        for _ in 0..count {
            if chars.get(*i) == Some(&'\n') {
                *line += 1;
            }
            *i += 1;
        }
    };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    skip(&mut i, &mut line, 2);
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    skip(&mut i, &mut line, 2);
                    if depth == 0 {
                        break;
                    }
                } else {
                    skip(&mut i, &mut line, 1);
                }
            }
        } else if c == '"' {
            skip_string(&chars, &mut i, &mut line);
        } else if c == '\'' {
            // A char literal ('x', '\n', '\u{1F600}') or a lifetime ('a).
            if next == Some('\\') || chars.get(i + 2) == Some(&'\'') {
                skip(&mut i, &mut line, 1);
                while i < chars.len() && chars[i] != '\'' {
                    let step = if chars[i] == '\\' { 2 } else { 1 };
                    skip(&mut i, &mut line, step);
                }
                i += 1;
            } else {
                i += 1;
                while i < chars.len() && is_ident_char(chars[i]) {
                    i += 1;
                }
            }
        } else if c.is_ascii_digit() {
            while i < chars.len() && (is_ident_char(chars[i]) || chars[i] == '.') {
                // `1..2` is two numbers and a range.
                if chars[i] == '.' && chars.get(i + 1) == Some(&'.') {
                    break;
                }
                i += 1;
            }
        } else if is_ident_start(c) {
            let start = i;
            while i < chars.len() && is_ident_char(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let at = chars.get(i).copied();
            match (word.as_str(), at) {
                // b"…", c"…", r"…", br"…", cr"…", and raw ones with #s.
                ("b" | "c" | "r" | "br" | "cr", Some('"')) => {
                    if word.ends_with('r') {
                        skip_raw_string(&chars, &mut i, &mut line);
                    } else {
                        skip_string(&chars, &mut i, &mut line);
                    }
                }
                ("r" | "br" | "cr", Some('#')) => {
                    let mut j = i;
                    while chars.get(j) == Some(&'#') {
                        j += 1;
                    }
                    if chars.get(j) == Some(&'"') {
                        skip_raw_string(&chars, &mut i, &mut line);
                    } else if word == "r" {
                        // A raw identifier, r#type.
                        i += 1;
                        let start = i;
                        while i < chars.len() && is_ident_char(chars[i]) {
                            i += 1;
                        }
                        tokens.push((Token::Ident(chars[start..i].iter().collect()), line));
                    } else {
                        tokens.push((Token::Ident(word), line));
                    }
                }
                // b'x'
                ("b", Some('\'')) => {
                    i += 1;
                    while i < chars.len() && chars[i] != '\'' {
                        i += if chars[i] == '\\' { 2 } else { 1 };
                    }
                    i += 1;
                }
                _ => tokens.push((Token::Ident(word), line)),
            }
        } else if c == ':' && next == Some(':') {
            tokens.push((Token::PathSep, line));
            i += 2;
        } else {
            if !c.is_whitespace() {
                tokens.push((Token::Punct(c), line));
            }
            skip(&mut i, &mut line, 1);
        }
    }
    tokens
}

fn is_ident_start(c: char) -> bool {
    c == '_' || c.is_alphabetic()
}

fn is_ident_char(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

/// Skips a `"…"` starting at `chars[*i] == '"'`, escapes included.
fn skip_string(chars: &[char], i: &mut usize, line: &mut usize) {
    *i += 1;
    while *i < chars.len() && chars[*i] != '"' {
        if chars[*i] == '\\' {
            *i += 1;
        }
        if chars.get(*i) == Some(&'\n') {
            *line += 1;
        }
        *i += 1;
    }
    *i += 1;
}

/// Skips `#…#"…"#…#` starting at the first `#` or `"` (after the `r`).
fn skip_raw_string(chars: &[char], i: &mut usize, line: &mut usize) {
    let mut hashes = 0;
    while chars.get(*i) == Some(&'#') {
        hashes += 1;
        *i += 1;
    }
    *i += 1; // the opening quote
    while *i < chars.len() {
        if chars[*i] == '"' && (1..=hashes).all(|k| chars.get(*i + k) == Some(&'#')) {
            *i += 1 + hashes;
            return;
        }
        if chars[*i] == '\n' {
            *line += 1;
        }
        *i += 1;
    }
}

/// The crate-internal paths of one file that name a top-level module
/// (`modules`) or the crate root; paths within the file's own top-level
/// module are kept too (the caller drops them).
fn scan(file: &str, text: &str, modules: &BTreeSet<String>) -> Vec<Import> {
    let tokens = tokenize(text);
    let file_module = module_path(file);
    // Inline `mod name {` blocks: (name, brace depth inside them).
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0;
    let mut imports = Vec::new();
    let at = |k: usize| tokens.get(k).map(|(t, _)| t);
    let ident = |k: usize, word: &str| matches!(at(k), Some(Token::Ident(w)) if w == word);
    let mut i = 0;
    while i < tokens.len() {
        match &tokens[i].0 {
            Token::Punct('{') => depth += 1,
            Token::Punct('}') => {
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
                depth -= 1;
            }
            Token::Ident(w)
                if w == "mod"
                    && matches!(at(i + 1), Some(Token::Ident(_)))
                    && at(i + 2) == Some(&Token::Punct('{')) =>
            {
                let Some(Token::Ident(name)) = at(i + 1) else {
                    unreachable!()
                };
                inline.push((name.clone(), depth + 1));
            }
            Token::Ident(w)
                if (w == "crate" || w == "super")
                    && at(i + 1) == Some(&Token::PathSep)
                    && at(i.wrapping_sub(1)) != Some(&Token::PathSep) =>
            {
                // Where the path starts: the crate root, or a module.
                let mut here: Vec<String> = file_module
                    .iter()
                    .cloned()
                    .chain(inline.iter().map(|(n, _)| n.clone()))
                    .collect();
                let mut k = i;
                let mut prefix = String::new();
                if w == "crate" {
                    here.clear();
                    prefix.push_str("crate::");
                    k += 2;
                } else {
                    while ident(k, "super") && at(k + 1) == Some(&Token::PathSep) {
                        if here.pop().is_none() {
                            break;
                        }
                        prefix.push_str("super::");
                        k += 2;
                    }
                }
                if let Some(top) = here.first() {
                    imports.push(Import {
                        line: tokens[i].1,
                        target: top.clone(),
                        path: path_text(&tokens, k, &prefix),
                    });
                } else {
                    imports.extend(rooted(&tokens, k, &prefix, modules));
                }
                i = k;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    imports
}

/// The path written from `tokens[k]` on (after `prefix`), a group as `{…}`.
fn path_text(tokens: &[(Token, usize)], k: usize, prefix: &str) -> String {
    let mut path = prefix.to_owned();
    let mut j = k;
    loop {
        match tokens.get(j).map(|(t, _)| t) {
            Some(Token::Ident(segment)) => path.push_str(segment),
            Some(Token::Punct('{')) => path.push_str("{…}"),
            Some(Token::Punct('*')) => path.push('*'),
            _ => break,
        }
        if tokens.get(j + 1).map(|(t, _)| t) != Some(&Token::PathSep) {
            break;
        }
        path.push_str("::");
        j += 2;
    }
    path
}

/// The paths that start at the crate root at `tokens[k]` (after
/// `crate::`, written as `prefix`): one, or each item of a `{…}` group.
fn rooted(
    tokens: &[(Token, usize)],
    k: usize,
    prefix: &str,
    modules: &BTreeSet<String>,
) -> Vec<Import> {
    let import = |k: usize| -> Option<Import> {
        let (Token::Ident(first), line) = tokens.get(k)? else {
            // `crate::*`
            let line = tokens.get(k).map_or(0, |(_, l)| *l);
            return Some(Import {
                line,
                target: ROOT.to_owned(),
                path: format!("{prefix}*"),
            });
        };
        let path = path_text(tokens, k, prefix);
        let target = if modules.contains(first) {
            first.clone()
        } else {
            ROOT.to_owned()
        };
        Some(Import {
            line: *line,
            target,
            path,
        })
    };
    if tokens.get(k).map(|(t, _)| t) != Some(&Token::Punct('{')) {
        return import(k).into_iter().collect();
    }
    // A group: the first segment of every item at its top level.
    let mut out = Vec::new();
    let mut depth = 0;
    let mut item_start = true;
    for (j, (token, _)) in tokens.iter().enumerate().skip(k) {
        match token {
            Token::Punct('{') => depth += 1,
            Token::Punct('}') => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            Token::Punct(',') if depth == 1 => {
                item_start = true;
                continue;
            }
            Token::Ident(w) if depth == 1 && item_start && w == "self" => {}
            _ if depth == 1 && item_start => out.extend(import(j)),
            _ => {}
        }
        if depth == 1 && !matches!(token, Token::Punct('{')) {
            item_start = false;
        }
    }
    out
}

// ---- The checker's own tests, on made-up files.

fn files(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(p, t)| ((*p).to_owned(), (*t).to_owned()))
        .collect()
}

#[test]
fn an_upward_import_is_reported_with_file_line_modules_and_layers() {
    let problems = check(&files(&[
        ("src/lib.rs", "pub mod pg;\npub mod steps;\n"),
        (
            "src/pg/connect.rs",
            "//! Connections.\n\nuse std::fmt;\nuse crate::steps::StepError;\n",
        ),
        (
            "src/steps/mod.rs",
            "use crate::pg::connect;\npub struct StepError;\n",
        ),
    ]));
    assert_eq!(
        problems[0],
        "src/pg/connect.rs:4: pg (layer 7) imports steps (layer 4): crate::steps::StepError \
         — a lower layer never names a higher one's items"
    );
    assert_eq!(problems.len(), 2, "{problems:#?}"); // and the circle
}

#[test]
fn a_grouped_use_across_lines_names_every_module() {
    let source = "use crate::{\n    anonymize::Rules,\n    report::{Report, Detail},\n    steps::StepError,\n};\n";
    let modules = ["anonymize", "report", "steps"].map(String::from).into();
    let found = scan("src/pg/x.rs", source, &modules);
    assert_eq!(
        found,
        vec![
            Import {
                line: 2,
                target: "anonymize".into(),
                path: "crate::anonymize::Rules".into()
            },
            Import {
                line: 3,
                target: "report".into(),
                path: "crate::report::{…}".into()
            },
            Import {
                line: 4,
                target: "steps".into(),
                path: "crate::steps::StepError".into()
            },
        ]
    );
}

#[test]
fn inline_paths_and_super_out_of_the_module_count() {
    let modules = ["pg", "steps", "report"].map(String::from).into();
    let source = "fn f() -> crate::report::Report {\n    let _ = super::steps::run();\n    super::super::other();\n}\nmod tests {\n    use super::super::super::steps::X;\n    use super::f;\n}\n";
    let imports = scan("src/pg/x.rs", source, &modules);
    let targets: Vec<&str> = imports.iter().map(|i| i.target.as_str()).collect();
    assert_eq!(targets, ["report", "pg", "root", "steps", "pg"]);
    let found: Vec<(usize, String)> = imports.into_iter().map(|i| (i.line, i.path)).collect();
    assert_eq!(
        found,
        [
            (1, "crate::report::Report"),
            (2, "super::steps::run"), // pg's own
            (3, "super::super::other"),
            (6, "super::super::super::steps::X"),
            (7, "super::f"),
        ]
        .map(|(l, p)| (l, p.to_owned()))
    );
    // super::super:: from a deeper file is still its own module.
    let deep = scan("src/pg/connect/tls.rs", "use super::super::copy;", &modules);
    assert_eq!(deep[0].target, "pg");
}

#[test]
fn paths_in_comments_and_literals_do_not_count() {
    let source = r####"
//! See crate::steps for who calls this.
/// Unlike `crate::engine::run`, this …
// use crate::cli;
/* a block with crate::cli::run /* nested crate::engine */ still crate::engine */
pub(crate) fn f(x: &'static str) -> char {
    let a = "crate::steps::StepError";
    let b = r#"a "quoted" crate::steps::X"#;
    let c = r"crate::steps::Y";
    let d = b"crate::steps";
    let e = '"';
    let g = '\'';
    let _ = (a, b, c, d, e, g, "\"crate::engine\"");
    'x'
}
fn h<'a>(s: &'a str) -> &'a str { crate::report::render(s) }
"####;
    let modules = ["cli", "engine", "steps", "report"]
        .map(String::from)
        .into();
    let found = scan("src/pg/x.rs", source, &modules);
    assert_eq!(
        found,
        vec![Import {
            line: 16,
            target: "report".into(),
            path: "crate::report::render".into()
        }]
    );
}

#[test]
fn a_same_layer_circle_is_reported_whole_with_a_place_per_arrow() {
    let problems = check(&files(&[
        ("src/progress/mod.rs", "use crate::report::Report;\n"),
        ("src/report/mod.rs", "\n\nuse crate::human::thousands;\n"),
        ("src/human.rs", "fn f() { crate::progress::Mode::Plain; }\n"),
        ("src/redact.rs", "use crate::human::human_bytes;\n"),
    ]));
    assert_eq!(
        problems,
        vec![
            "circle: human -> progress -> report -> human\n    \
             human -> progress: src/human.rs:1 (crate::progress::Mode::Plain)\n    \
             progress -> report: src/progress/mod.rs:1 (crate::report::Report)\n    \
             report -> human: src/report/mod.rs:3 (crate::human::thousands)"
        ]
    );
}

#[test]
fn a_module_missing_from_the_table_is_named() {
    let problems = check(&files(&[("src/gadgets/mod.rs", "")]));
    assert_eq!(
        problems,
        vec![
            "src/gadgets/mod.rs: module `gadgets` has no layer: add it to LAYERS in tests/layers.rs"
        ]
    );
}

#[test]
fn module_paths_of_files() {
    assert_eq!(top_module("src/cli/run.rs"), "cli");
    assert_eq!(top_module("src/redact.rs"), "redact");
    assert_eq!(top_module("src/pg/connect/tls.rs"), "pg");
    assert_eq!(top_module("src/lib.rs"), "root");
    assert_eq!(top_module("src/main.rs"), "root");
    assert_eq!(module_path("src/pg/mod.rs"), ["pg"]);
    assert_eq!(module_path("src/pg/connect.rs"), ["pg", "connect"]);
}
