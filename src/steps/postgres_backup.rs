//! `postgres.backup`: `pg_dump -Fc` of a target streamed into a store (a
//! directory or `s3://…`), a manifest beside it, and retention (`keep`).
//! Thin: parses `target`, `store`, `keep`, hands [`crate::backup::take`]
//! its spec, and reports. pg_dump only reads, so a protected target may be
//! backed up. The plan connects, estimates, and lists what retention would
//! delete; it writes nothing anywhere.

use crate::backup::{self, take::BackupSpec};
use crate::report::model::Detail;
use crate::storage::Store;
use crate::syntax::diagnostics::Problem;
use crate::syntax::reader::{LoadCtx, MapReader};
use crate::syntax::template::Template;
use crate::syntax::yaml::Span;

use super::{Facet, Kind, StepCtx, StepError, StepOutcome, TargetUse};

#[derive(Debug, Clone)]
pub struct Params {
    /// The target whose database to dump (only read).
    pub target: String,
    pub target_span: Span,
    /// Where backups go: a directory, `file:///…`, or `s3://bucket/prefix?…`.
    pub store: String,
    /// How many of this workflow's backups to keep, the new one included
    /// (older ones are deleted after the new one is complete); all when absent.
    pub keep: Option<usize>,
}

impl Kind for Params {
    const NAME: &'static str = "postgres.backup";
    const OUTPUTS: &'static [&'static str] = &["name", "path", "bytes", "sha256"];
    /// It writes to the store and may delete old backups there.
    const DESTRUCTIVE: bool = true;

    fn parse(with: &mut MapReader, cx: &mut LoadCtx) -> Option<Self> {
        let target = with
            .require(cx, "target")
            .and_then(|node| Some((cx.string(node, "`target`")?, node.span)));
        let store = with.required_string(cx, "store");
        let keep = match with.get("keep") {
            None => Some(None),
            Some(node) => match with.u64(cx, "keep") {
                Some(0) => {
                    cx.push(
                        Problem::new(
                            "flightpath::backup::keep",
                            "`keep` must be at least 1",
                            node.span,
                            "would delete the backup just taken",
                        )
                        .help("keep: 1 keeps only the newest; leave it out to keep every backup"),
                    );
                    None
                }
                Some(n) => Some(Some(n as usize)),
                None => None,
            },
        };
        let (target, target_span) = target?;
        Some(Params {
            target,
            target_span,
            store: store?,
            keep: keep?,
        })
    }

    fn templates(&self) -> Vec<&Template> {
        Vec::new()
    }

    fn target_uses(&self) -> Vec<TargetUse> {
        vec![TargetUse {
            name: self.target.clone(),
            span: self.target_span,
            write: false,
            facet: Facet::Postgres,
        }]
    }

    async fn plan(&self, ctx: &StepCtx) -> Result<StepOutcome, StepError> {
        let spec = self.spec(ctx);
        let store = open(&self.store).await?;
        let survey = backup::take::survey(&spec, &ctx.cancel).await?;
        let housekeeping = backup::take::housekeeping(&store, &spec, true).await?;
        let name = backup::manifest::name_for(&spec.workflow, chrono::Utc::now(), &spec.run_id);
        let mut outcome = StepOutcome::new(format!(
            "would dump `{}` (database `{}`, {} on disk) into {}",
            self.target,
            survey.database,
            human_bytes(survey.size),
            store.location()
        ))
        .detail(Detail::fact(
            "database",
            format!(
                "{} (PostgreSQL {}): {} tables, about {} rows",
                survey.url,
                survey.server_version,
                survey.tables,
                crate::human::thousands(survey.rows_estimate)
            ),
        ))
        .detail(Detail::fact(
            "pg_dump",
            format!(
                "{} (major {}), custom format",
                survey.pg_dump.path.display(),
                survey.pg_dump.major
            ),
        ))
        .detail(Detail::fact(
            "would write",
            format!(
                "{} and its manifest {}",
                backup::take::path_of(&store, &backup::manifest::dump_key(&name)),
                backup::manifest::manifest_key(&name)
            ),
        ))
        .detail(Detail::fact(
            "retention",
            self.retention_text(&housekeeping.expired),
        ));
        if !housekeeping.abandoned.is_empty() {
            outcome = outcome.detail(Detail::fact(
                "abandoned uploads",
                format!(
                    "would abort {} left by interrupted runs (unless another backup of this \
                     workflow is uploading then): {}",
                    housekeeping.abandoned.len(),
                    housekeeping.abandoned.join(", ")
                ),
            ));
        }
        Ok(outcome)
    }

    async fn run(&self, ctx: &StepCtx) -> Result<StepOutcome, StepError> {
        let spec = self.spec(ctx);
        let store = open(&self.store).await?;
        let taken =
            backup::take::take(&store, &spec, &ctx.progress, &ctx.step_id, &ctx.cancel).await?;
        let m = &taken.manifest;
        let mut outcome = StepOutcome::new(format!(
            "backed up `{}` ({} tables, {}) to {}",
            self.target,
            m.tables,
            human_bytes(m.bytes),
            taken.path
        ))
        .output("name", m.name.clone())
        .output("path", taken.path.clone())
        .output("bytes", m.bytes)
        .output("sha256", m.sha256.clone())
        .detail(Detail::fact("backup", m.name.clone()))
        .detail(Detail::fact("sha256", m.sha256.clone()))
        .detail(Detail::fact("pg_dump", m.pg_dump_version.clone()))
        .detail(Detail::fact(
            "retention",
            match (self.keep, taken.housekeeping.expired.is_empty()) {
                (None, _) => "every backup kept (no `keep`)".to_string(),
                (Some(keep), true) => format!("keep {keep}: nothing to delete"),
                (Some(keep), false) => format!(
                    "keep {keep}: deleted {}",
                    taken.housekeeping.expired.join(", ")
                ),
            },
        ));
        if !taken.housekeeping.abandoned.is_empty() {
            outcome = outcome.detail(Detail::fact(
                "abandoned uploads",
                format!(
                    "aborted {} left by interrupted runs: {}",
                    taken.housekeeping.abandoned.len(),
                    taken.housekeeping.abandoned.join(", ")
                ),
            ));
        }
        Ok(outcome)
    }
}

