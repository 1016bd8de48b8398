//! Every YAML file the repository ships is a test: each workflow under
//! `workflows/`, `examples/` and `benches/` passes `flightpath validate`
//! (with a placeholder for every variable it reads), and so does every file
//! under `anonymizers/` once that format exists.

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
    let root = repository();
    let mut files = Vec::new();
    for dir in ["workflows", "examples", "benches"] {
        yaml_files(&root.join(dir), &mut files);
    }
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

#[test]
fn anonymizer_presets_are_not_shipped_before_their_validator() {
    // Anonymizer files arrive with the anonymizers; until `validate` can
    // check them, none may be shipped unchecked.
    let mut files = Vec::new();
    yaml_files(&repository().join("anonymizers"), &mut files);
    assert!(files.is_empty(), "unvalidated anonymizer files: {files:?}");
}
