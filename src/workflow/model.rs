//! The validated workflow. Values of these types are only built by
//! [`super::load`], after every check passed; the engine never sees an
//! unchecked workflow.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use miette::NamedSource;

use crate::steps::StepParams;
pub use crate::steps::Target;

#[derive(Debug, Clone)]
pub struct Workflow {
    pub name: String,
    pub description: Option<String>,
    /// The file it was loaded from.
    pub path: PathBuf,
    /// Its text, named as the user gave it: for problems found after the
    /// load (a Heroku endpoint the API does not resolve) to point into.
    pub source: Arc<NamedSource<String>>,
    pub targets: BTreeMap<String, Target>,
    /// Main steps in execution order: dependencies first, then file order.
    pub steps: Vec<Step>,
    /// Steps run when any main step fails, in the same order rules.
    pub on_failure: Vec<Step>,
    /// Resolved values of secret-looking variables, for redaction.
    pub secrets: Vec<String>,
    /// Every `${raw:…}`: text inserted unquoted, named by `validate`.
    pub raw_uses: Vec<RawNote>,
}

/// One `${raw:…}` in the file, located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawNote {
    /// The variable or `steps.<id>.<output>` after `raw:`.
    pub name: String,
    /// What holds it: "`with` of step `x` (shell) `run`".
    pub what: String,
    /// 1-based line and column (in characters) in the workflow file.
    pub line: usize,
    pub column: usize,
}

#[derive(Debug, Clone)]
pub struct Step {
    pub id: String,
    /// Direct dependencies, by id.
    pub needs: Vec<String>,
    pub params: StepParams,
    pub on_failure: bool,
}

impl Step {
    pub fn kind(&self) -> &'static str {
        self.params.kind()
    }
}

impl Workflow {
    /// Every step, main then `on_failure`.
    pub fn all_steps(&self) -> impl Iterator<Item = &Step> {
        self.steps.iter().chain(self.on_failure.iter())
    }

    /// Names of the targets some step writes, sorted (the lock's key).
    pub fn written_targets(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .all_steps()
            .flat_map(|s| s.params.target_uses())
            .filter(|u| u.write)
            .map(|u| u.name)
            .collect();
        names.sort();
        names.dedup();
        names
    }
}
