//! Step kinds: a closed enum, one module per kind. Each kind's `Params`
//! implements [`Kind`]:
//! - `parse` — reads its strict `with:` mapping (runs in `validate`),
//! - `plan` — read-only against real systems, the dry-run half,
//! - `run` — does the work,
//!
//! and `step_kinds!` lists the kinds once, generating [`StepParams`],
//! [`KINDS`] and the dispatch over them.
//!
//! Steps never print: they return a [`StepOutcome`] (summary, outputs,
//! details for the report) and draw progress through [`StepCtx::progress`].

pub mod approve;
pub mod git_merged_branches;
pub mod git_reset_branch;
pub mod http_check;
pub mod media_sync;
pub mod notify;
pub mod postgres_backup;
pub mod postgres_clone;
pub mod postgres_restore;
pub mod postgres_sql;
pub mod postgres_staging_only_rows;
pub mod shell;
mod target;

pub use target::{HerokuUse, MediaCredentials, Target};

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::progress::Progress;
use crate::redact::Redactor;
use crate::report::model::{Detail, Report};
use crate::syntax::reader::{LoadCtx, MapReader};
use crate::syntax::template::Template;
use crate::syntax::yaml::Span;

/// Kinds described in the design that this version does not have yet.
pub const PLANNED_KINDS: &[&str] = &[];

/// Which facet of a target a step uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Facet {
    Postgres,
    Media,
    Git,
}

impl Facet {
    pub fn key(self) -> &'static str {
        match self {
            Facet::Postgres => "postgres",
            Facet::Media => "media",
            Facet::Git => "git",
        }
    }
}

/// A step's reference to a named target, for validation and locking.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetUse {
    pub name: String,
    /// Where the name is written in the step's `with:`.
    pub span: Span,
    pub write: bool,
    pub facet: Facet,
}

/// One step kind: its name in `uses:`, what it sets, and its phases. Each
/// kind's `Params` implements it in the kind's own module; `step_kinds!`
/// lists the kinds once. Every phase without a default is required, so the
/// compiler checks that a new kind handles each one.
pub trait Kind: Sized {
    /// As written in `uses:`.
    const NAME: &'static str;
    /// The outputs a step of this kind sets, which `${steps.<id>.<output>}`
    /// may read (the `.output(…)` calls of its module).
    const OUTPUTS: &'static [&'static str];
    /// Whether running it changes something outside flightpath (asks for
    /// confirmation before a real run).
    const DESTRUCTIVE: bool;

    /// Reads the kind's strict `with:` mapping. Problems go to `cx`; `None`
    /// when the parameters could not be read.
    fn parse(with: &mut MapReader, cx: &mut LoadCtx) -> Option<Self>;

    /// Every interpolated string in the parameters (to check `${steps.…}`).
    fn templates(&self) -> Vec<&Template>;

    /// Whether this step, as written, changes something (the kind's
    /// `DESTRUCTIVE`, unless its parameters say it cannot: a read-only
    /// `postgres.sql`).
    fn destructive(&self) -> bool {
        Self::DESTRUCTIVE
    }

    /// The named targets this step reads or writes; most kinds use none.
    fn target_uses(&self) -> Vec<TargetUse> {
        Vec::new()
    }

    /// Whether what the step does lives only in this run's memory, so a
    /// resumed run must do it again.
    fn hands_off(&self) -> bool {
        false
    }

    /// The dry-run half: read-only, never writes anything anywhere.
    fn plan(&self, ctx: &StepCtx) -> impl Future<Output = Result<StepOutcome, StepError>> + Send;

    /// Does the work.
    fn run(&self, ctx: &StepCtx) -> impl Future<Output = Result<StepOutcome, StepError>> + Send;
}

