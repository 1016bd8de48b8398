//! `scan`: the anonymizer's coverage of a live database. Reads the catalog
//! and the values of the columns that need evidence (small tables whole,
//! large ones by a repeatable page sample, every row with `--full`;
//! read-only, values never printed), prints every column as ruled, kept,
//! safe by type or uncovered with its evidence and how many rows of each
//! table were read, then the foreign servers, user mappings and foreign
//! tables (not copied under `foreign: skip`, else refused) and the large
//! objects (left out). Without `--anonymize` it names the shipped presets
//! whose tables exist and what they would cover. It can write a starter
//! rules file extending those presets, which it reads back and binds
//! before saying it was written.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use tokio_util::sync::CancellationToken;

use crate::anonymize::bind::{Anonymizer, Binding, Class};
use crate::anonymize::detect::Depth;
use crate::anonymize::keyed::Keyed;
use crate::anonymize::rules::{self, PRESETS, RuleSet, RulesError};
use crate::anonymize::starter::{Scanned, Starter, starter};
use crate::pg::catalog::{self, Table};
use crate::pg::connect::{connection_secrets, mask_connection_string};
use crate::pg::snapshot::read_only_session;
use crate::redact::Redactor;
use crate::syntax::diagnostics::render;
use crate::syntax::template::Vars;

use super::{EXIT_INVALID, EXIT_OK, EXIT_STEP_FAILED, ScanArgs};

fn anonymizer(rules: RuleSet) -> Anonymizer {
    Anonymizer {
        keyed: Keyed::new(rules.secret.as_deref()),
        rules,
        rewrite: None,
    }
}

