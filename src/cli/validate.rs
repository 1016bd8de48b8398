//! `validate`: load and check a workflow offline. Connects to nothing,
//! writes nothing; prints every problem found, located.

use std::collections::BTreeMap;
use std::path::Path;

use crate::syntax::template::Vars;
use crate::workflow;

use super::{EXIT_INVALID, EXIT_OK, ValidateArgs, print_load_error};

pub fn validate(workdir: &Path, args: &ValidateArgs) -> i32 {
    let path = match workflow::resolve(workdir, &args.workflow.workflow) {
        Ok(path) => path,
        Err(err) => {
            print_load_error(&err, false);
            return EXIT_INVALID;
        }
    };
    let vars = Vars::from_env(
        args.workflow
            .vars
            .iter()
            .cloned()
            .collect::<BTreeMap<_, _>>(),
    );
    match workflow::load(&path, &super::shown(workdir, &path), &vars) {
        Ok(workflow) => {
            let on_failure = if workflow.on_failure.is_empty() {
                String::new()
            } else {
                format!(", {} on failure", workflow.on_failure.len())
            };
            println!(
                "{} is valid: workflow `{}`, {} step{}{on_failure}",
                args.workflow.workflow,
                workflow.name,
                workflow.steps.len(),
                if workflow.steps.len() == 1 { "" } else { "s" },
            );
            let shown = super::shown(workdir, &path);
            for raw in &workflow.raw_uses {
                eprintln!(
                    "note: `${{raw:{}}}` at {shown}:{}:{} ({}) is inserted as it is, unquoted: \
                     make sure its value cannot become code",
                    raw.name, raw.line, raw.column, raw.what
                );
            }
            EXIT_OK
        }
        Err(err) => {
            print_load_error(&err, false);
            EXIT_INVALID
        }
    }
}