/// The one list of step kinds: `Variant(module)`, where `module::Params`
/// implements [`Kind`]. It generates [`StepParams`], [`KINDS`] and the
/// methods that dispatch to each kind, so adding a kind is one line here
/// plus its module.
macro_rules! step_kinds {
    ($($variant:ident($module:ident)),+ $(,)?) => {
        /// The kinds this version implements, as written in `uses:`.
        pub const KINDS: &[&str] = &[$(<$module::Params as Kind>::NAME),+];

        /// A step's `with:`, parsed into its kind's strict parameters.
        #[derive(Debug, Clone)]
        pub enum StepParams {
            $($variant($module::Params)),+
        }

        impl StepParams {
            /// Parses `with:` for `kind` (one of [`KINDS`]). Problems go to
            /// `cx`; `None` when the parameters could not be read.
            pub fn parse(kind: &str, with: &mut MapReader, cx: &mut LoadCtx) -> Option<StepParams> {
                $(
                    if kind == <$module::Params as Kind>::NAME {
                        return <$module::Params as Kind>::parse(with, cx).map(StepParams::$variant);
                    }
                )+
                unreachable!("parse called with unknown kind {kind}")
            }

            pub fn kind(&self) -> &'static str {
                match self {
                    $(StepParams::$variant(_) => <$module::Params as Kind>::NAME),+
                }
            }

            /// The outputs a step of this kind sets, which
            /// `${steps.<id>.<output>}` may read.
            pub fn outputs(&self) -> &'static [&'static str] {
                match self {
                    $(StepParams::$variant(_) => <$module::Params as Kind>::OUTPUTS),+
                }
            }

            /// Every interpolated string in the parameters (to check
            /// `${steps.…}`).
            pub fn templates(&self) -> Vec<&Template> {
                match self {
                    $(StepParams::$variant(p) => p.templates()),+
                }
            }

            /// The named targets this step reads or writes.
            pub fn target_uses(&self) -> Vec<TargetUse> {
                match self {
                    $(StepParams::$variant(p) => p.target_uses()),+
                }
            }

            /// Whether running it changes something outside flightpath
            /// (asks for confirmation before a real run).
            pub fn destructive(&self) -> bool {
                match self {
                    $(StepParams::$variant(p) => Kind::destructive(p)),+
                }
            }

            /// Whether what the step does lives only in this run's memory
            /// (a carry-over for a later clone): a resumed run never reuses it.
            pub fn hands_off(&self) -> bool {
                match self {
                    $(StepParams::$variant(p) => p.hands_off()),+
                }
            }

            /// The dry-run half: read-only, never writes anything anywhere.
            pub async fn plan(&self, ctx: &StepCtx) -> Result<StepOutcome, StepError> {
                match self {
                    $(StepParams::$variant(p) => Kind::plan(p, ctx).await),+
                }
            }

            pub async fn run(&self, ctx: &StepCtx) -> Result<StepOutcome, StepError> {
                match self {
                    $(StepParams::$variant(p) => Kind::run(p, ctx).await),+
                }
            }
        }
    };
}

step_kinds! {
    Shell(shell),
    GitMergedBranches(git_merged_branches),
    GitResetBranch(git_reset_branch),
    PostgresSql(postgres_sql),
    PostgresClone(postgres_clone),
    PostgresStagingOnlyRows(postgres_staging_only_rows),
    PostgresBackup(postgres_backup),
    PostgresRestore(postgres_restore),
    MediaSync(media_sync),
    HttpCheck(http_check),
    Approve(approve),
    Notify(notify),
}

/// The outputs of finished steps, by step id then output name.
pub type Outputs = Arc<BTreeMap<String, serde_json::Map<String, serde_json::Value>>>;

/// What a step hands back to the engine.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepOutcome {
    /// One sentence; "would …" from `plan`, past tense from `run`.
    pub summary: String,
    /// Values later steps read as `${steps.<id>.<name>}`.
    pub outputs: serde_json::Map<String, serde_json::Value>,
    pub details: Vec<Detail>,
    /// Work left for the end of the run: confirm on success, undo on failure.
    pub after_run: Vec<AfterRun>,
    /// From `plan`: what the plan read that the run must hold to (the
    /// commit a branch was at, for a push with a lease). The engine hands
    /// it to the same step's `run` as [`StepCtx::planned`]; it is never
    /// shown or journaled.
    pub for_run: Option<serde_json::Value>,
}