pub async fn scan(workdir: &Path, args: ScanArgs) -> i32 {
    let vars = Vars::from_env(BTreeMap::new());
    let rules = if args.anonymize.is_empty() {
        RuleSet::default()
    } else {
        match rules::load(&args.anonymize, &[workdir.to_path_buf()], &vars) {
            // The same secret a clone would use: a file's `secret:`, else
            // the variable.
            Ok(set) => set.with_secret_variable(vars.get(rules::SECRET_VAR)),
            Err(RulesError {
                unreadable,
                problems,
            }) => {
                for (_, error) in unreadable {
                    eprintln!("error: {error}");
                }
                eprint!("{}", render(&problems, super::use_color_on_stderr()));
                return EXIT_INVALID;
            }
        }
    };
    // Everything scan prints or writes goes through this: the password as
    // the connector reads it is a registered secret.
    let redactor = Redactor::default()
        .with_secrets(connection_secrets(&args.source))
        .with_secrets(rules.secrets.iter().cloned());
    let shown = redactor.redact(&mask_connection_string(&args.source));
    let client = match read_only_session("source", &args.source, &CancellationToken::new()).await {
        Ok(client) => client,
        Err(e) => {
            eprintln!("error: {}", redactor.redact(&e.to_string()));
            return EXIT_STEP_FAILED;
        }
    };
    let listed = async {
        Ok::<_, tokio_postgres::Error>((
            catalog::tables(&client).await?,
            catalog::outside(&client).await?,
            catalog::column_facts(&client).await?,
            crate::pg::catalog_schema::schema_texts(&client).await?,
        ))
    };
    let (tables, outside, facts, schema_texts) = match listed.await {
        Ok(listed) => listed,
        Err(e) => {
            eprintln!(
                "error: reading the catalog of {shown} (tables, foreign objects, large objects, keys, schema texts): {}",
                redactor.redact(&crate::pg::connect::describe(&e, None))
            );
            return EXIT_STEP_FAILED;
        }
    };
    let foreign_skip = rules.foreign_skip;
    let schema_keep = rules.schema_keep;
    let large_objects_copy = rules.large_objects_copy;
    let mut binding = anonymizer(rules).bind(&tables);
    let depth = if args.full {
        Depth::Full
    } else {
        Depth::Sample(crate::clone::plan::SAMPLE_ROWS)
    };
    let read = match crate::clone::plan::sample(&mut binding, &client, &tables, depth).await {
        Ok(read) => read,
        Err(e) => {
            eprintln!("error: sampling {}", redactor.redact(&e));
            return EXIT_STEP_FAILED;
        }
    };

    let mut counts = [0usize; 5];
    let mut current = "";
    for c in &binding.coverage {
        if c.table != current {
            match read.get(&c.table) {
                Some(r) => println!("{}   ({})", one_line(&c.table), r.describe()),
                None => println!("{}", one_line(&c.table)),
            }
            current = &c.table;
        }
        counts[c.class.slot()] += 1;
        println!(
            "  {:<32} {:<28} {}",
            one_line(&c.column),
            c.type_name,
            c.class.describe()
        );
    }
    for line in outside_lines(&outside, foreign_skip, large_objects_copy) {
        println!("{line}");
    }
    let findings = crate::anonymize::bind::schema_findings(&schema_texts);
    for line in schema_lines(&findings, schema_keep) {
        println!("{line}");
    }
    for m in &binding.mismatches {
        println!("rule problem: {m}");
    }
    let presets = if args.anonymize.is_empty() {
        applicable_presets(&tables, &binding)
    } else {
        Vec::new()
    };
    if !presets.is_empty() {
        println!();
    }
    for preset in &presets {
        println!("{}", preset.describe());
    }
    println!(
        "\n{} tables, {} columns: {} ruled, {} kept, {} safe by type, {} in empty tables, {} uncovered",
        tables.len(),
        binding.coverage.len(),
        counts[0],
        counts[1],
        counts[2],
        counts[3],
        counts[4]
    );
    let refused = outside.has_foreign() && !foreign_skip;
    let code = if counts[4] > 0 || !binding.mismatches.is_empty() || refused {
        EXIT_STEP_FAILED
    } else {
        EXIT_OK
    };
    if let Some(path) = &args.write {
        let path = workdir.join(path);
        let names: Vec<String> = presets
            .iter()
            .map(|p| format!("preset:{}", p.name))
            .collect();
        let (base, names) = match with_presets(&names, &tables, &binding) {
            Some(base) => (base, names),
            None => {
                if !names.is_empty() {
                    println!(
                        "note: {} do not load or bind together here; the starter rules every table itself",
                        names.join(" and ")
                    );
                }
                (binding, Vec::new())
            }
        };
        let mut refused = BTreeSet::new();
        let written = loop {
            let text = starter(&Scanned {
                binding: &base,
                tables: &tables,
                source: &shown,
                read: &read,
                facts: &facts,
                presets: &names,
                refused: &refused,
            });
            if let Err(e) = std::fs::write(&path, &text.text) {
                eprintln!("error: writing {}: {e}", path.display());
                return EXIT_STEP_FAILED;
            }
            match refused_columns(workdir, &path, &tables, &text) {
                Ok(now) if now.is_empty() => break Ok(()),
                Ok(now) if now.is_subset(&refused) => {
                    break Err(format!(
                        "the binder still refuses {} of its rules",
                        now.len()
                    ));
                }
                Ok(now) => refused.extend(now),
                Err(e) => break Err(e),
            }
        };
        if let Err(e) = written {
            eprintln!(
                "error: the starter rules written to {} do not fit the database: {e}\n  \
                 help: this is a bug in flightpath's suggestions; fix the rules named above by hand",
                path.display()
            );
            return EXIT_STEP_FAILED;
        }
        println!("starter rules written to {}", path.display());
    }
    code
}

/// A name as one line of the table: control characters (a newline in a
/// column's name) escaped as Rust writes them.
fn one_line(name: &str) -> std::borrow::Cow<'_, str> {
    if name.chars().any(char::is_control) {
        name.escape_debug().to_string().into()
    } else {
        name.into()
    }
}

/// A shipped preset whose tables the schema has, and what it would cover.
struct PresetFit {
    name: &'static str,
    /// Uncovered columns (without rules) it covers, of all uncovered.
    covers: usize,
    of: usize,
    /// Tables those columns are in.
    tables: usize,
    /// Other presets it extends (and so includes).
    includes: Vec<String>,
}

impl PresetFit {
    /// `preset django applies: covers 9 of 14 uncovered columns in 3 tables`.
    fn describe(&self) -> String {
        let includes = if self.includes.is_empty() {
            String::new()
        } else {
            format!(" (includes {})", self.includes.join(", "))
        };
        format!(
            "preset {}{includes} applies: covers {} of {} uncovered column{} in {} table{}; \
             use it with `--anonymize preset:{}`, or `extends: [preset:{}]` in your rules",
            self.name,
            self.covers,
            self.of,
            if self.of == 1 { "" } else { "s" },
            self.tables,
            if self.tables == 1 { "" } else { "s" },
            self.name,
            self.name,
        )
    }
}

