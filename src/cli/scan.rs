//! `scan`: the anonymizer's coverage of a live database. Reads the catalog
//! and a bounded sample of values (read-only, values never printed), prints
//! every column as ruled, kept, safe by type or uncovered with its evidence,
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
    if counts[4] > 0 || !binding.mismatches.is_empty() {
        EXIT_STEP_FAILED
    } else {
        EXIT_OK
    }
}
