//! `scan`: the anonymizer's coverage of a live database. Reads the catalog
//! and a bounded sample of values (read-only, values never printed), prints
//! every column as ruled, kept, safe by type or uncovered with its evidence,
//! then the foreign servers, user mappings and foreign tables (not copied
//! under `foreign: skip`, else refused) and the large objects (left out),
//! and can write a starter rules file.

use std::collections::BTreeMap;
use std::path::Path;

use tokio_util::sync::CancellationToken;

use crate::anonymize::bind::Anonymizer;
use crate::anonymize::keyed::Keyed;
use crate::anonymize::rules::{self, RuleSet, RulesError};
use crate::anonymize::starter::starter;
use crate::pg::catalog;
use crate::pg::connect::{connection_secrets, mask_connection_string};
use crate::pg::snapshot::read_only_session;
use crate::redact::Redactor;
use crate::syntax::diagnostics::render;
use crate::syntax::template::Vars;

use super::{EXIT_INVALID, EXIT_OK, EXIT_STEP_FAILED, ScanArgs};

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
    let tables = match catalog::tables(&client).await {
        Ok(tables) => tables,
        Err(e) => {
            eprintln!(
                "error: listing tables of {shown}: {}",
                redactor.redact(&crate::pg::connect::describe(&e, None))
            );
            return EXIT_STEP_FAILED;
        }
    };
    let outside = match catalog::outside(&client).await {
        Ok(outside) => outside,
        Err(e) => {
            eprintln!(
                "error: listing foreign objects and large objects of {shown}: {}",
                redactor.redact(&crate::pg::connect::describe(&e, None))
            );
            return EXIT_STEP_FAILED;
        }
    };
    let foreign_skip = rules.foreign_skip;
    let anonymizer = Anonymizer {
        keyed: Keyed::new(rules.secret.as_deref()),
        rules,
        rewrite: None,
    };
    let mut binding = anonymizer.bind(&tables);
    if let Err(e) = crate::clone::plan::sample(&mut binding, &client, &tables).await {
        eprintln!("error: sampling {}", redactor.redact(&e.to_string()));
        return EXIT_STEP_FAILED;
    }

    let mut counts = [0usize; 5];
    let mut current = "";
    for c in &binding.coverage {
        if c.table != current {
            println!("{}", c.table);
            current = &c.table;
        }
        counts[c.class.slot()] += 1;
        println!(
            "  {:<32} {:<28} {}",
            c.column,
            c.type_name,
            c.class.describe()
        );
    }
    for line in outside_lines(&outside, foreign_skip) {
        println!("{line}");
    }
    for m in &binding.mismatches {
        println!("rule problem: {m}");
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
    if let Some(path) = &args.write {
        let text = starter(&binding, &tables, &shown);
        let path = workdir.join(path);
        if let Err(e) = std::fs::write(&path, text) {
            eprintln!("error: writing {}: {e}", path.display());
            return EXIT_STEP_FAILED;
        }
        println!("starter rules written to {}", path.display());
    }
    let refused = outside.has_foreign() && !foreign_skip;
    if counts[4] > 0 || !binding.mismatches.is_empty() || refused {
        EXIT_STEP_FAILED
    } else {
        EXIT_OK
    }
}

/// The coverage lines of what is outside the copied tables: each foreign
/// table under its name, each server and user mapping, and the count of
/// large objects. Names only, never a server's options.
fn outside_lines(outside: &catalog::Outside, foreign_skip: bool) -> Vec<String> {
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
            "{} large object{}: left out (not copied)",
            outside.large_objects,
            if outside.large_objects == 1 { "" } else { "s" }
        ));
    }
    lines
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
            outside_lines(&outside, true),
            [
                r#""public"."remote_people""#,
                "  foreign table: not copied (foreign: skip)",
                "foreign server prod_link (postgres_fdw): not copied (foreign: skip)",
                "user mapping for app on prod_link: not copied (foreign: skip)",
                "3 large objects: left out (not copied)",
            ]
        );
        assert!(outside_lines(&outside, false)[1].starts_with("  foreign table: refused"));
        assert!(outside_lines(&catalog::Outside::default(), false).is_empty());
    }
}