/// What a step leaves for the end of the run, once it is known whether the
/// whole run succeeded. Journaled (it holds names, never URLs or secrets),
/// so a resumed run can finish what a dead one left.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AfterRun {
    /// `postgres.clone` (or `postgres.restore`) swapped a new database in for
    /// staging: on success the old one is dropped (unless `keep_old`); on
    /// failure the swap is undone.
    PostgresSwap {
        target: String,
        /// The staging server's database that maintenance connections use
        /// (`postgres`, else `template1`).
        maintenance_database: String,
        swapped: crate::pg::swap::Swapped,
        keep_old: bool,
    },
}

impl AfterRun {
    /// The step that left this behind succeeded, and so did the run.
    pub async fn commit(&self, targets: &BTreeMap<String, Target>) -> Result<String, String> {
        match self {
            AfterRun::PostgresSwap {
                target,
                maintenance_database,
                swapped,
                keep_old,
            } => {
                postgres_clone::commit_swap(
                    targets,
                    target,
                    maintenance_database,
                    swapped,
                    *keep_old,
                )
                .await
            }
        }
    }

    /// The run failed after this step succeeded: undo it.
    pub async fn rollback(&self, targets: &BTreeMap<String, Target>) -> Result<String, String> {
        match self {
            AfterRun::PostgresSwap {
                target,
                maintenance_database,
                swapped,
                ..
            } => {
                postgres_clone::rollback_swap(targets, target, maintenance_database, swapped).await
            }
        }
    }

    /// Whether what this confirms or undoes is still there (a resumed run
    /// reuses the step only then).
    pub async fn still_in_place(&self, targets: &BTreeMap<String, Target>) -> bool {
        match self {
            AfterRun::PostgresSwap {
                target,
                maintenance_database,
                swapped,
                ..
            } => {
                postgres_clone::swap_still_in_place(targets, target, maintenance_database, swapped)
                    .await
            }
        }
    }
}

impl StepOutcome {
    pub fn new(summary: impl Into<String>) -> Self {
        StepOutcome {
            summary: summary.into(),
            ..Default::default()
        }
    }

    pub fn output(mut self, name: &str, value: impl Into<serde_json::Value>) -> Self {
        self.outputs.insert(name.to_string(), value.into());
        self
    }

    pub fn detail(mut self, detail: Detail) -> Self {
        self.details.push(detail);
        self
    }

    /// Keeps a plan-time fact for the run (see [`StepOutcome::for_run`]).
    pub fn for_run(mut self, value: serde_json::Value) -> Self {
        self.for_run = Some(value);
        self
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// The step did its work and it did not succeed (non-zero exit, failed
    /// check); `details` go to the report (e.g. the tail of the output).
    #[error("{message}")]
    Failed {
        message: String,
        details: Vec<Detail>,
    },
    /// Refused for safety: exit code 3.
    #[error("{0}")]
    Refused(String),
    #[error("cancelled")]
    Cancelled,
    #[error(
        "`${{steps.{step}.{output}}}` is not available: step `{step}` did not produce `{output}`"
    )]
    MissingOutput { step: String, output: String },
    /// A database error on a named target; `message` has the server's text.
    #[error("postgres target `{target}`: {message}")]
    Postgres { target: String, message: String },
}

impl From<crate::syntax::template::RenderError> for StepError {
    fn from(err: crate::syntax::template::RenderError) -> Self {
        use crate::syntax::template::RenderError;
        match err {
            RenderError::Missing(r) => StepError::MissingOutput {
                step: r.step,
                output: r.output,
            },
            other @ RenderError::Unquotable { .. } => StepError::failed(other.to_string()),
        }
    }
}

impl From<crate::pg::Error> for StepError {
    fn from(err: crate::pg::Error) -> Self {
        use crate::pg::Error;
        match err {
            Error::Cancelled => StepError::Cancelled,
            Error::Target { target, message } => StepError::Postgres { target, message },
            other @ Error::NoMaintenanceDatabase { .. } => StepError::failed(other.to_string()),
        }
    }
}

impl StepError {
    pub fn failed(message: impl Into<String>) -> Self {
        StepError::Failed {
            message: message.into(),
            details: Vec::new(),
        }
    }