/// The presets that apply to `tables`: every table a preset requires
/// exists (an `optional: true` table may be missing), at least one it
/// names exists, and it binds without a problem. A preset included by
/// another that applies (django by wagtail) is left to that one.
/// `binding` is the scan's, without rules, sampled.
fn applicable_presets(tables: &[Table], binding: &Binding) -> Vec<PresetFit> {
    let present: BTreeSet<String> = tables
        .iter()
        .map(|t| format!("{}.{}", t.schema, t.name))
        .collect();
    let uncovered: BTreeSet<(&str, &str)> = binding
        .uncovered()
        .map(|c| (c.table.as_str(), c.column.as_str()))
        .collect();
    let mut fits = Vec::new();
    for (name, _) in PRESETS {
        let Ok(rules) = rules::load(
            &[format!("preset:{name}")],
            &[],
            &Vars::only(BTreeMap::new()),
        ) else {
            continue;
        };
        let required = rules.tables.iter().filter(|(_, t)| !t.optional);
        let all_required = required.clone().all(|(key, _)| present.contains(key));
        let any = rules.tables.keys().any(|key| present.contains(key));
        if !all_required || !any {
            continue;
        }
        let includes: Vec<String> = rules
            .files
            .iter()
            .filter_map(|f| f.strip_prefix("preset:"))
            .filter(|f| f != name)
            .map(str::to_string)
            .collect();
        let bound = anonymizer(rules).bind(tables);
        if !bound.mismatches.is_empty() {
            continue;
        }
        let covered: Vec<&crate::anonymize::bind::Coverage> = bound
            .coverage
            .iter()
            .filter(|c| {
                uncovered.contains(&(c.table.as_str(), c.column.as_str()))
                    && !matches!(c.class, Class::Uncovered(_) | Class::SafeByType)
            })
            .collect();
        let in_tables: BTreeSet<&str> = covered.iter().map(|c| c.table.as_str()).collect();
        fits.push(PresetFit {
            name,
            covers: covered.len(),
            of: uncovered.len(),
            tables: in_tables.len(),
            includes,
        });
    }
    let included: BTreeSet<String> = fits.iter().flat_map(|f| f.includes.clone()).collect();
    fits.retain(|f| !included.contains(f.name));
    fits
}

/// The scan's binding redone with `presets` as the rules, the evidence
/// sampled without rules carried over (a column the presets leave
/// uncovered keeps what its values looked like). `None` without presets,
/// or when together they do not load or bind cleanly.
fn with_presets(presets: &[String], tables: &[Table], scanned: &Binding) -> Option<Binding> {
    if presets.is_empty() {
        return None;
    }
    let rules = rules::load(presets, &[], &Vars::only(BTreeMap::new())).ok()?;
    let mut bound = anonymizer(rules).bind(tables);
    if !bound.mismatches.is_empty() {
        return None;
    }
    let evidence: BTreeMap<(&str, &str), &Class> = scanned
        .uncovered()
        .map(|c| ((c.table.as_str(), c.column.as_str()), &c.class))
        .collect();
    for c in &mut bound.coverage {
        if let (Class::Uncovered(_) | Class::SafeByType, Some(class)) = (
            &c.class,
            evidence.get(&(c.table.as_str(), c.column.as_str())),
        ) {
            c.class = (*class).clone();
        }
    }
    Some(bound)
}

/// Reads back the starter file at `path` as a clone would (the secret set)
/// and binds it to `tables`: the columns whose rule the binder refused
/// (empty when it fits), or why the file does not load.
fn refused_columns(
    workdir: &Path,
    path: &Path,
    tables: &[Table],
    starter: &Starter,
) -> Result<BTreeSet<(String, String)>, String> {
    let vars = Vars::only(BTreeMap::from([(
        rules::SECRET_VAR.to_string(),
        "scan-check".to_string(),
    )]));
    let reference = path.display().to_string();
    let rules = rules::load(
        std::slice::from_ref(&reference),
        &[workdir.to_path_buf()],
        &vars,
    )
    .map_err(|e| e.lines().join("; "))?;
    let bound = anonymizer(rules).bind(tables);
    let mut refused = BTreeSet::new();
    for m in &bound.mismatches {
        let text = &m.origin.file.text;
        let line = text[..m.origin.span.offset.min(text.len())]
            .matches('\n')
            .count()
            + 1;
        match starter.lines.iter().find(|(l, _, _)| *l == line) {
            Some((_, table, column)) if m.origin.file.shown == reference => {
                refused.insert((table.clone(), column.clone()));
            }
            _ => return Err(m.to_string()),
        }
    }
    Ok(refused)
}

