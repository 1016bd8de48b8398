//! Every YAML file the repository ships is a test: each workflow under
//! `workflows/`, `examples/` and `benches/` passes `flightpath validate`
//! (with a placeholder for every variable it reads), and every rules file
//! under `anonymizers/` loads and is built into the binary as a preset.

use std::path::{Path, PathBuf};

use crate::support::cli::Test;

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            yaml_files(&path, out);
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        ) {
            out.push(path);
        }
    }
}

/// Every YAML file under `workflows/`, `examples/` and `benches/`.
fn shipped_yaml() -> Vec<PathBuf> {
    let root = repository();
    let mut files = Vec::new();
    for dir in ["workflows", "examples", "benches"] {
        yaml_files(&root.join(dir), &mut files);
    }
    files
}

/// `${NAME}` references without a default, by name.
fn variables(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("${") {
        rest = &rest[at + 2..];
        let end = rest.find('}').unwrap_or(rest.len());
        let inner = &rest[..end];
        // Variables with a default need no value.
        let name = if inner.contains(":-") { "" } else { inner };
        if !name.starts_with("steps.") && !name.is_empty() && !names.contains(&name.to_string()) {
            names.push(name.to_string());
        }
    }
    names
}

#[test]
fn every_shipped_workflow_validates() {
    let mut files = shipped_yaml();
    // Rules files beside workflows are checked by the test below.
    files.retain(|f| !is_rules_file(f));
    assert!(
        files
            .iter()
            .any(|f| f.ends_with("examples/demo/reset-staging.yaml")),
        "the demo workflow is missing from {files:?}"
    );
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let mut args = vec!["validate".to_string(), file.display().to_string()];
        for name in variables(&text) {
            args.push("--var".into());
            args.push(format!(
                "{name}=postgres://user@db.invalid/{}",
                name.to_lowercase()
            ));
        }
        let out = Test::new().args(args).run();
        assert_eq!(
            out.code,
            0,
            "{} does not validate:\n{}",
            file.display(),
            out.stderr
        );
    }
}

/// An anonymizer rules file: a top-level `tables:` and no `steps:`.
fn is_rules_file(path: &Path) -> bool {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().any(|l| l.starts_with("tables:")) && !text.lines().any(|l| l.starts_with("steps:"))
}

#[test]
fn rules_files_beside_workflows_load() {
    use flightpath::anonymize::rules;
    use flightpath::syntax::template::Vars;

    let mut files = shipped_yaml();
    files.retain(|f| is_rules_file(f));
    assert!(
        files
            .iter()
            .any(|f| f.ends_with("examples/demo/anonymize.yaml"))
            && files
                .iter()
                .any(|f| f.ends_with("benches/anonymizers/bench.yaml")),
        "{files:?}"
    );
    let vars = Vars::only(Default::default());
    for file in &files {
        let name = file.file_name().unwrap().to_str().unwrap().to_string();
        let dir = file.parent().unwrap().to_path_buf();
        if let Err(e) = rules::load(&[name], &[dir], &vars) {
            panic!("{} does not load: {e:?}", file.display());
        }
    }
}

#[test]
fn every_shipped_rules_file_loads_and_every_preset_is_built_in() {
    use flightpath::anonymize::rules::{self, PRESETS, RulesError};
    use flightpath::syntax::template::Vars;

    let dir = repository().join("anonymizers");
    let mut files = Vec::new();
    yaml_files(&dir, &mut files);
    assert!(files.len() >= 4, "presets missing: {files:?}");
    let vars = Vars::only(Default::default());
    for file in &files {
        let name = file.file_name().unwrap().to_str().unwrap().to_string();
        match rules::load(
            std::slice::from_ref(&name),
            std::slice::from_ref(&dir),
            &vars,
        ) {
            Ok(set) => assert!(!set.tables.is_empty(), "{name} has no tables"),
            Err(RulesError {
                problems,
                unreadable,
            }) => panic!(
                "{name} does not load: {unreadable:?}\n{}",
                flightpath::syntax::diagnostics::render(&problems, false)
            ),
        }
        // The same text is built into the binary as `preset:<name>`.
        let stem = name.trim_end_matches(".yaml");
        let built_in = PRESETS.iter().find(|(n, _)| *n == stem);
        assert_eq!(
            built_in.map(|(_, text)| *text),
            Some(std::fs::read_to_string(file).unwrap().as_str()),
            "{name} is not built in as preset:{stem}"
        );
        let by_name = vec![format!("preset:{stem}")];
        if let Err(e) = rules::load(&by_name, &[], &vars) {
            panic!("preset:{stem} does not load: {e:?}");
        }
    }
}