    /// Report details attached to the error.
    pub fn details(&self) -> &[Detail] {
        match self {
            StepError::Failed { details, .. } => details,
            _ => &[],
        }
    }
}

/// How the run may interact with the person running it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interaction {
    /// `--yes`: approve every gate without asking.
    pub assume_yes: bool,
    /// `--yes-delete-many`: `media.sync` may delete past its `max_delete`.
    pub allow_many_deletes: bool,
    /// stdin and stderr are terminals, so questions can be asked.
    pub interactive: bool,
}

/// Everything a step may use while it plans or runs.
#[derive(Clone)]
pub struct StepCtx {
    pub step_id: String,
    pub dry_run: bool,
    /// Cancelled on Ctrl-C or when the run is aborted; long work must watch it.
    pub cancel: CancellationToken,
    pub targets: Arc<BTreeMap<String, Target>>,
    /// Outputs of steps that finished before this one started.
    pub outputs: Outputs,
    pub progress: Progress,
    pub interaction: Interaction,
    pub redactor: Redactor,
    /// The run so far (for `notify`): steps finished before this one.
    pub report: Arc<Report>,
    /// Relative paths in `with:` resolve against this directory.
    pub workdir: PathBuf,
    /// In `run`: what this step's plan kept for it ([`StepOutcome::for_run`]).
    pub planned: Option<serde_json::Value>,
    /// What steps hand to later steps of the same run, in memory.
    pub handoffs: Handoffs,
}

/// Staging-only rows that `postgres.staging-only-rows` steps with
/// `preserve: true` read, by target, until that target's `postgres.clone`
/// takes them. In memory only (the rows themselves are in temporary files
/// the system deletes): never journaled, so a resumed run reads them again
/// (see [`StepParams::hands_off`]). Validation makes every clone of the
/// target come after the steps that fill it.
#[derive(Clone, Default)]
pub struct Handoffs {
    carry: Arc<std::sync::Mutex<BTreeMap<String, Vec<Arc<crate::clone::carry::CarryOver>>>>>,
}

impl Handoffs {
    /// Leaves `carry` for the clone of `target`.
    pub fn publish(&self, target: &str, carry: crate::clone::carry::CarryOver) {
        self.carry
            .lock()
            .expect("handoffs")
            .entry(target.to_string())
            .or_default()
            .push(Arc::new(carry));
    }

    /// Everything left for the clones of `target`, in the order it was
    /// left. Kept, not removed: validation makes every clone of the target
    /// need the preserving step, so each one gets the rows.
    pub fn take(&self, target: &str) -> Vec<Arc<crate::clone::carry::CarryOver>> {
        self.carry
            .lock()
            .expect("handoffs")
            .get(target)
            .cloned()
            .unwrap_or_default()
    }
}

impl StepCtx {
    /// Fills in `${steps.<id>.<output>}` references. Non-string outputs are
    /// written as JSON (lists become `a,b,c`).
    pub fn render(&self, template: &Template) -> Result<String, StepError> {
        template
            .render(|step, output| self.output_text(step, output))
            .map_err(StepError::from)
    }

    /// An earlier step's output as text: strings as they are, lists as
    /// `a,b,c`, anything else as JSON.
    pub fn output_text(&self, step: &str, output: &str) -> Option<String> {
        let value = self.outputs.get(step)?.get(output)?;
        Some(match value {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Array(items) => items
                .iter()
                .map(|v| match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join(","),
            other => other.to_string(),
        })
    }

    /// A template for display in a plan: rendered when its references are
    /// known, else shown as written.
    pub fn preview(&self, template: &Template) -> String {
        self.render(template)
            .unwrap_or_else(|_| template.to_string())
    }

    /// The named target (validation guarantees it exists).
    pub fn target(&self, name: &str) -> &Target {
        self.targets
            .get(name)
            .unwrap_or_else(|| panic!("target `{name}` was validated to exist"))
    }

    /// The PostgreSQL URL of a target (validation guarantees it has one).
    pub fn postgres_url(&self, target: &str) -> &str {
        self.target(target)
            .postgres
            .as_deref()
            .unwrap_or_else(|| panic!("target `{target}` was validated to have `postgres:`"))
    }
}