/// The coverage lines of what is outside the copied tables: each foreign
/// table under its name, each server and user mapping, and the count of
/// large objects. Names only, never a server's options.
fn outside_lines(
    outside: &catalog::Outside,
    foreign_skip: bool,
    large_objects_copy: bool,
) -> Vec<String> {
    let fate = if foreign_skip {
        "not copied (foreign: skip)"
    } else {
        "refused: a clone stops unless the rules say `foreign: skip`"
    };
    let mut lines = Vec::new();
    for table in &outside.foreign_tables {
        lines.push(table.clone());
        lines.push(format!("  foreign table: {fate}"));
    }
    for view in &outside.foreign_views {
        lines.push(view.clone());
        lines.push(format!("  view reading a foreign table: {fate}"));
    }
    for server in &outside.servers {
        lines.push(format!("foreign server {server}: {fate}"));
    }
    for mapping in &outside.user_mappings {
        lines.push(format!("user mapping for {mapping}: {fate}"));
    }
    if outside.large_objects > 0 {
        lines.push(format!(
            "{} large object{}: {}",
            outside.large_objects,
            if outside.large_objects == 1 { "" } else { "s" },
            if large_objects_copy {
                "copied as they are (large_objects: copy)"
            } else {
                "left out (copied only when the rules say `large_objects: copy`)"
            }
        ));
    }
    lines
}

/// The schema's objects whose text holds personal data (defaults, enum
/// labels, functions, views, constraints …), with their fate: the kind
/// found, never the text. Comments are not among them: a clone redacts
/// those.
fn schema_lines(findings: &[crate::anonymize::bind::SchemaFinding], keep: bool) -> Vec<String> {
    let fate = if keep {
        "copied as it is (schema: keep)"
    } else {
        "refused: a clone stops unless the rules say `schema: keep`"
    };
    findings
        .iter()
        .map(|f| {
            let kinds: Vec<&str> = f.kinds.iter().map(|k| k.name()).collect();
            format!("{} holds {}: {fate}", one_line(&f.object), kinds.join(", "))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn foreign_objects_and_large_objects_are_listed_with_their_fate() {
        let outside = catalog::Outside {
            servers: vec!["prod_link (postgres_fdw)".into()],
            user_mappings: vec!["app on prod_link".into()],
            foreign_tables: vec![r#""public"."remote_people""#.into()],
            large_objects: 3,
            ..catalog::Outside::default()
        };
        assert_eq!(
            outside_lines(&outside, true, false),
            [
                r#""public"."remote_people""#,
                "  foreign table: not copied (foreign: skip)",
                "foreign server prod_link (postgres_fdw): not copied (foreign: skip)",
                "user mapping for app on prod_link: not copied (foreign: skip)",
                "3 large objects: left out (copied only when the rules say `large_objects: copy`)",
            ]
        );
        assert!(outside_lines(&outside, false, false)[1].starts_with("  foreign table: refused"));
        assert_eq!(
            outside_lines(&outside, false, true)[4],
            "3 large objects: copied as they are (large_objects: copy)"
        );
        assert!(outside_lines(&catalog::Outside::default(), false, false).is_empty());
    }

    #[test]
    fn schema_findings_are_listed_with_their_kinds_and_fate_never_the_text() {
        use crate::anonymize::bind::SchemaFinding;
        use crate::anonymize::patterns::PiiKind;
        let findings = [SchemaFinding {
            object: "default of column public.people.email".into(),
            kinds: vec![PiiKind::Email, PiiKind::Phone],
        }];
        assert_eq!(
            schema_lines(&findings, false),
            ["default of column public.people.email holds email, phone: \
              refused: a clone stops unless the rules say `schema: keep`"]
        );
        assert_eq!(
            schema_lines(&findings, true),
            [
                "default of column public.people.email holds email, phone: copied as it is (schema: keep)"
            ]
        );
    }
}