impl Params {
    fn spec(&self, ctx: &StepCtx) -> BackupSpec {
        BackupSpec {
            target: self.target.clone(),
            url: ctx.postgres_url(&self.target).to_string(),
            workflow: ctx.report.workflow.clone(),
            run_id: ctx.report.run_id.clone(),
            keep: self.keep,
            protected: ctx.target(&self.target).protected,
        }
    }

    fn retention_text(&self, expired: &[String]) -> String {
        match (self.keep, expired) {
            (None, _) => "every backup kept (no `keep`)".to_string(),
            (Some(keep), []) => format!("keep {keep}: nothing would be deleted"),
            (Some(keep), names) => format!(
                "keep {keep}: would delete {} after the new backup is complete",
                names.join(", ")
            ),
        }
    }
}

/// Opens a store named in a step's `with:`.
pub(super) async fn open(location: &str) -> Result<Store, StepError> {
    Store::open(location)
        .await
        .map_err(|e| StepError::failed(e.to_string()))
}

fn human_bytes(n: u64) -> String {
    crate::human::human_bytes(n as f64)
}

impl From<backup::Error> for StepError {
    fn from(err: backup::Error) -> Self {
        use backup::Error;
        match err {
            Error::Pg(e) => e.into(),
            e if e.is_cancelled() => StepError::Cancelled,
            e @ Error::Unscrubbed { .. } => StepError::Refused(e.to_string()),
            other => StepError::failed(other.to_string()),
        }
    }
}
