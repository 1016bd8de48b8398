//! `postgres.restore`: a backup (`latest`, a name, or a path such as
//! `${steps.backup.path}`) restored into a new database on the target's
//! server, its sha256 checked on the way, then swapped in for the target's
//! database with the clone's swap ([`AfterRun::PostgresSwap`]: the
//! database it replaced is dropped when the run succeeds, swapped back when
//! it fails). A failed or cancelled restore leaves the target as it was.
//! Thin: parses `target`, `store`, `backup`, `workflow`, calls
//! [`crate::backup::restore`], reports.
//!
//! `store` may be left out when `backup` is a path (the `path` output of
//! `postgres.backup`): the store is then what comes before the backup's
//! `<workflow>/<time>-<run>.dump` in it.

use crate::backup::{self, Which, restore::RestoreSpec};
use crate::pg::url;
use crate::report::model::Detail;
use crate::storage::Store;
use crate::syntax::reader::{LoadCtx, MapReader};
use crate::syntax::template::Template;
use crate::syntax::yaml::Span;

use super::postgres_backup::open;
use super::{AfterRun, Facet, Kind, StepCtx, StepError, StepOutcome, TargetUse};

#[derive(Debug, Clone)]
pub struct Params {
    /// The target whose database the backup replaces (written).
    pub target: String,
    pub target_span: Span,
    /// Where the backups are; when absent, `backup` must be a path and its
    /// directory is the store.
    pub store: Option<String>,
    /// `latest`, a backup's name, or its path/key.
    pub backup: Template,
    /// With `latest`: the newest of this workflow's backups (default: of
    /// any workflow in the store).
    pub workflow: Option<String>,
}

impl Kind for Params {
    const NAME: &'static str = "postgres.restore";
    const OUTPUTS: &'static [&'static str] = &["name"];
    const DESTRUCTIVE: bool = true;

    fn parse(with: &mut MapReader, cx: &mut LoadCtx) -> Option<Self> {
        let target = with
            .require(cx, "target")
            .and_then(|node| Some((cx.string(node, "`target`")?, node.span)));
        let store = with.string(cx, "store");
        let backup = with.required_template(cx, "backup");
        let workflow = with.string(cx, "workflow");
        let (target, target_span) = target?;
        Some(Params {
            target,
            target_span,
            store,
            backup: backup?,
            workflow,
        })
    }

    fn templates(&self) -> Vec<&Template> {
        vec![&self.backup]
    }

    fn target_uses(&self) -> Vec<TargetUse> {
        vec![TargetUse {
            name: self.target.clone(),
            span: self.target_span,
            write: true,
            facet: Facet::Postgres,
        }]
    }

    async fn plan(&self, ctx: &StepCtx) -> Result<StepOutcome, StepError> {
        let spec = self.spec(ctx);
        let replaced = backup::restore::replaced(&spec, &ctx.cancel).await?;
        let what = format!(
            "`{}` (database `{}`, {}, PostgreSQL {})",
            self.target,
            replaced.database,
            human_bytes(replaced.size),
            replaced.server_version
        );
        let Ok(text) = ctx.render(&self.backup) else {
            // `${steps.backup.name}`: known once that step has run.
            return Ok(StepOutcome::new(format!(
                "would restore the backup `{}` names in place of {what}",
                ctx.preview(&self.backup)
            ))
            .detail(Detail::fact("would replace", what))
            .detail(Detail::fact(
                "how",
                "into a new database, sha256 checked on the way, then swapped in; the database it replaces is dropped when the run succeeds",
            )));
        };
        let (store, which) = self.store_and_which(&text).await?;
        let manifest = backup::catalog::find(&store, &which).await?;
        backup::restore::refuse_unscrubbed(&manifest)?;
        Ok(StepOutcome::new(format!(
            "would restore backup `{}` ({}, taken {}) in place of {what}",
            manifest.name,
            human_bytes(manifest.bytes),
            manifest.created.format("%Y-%m-%d %H:%M:%S UTC"),
        ))
        .detail(Detail::fact("backup", describe(&manifest)))
        .detail(Detail::fact("store", store.location()))
        .detail(Detail::fact("would replace", what))
        .detail(Detail::fact(
            "how",
            "into a new database, sha256 checked on the way, then swapped in; the database it replaces is dropped when the run succeeds",
        )))
    }

    async fn run(&self, ctx: &StepCtx) -> Result<StepOutcome, StepError> {
        let spec = self.spec(ctx);
        let text = ctx.render(&self.backup)?;
        let (store, which) = self.store_and_which(&text).await?;
        let manifest = backup::catalog::find(&store, &which).await?;
        let restored = backup::restore::restore(
            &store,
            &manifest,
            &spec,
            &ctx.progress,
            &ctx.step_id,
            &ctx.cancel,
        )
        .await?;
        let mut outcome = StepOutcome::new(format!(
            "restored backup `{}` ({}) into `{}`",
            manifest.name,
            human_bytes(restored.bytes),
            self.target
        ))
        .output("name", manifest.name.clone())
        .detail(Detail::fact("backup", describe(&manifest)))
        .detail(Detail::fact("sha256", format!("{} (checked)", manifest.sha256)))
        .detail(Detail::fact(
            "pg_restore",
            match restored.parallel {
                Some(jobs) => format!("read the dump file, {jobs} jobs"),
                None => "fed from the store's stream".to_string(),
            },
        ))
        .detail(Detail::fact(
            "swapped",
            format!(
                "`{}` now holds the backup; the database it replaced is `{}` until the run ends (dropped if it succeeds, swapped back if it fails)",
                restored.swapped.live, restored.swapped.aside
            ),
        ));
        if !restored.recovered.is_empty() {
            outcome = outcome.detail(Detail::fact(
                "cleaned up after interrupted runs",
                restored.recovered.join("; "),
            ));
        }
        if !restored.same_locale {
            outcome = outcome.detail(Detail::fact(
                "locale",
                "the database's locale is not installed on the server; the server's default was used",
            ));
        }
        outcome.after_run.push(AfterRun::PostgresSwap {
            target: self.target.clone(),
            maintenance_database: url::database_of(&restored.maintenance_url)
                .unwrap_or_else(|| "postgres".into()),
            swapped: restored.swapped,
            keep_old: false,
        });
        Ok(outcome)
    }
}

