//! `list`: the workflows under ./workflows, with their descriptions.

use std::path::Path;

use crate::syntax::template::Vars;
use crate::workflow::{self, LoadError};

use super::{EXIT_INVALID, EXIT_OK};

pub fn list(workdir: &Path) -> i32 {
    let dir = workdir.join("workflows");
    let mut files: Vec<_> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
            .collect(),
        Err(_) => {
            eprintln!("no workflows: ./workflows does not exist (create workflows/<name>.yaml)");
            return EXIT_INVALID;
        }
    };
    files.sort();
    if files.is_empty() {
        eprintln!("no workflows in ./workflows");
        return EXIT_OK;
    }
    // Variables are not needed to list; missing ones are not reported here.
    let vars = Vars::from_env(Default::default());
    for path in files {
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("?")
            .to_string();
        let shown = format!(
            "workflows/{}",
            path.file_name().and_then(|s| s.to_str()).unwrap_or("?")
        );
        let line = match workflow::load(&path, &shown, &vars) {
            Ok(w) => describe(&name, w.steps.len(), w.description.as_deref()),
            Err(LoadError::Invalid { problems, .. })
                if problems
                    .iter()
                    .all(|p| p.problem.code == "flightpath::var::missing") =>
            {
                format!("{name:<24} (needs variables: {})", missing_vars(&problems))
            }
            Err(LoadError::Invalid { problems, .. }) => format!(
                "{name:<24} invalid: {} problem(s); see `flightpath validate {name}`",
                problems.len()
            ),
            Err(other) => format!("{name:<24} unreadable: {other}"),
        };
        println!("{line}");
    }
    EXIT_OK
}

fn describe(name: &str, steps: usize, description: Option<&str>) -> String {
    let description = description.unwrap_or("").lines().next().unwrap_or("");
    format!("{name:<24} {steps:>2} steps  {description}")
}

fn missing_vars(problems: &[crate::syntax::diagnostics::Located]) -> String {
    let mut names: Vec<String> = problems
        .iter()
        .filter_map(|p| p.problem.message.split('`').nth(1).map(str::to_string))
        .collect();
    names.sort();
    names.dedup();
    names.join(", ")
}