impl Params {
    fn spec(&self, ctx: &StepCtx) -> RestoreSpec {
        RestoreSpec {
            target: self.target.clone(),
            url: ctx.postgres_url(&self.target).to_string(),
            // Not the clone's suffix: a clone and a restore of one run
            // must not share names.
            suffix: format!("{}r", super::postgres_clone::run_suffix(&ctx.report.run_id)),
            jobs: std::thread::available_parallelism().map_or(2, |n| n.get().min(8)),
        }
    }

    /// The store and the backup in it: `store:` when given, else the
    /// directory of the path in `backup`.
    async fn store_and_which(&self, text: &str) -> Result<(Store, Which), StepError> {
        if let Some(store) = &self.store {
            return Ok((
                open(store).await?,
                Which::parse(text, self.workflow.as_deref()),
            ));
        }
        let Some((root, key)) = split_path(text) else {
            return Err(StepError::failed(format!(
                "`backup: {text}` names no store: give `store:` too, or the backup's path (e.g. `${{steps.backup.path}}`)"
            )));
        };
        Ok((open(&root).await?, Which::Named(key)))
    }
}

/// A backup's path as its store and key: the key is the last two segments
/// (`<workflow>/<time>-<run>.dump`), the store what comes before them (with
/// the path's `?query`, for S3 endpoints). `None` when it is not such a path.
fn split_path(text: &str) -> Option<(String, String)> {
    let (base, query) = match text.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (text, None),
    };
    if !base.ends_with(backup::manifest::DUMP_EXT)
        && !base.ends_with(backup::manifest::MANIFEST_EXT)
    {
        return None;
    }
    let mut parts = base.rsplitn(3, '/');
    let file = parts.next()?;
    let workflow = parts.next()?;
    let root = match parts.next() {
        Some("") => "/".to_string(),
        Some(root) => root.to_string(),
        None => ".".to_string(),
    };
    let root = match query {
        Some(query) => format!("{root}?{query}"),
        None => root,
    };
    Some((root, format!("{workflow}/{file}")))
}

/// A backup in a sentence: name, time, size, source.
fn describe(m: &backup::Manifest) -> String {
    format!(
        "{} — taken {} by workflow `{}` (run {}), {}, of {} (PostgreSQL {})",
        m.name,
        m.created.format("%Y-%m-%d %H:%M:%S UTC"),
        m.workflow,
        m.run_id,
        human_bytes(m.bytes),
        m.source.url,
        m.source.server_version
    )
}

fn human_bytes(n: u64) -> String {
    crate::human::human_bytes(n as f64)
}

#[cfg(test)]
mod tests {
    use super::split_path;

    #[test]
    fn a_backups_path_is_its_store_and_key() {
        assert_eq!(
            split_path("./backups/nightly/20261202T061500Z-3fa9.dump"),
            Some((
                "./backups".into(),
                "nightly/20261202T061500Z-3fa9.dump".into()
            ))
        );
        assert_eq!(
            split_path("s3://bucket/pre/nightly/20261202T061500Z-3fa9.dump?endpoint=http://h:9000"),
            Some((
                "s3://bucket/pre?endpoint=http://h:9000".into(),
                "nightly/20261202T061500Z-3fa9.dump".into()
            ))
        );
        assert_eq!(
            split_path("nightly/20261202T061500Z-3fa9.json"),
            Some((".".into(), "nightly/20261202T061500Z-3fa9.json".into()))
        );
        assert_eq!(split_path("latest"), None);
        assert_eq!(split_path("nightly/20261202T061500Z-3fa9"), None);
    }
}
