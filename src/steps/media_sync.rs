//! `media.sync`: an incremental copy of a target's media (an S3 bucket or
//! prefix, or a directory) into another's, documents replaced by
//! placeholders. Thin: parses `source`, `target`, the globs, `delete`,
//! `max_delete` and `concurrency`, hands [`crate::media::sync`] the two
//! stores, and reports per top-level prefix. The plan lists both sides and
//! decides every key, writing nothing.

use std::path::PathBuf;
use std::sync::Arc;

use crate::media::cache::HashCache;
use crate::media::select::{Globs, Selection};
use crate::media::{self, Action, Outcome, Sides, SyncSpec};
use crate::progress::{Bar, Unit};
use crate::report::model::Detail;
use crate::storage::Store;
use crate::syntax::diagnostics::Problem;
use crate::syntax::reader::{LoadCtx, MapReader};

use super::target::MediaCredentials;
use crate::syntax::template::Template;
use crate::syntax::yaml::Span;

use super::{Facet, Kind, StepCtx, StepError, StepOutcome, TargetUse};

/// Requests in flight by default (what s5cmd and rclone's S3 backends pick
/// for many small objects).
const DEFAULT_CONCURRENCY: u64 = 32;

#[derive(Debug, Clone)]
pub struct Params {
    pub source: String,
    pub source_span: Span,
    pub target: String,
    pub target_span: Span,
    pub selection: Selection,
    pub delete: bool,
    pub max_delete: Option<u64>,
    pub concurrency: usize,
}

impl Kind for Params {
    const NAME: &'static str = "media.sync";
    const OUTPUTS: &'static [&'static str] =
        &["copied", "placeholders", "skipped", "deleted", "bytes"];
    const DESTRUCTIVE: bool = true;

    fn parse(with: &mut MapReader, cx: &mut LoadCtx) -> Option<Self> {
        let named = |with: &mut MapReader, cx: &mut LoadCtx, key: &'static str| {
            with.require(cx, key)
                .and_then(|node| Some((cx.string(node, &format!("`{key}`"))?, node.span)))
        };
        let source = named(with, cx, "source");
        let target = named(with, cx, "target");
        let globs = |with: &mut MapReader, cx: &mut LoadCtx, key: &'static str| {
            let written = match with.get(key) {
                None => Vec::new(),
                Some(_) => with.string_list(cx, key)?,
            };
            let patterns: Vec<String> = written.iter().map(|(p, _)| p.clone()).collect();
            match Globs::new(&patterns) {
                Ok(globs) => Some(globs),
                Err((pattern, why)) => {
                    let span = written
                        .iter()
                        .find(|(p, _)| *p == pattern)
                        .map_or(with.span(), |(_, span)| *span);
                    cx.push(
                        Problem::new(
                            "flightpath::media::glob",
                            format!("`{key}`: `{pattern}` is not a glob: {why}"),
                            span,
                            "not a glob",
                        )
                        .help(
                            "`*` matches within one path segment, `**` across them, `{a,b}` \
                             either; e.g. `original_images/**`",
                        ),
                    );
                    None
                }
            }
        };
        let include = globs(with, cx, "include");
        let exclude = globs(with, cx, "exclude");
        let copy = globs(with, cx, "copy");
        let placeholder = globs(with, cx, "placeholder");
        let delete = with.bool(cx, "delete").unwrap_or(false);
        let max_delete = with.u64(cx, "max_delete");
        let concurrency = match with.get("concurrency") {
            None => Some(DEFAULT_CONCURRENCY),
            Some(node) => match with.u64(cx, "concurrency") {
                Some(0) | Some(1025..) => {
                    cx.push(
                        Problem::new(
                            "flightpath::media::concurrency",
                            "`concurrency` must be between 1 and 1024",
                            node.span,
                            "out of range",
                        )
                        .help(format!(
                            "leave it out for {DEFAULT_CONCURRENCY} requests in flight"
                        )),
                    );
                    None
                }
                other => other,
            },
        };
        let (source, source_span) = source?;
        let (target, target_span) = target?;
        Some(Params {
            source,
            source_span,
            target,
            target_span,
            selection: Selection {
                include: include?,
                exclude: exclude?,
                copy: copy?,
                placeholder: placeholder?,
            },
            delete,
            max_delete,
            concurrency: concurrency? as usize,
        })
    }

    fn templates(&self) -> Vec<&Template> {
        Vec::new()
    }

    fn target_uses(&self) -> Vec<TargetUse> {
        vec![
            TargetUse {
                name: self.source.clone(),
                span: self.source_span,
                write: false,
                facet: Facet::Media,
            },
            TargetUse {
                name: self.target.clone(),
                span: self.target_span,
                write: true,
                facet: Facet::Media,
            },
        ]
    }

    async fn plan(&self, ctx: &StepCtx) -> Result<StepOutcome, StepError> {
        let sides = self.sides(ctx).await?;
        let outcome = self.sync(ctx, &sides, true).await?;
        let total = outcome.total();
        let summary = format!(
            "would {} from {} to {}",
            tally_text(&total, self.delete, true),
            sides.source.location(),
            sides.target.location(),
        );
        Ok(self.describe(StepOutcome::new(summary), &outcome, true))
    }

    async fn run(&self, ctx: &StepCtx) -> Result<StepOutcome, StepError> {
        let sides = self.sides(ctx).await?;
        let outcome = self.sync(ctx, &sides, false).await;
        for cache in [&sides.source_cache, &sides.target_cache]
            .into_iter()
            .flatten()
        {
            // Only a speed-up: a cache that cannot be written is rebuilt.
            let _ = cache.save();
        }
        let outcome = outcome?;
        let total = outcome.total();
        let summary = format!(
            "{} from {} to {}",
            tally_text(&total, self.delete, false),
            sides.source.location(),
            sides.target.location(),
        );
        let result = self
            .describe(StepOutcome::new(summary), &outcome, false)
            .output("copied", total.copied)
            .output("placeholders", total.placeholders)
            .output("skipped", total.skipped)
            .output("deleted", total.deleted)
            .output("bytes", total.bytes);
        if !outcome.failed.is_empty() {
            return Err(StepError::Failed {
                message: format!(
                    "{} of the objects failed (the others were synced): {}",
                    outcome.failed.len(),
                    outcome
                        .failed
                        .iter()
                        .take(10)
                        .map(|(key, _)| format!("`{key}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                details: result.details,
            });
        }
        Ok(result)
    }
}

impl Params {
    async fn sides(&self, ctx: &StepCtx) -> Result<Sides, StepError> {
        let location = |name: &str| {
            ctx.target(name)
                .media
                .clone()
                .unwrap_or_else(|| panic!("target `{name}` was validated to have `media:`"))
        };
        let (source_url, target_url) = (location(&self.source), location(&self.target));
        let source = open(&self.source, &source_url, ctx).await?;
        let target = open(&self.target, &target_url, ctx).await?;
        let (source, target) = (
            with_credentials(&self.source, source, ctx)?,
            with_credentials(&self.target, target, ctx)?,
        );
        // Writing into the source, or into any protected target's media
        // (or a store that holds it, or that it holds), is refused: a sync
        // onto production would put placeholders over its documents, and
        // its deletions would reach production's keys.
        let mut guarded = vec![(self.source.clone(), source.clone())];
        for (name, other) in ctx.targets.iter() {
            if other.protected
                && name != &self.source
                && let Some(location) = &other.media
            {
                guarded.push((name.clone(), open(name, location, ctx).await?));
            }
        }
        for (name, store) in &guarded {
            if target.overlaps(store) {
                return Err(StepError::Refused(format!(
                    "the media of `{}` ({}) overlaps the media of `{name}` ({}): one holds the \
                     other, so this sync would write into what it reads{}; point `{}` at a \
                     bucket or prefix of its own",
                    self.target,
                    target.location(),
                    store.location(),
                    if ctx.target(name).protected {
                        " and into a protected target"
                    } else {
                        ""
                    },
                    self.target
                )));
            }
        }
        let cache = |store: &Store| {
            store
                .is_dir()
                .then(|| Arc::new(HashCache::load(cache_path(ctx, &store.location()))))
        };
        Ok(Sides {
            source_cache: cache(&source),
            target_cache: cache(&target),
            source,
            target,
        })
    }

    async fn sync(&self, ctx: &StepCtx, sides: &Sides, dry: bool) -> Result<Outcome, StepError> {
        let spec = SyncSpec {
            selection: self.selection.clone(),
            delete: self.delete,
            max_delete: self.max_delete,
            allow_many_deletes: ctx.interaction.allow_many_deletes,
            concurrency: self.concurrency,
        };
        let label = if dry { "comparing" } else { "objects" };
        let bars = Bars {
            objects: ctx.progress.bar(&ctx.step_id, label, None, Unit::Items),
            bytes: (!dry).then(|| ctx.progress.bar(&ctx.step_id, "copying", None, Unit::Bytes)),
        };
        let result = media::sync(sides, &spec, dry, &bars, &ctx.cancel).await;
        bars.objects.finish();
        if let Some(bytes) = &bars.bytes {
            bytes.finish();
        }
        result.map_err(|error| match error {
            media::Error::Cancelled => StepError::Cancelled,
            error @ media::Error::TooManyDeletes { .. } => StepError::Refused(error.to_string()),
            error => StepError::failed(error.to_string()),
        })
    }

    /// The per-prefix counts, the first keys of each action, and failures.
    fn describe(&self, mut outcome: StepOutcome, synced: &Outcome, dry: bool) -> StepOutcome {
        let verb = |done: &str, would: &str| {
            if dry {
                would.to_string()
            } else {
                done.to_string()
            }
        };
        for (prefix, counts) in &synced.by_prefix {
            let shown = if prefix.is_empty() {
                "(top level)".to_string()
            } else {
                format!("{prefix}/")
            };
            outcome = outcome.detail(Detail::fact(
                shown,
                format!(
                    "{} {}, {} {}, {} skipped{}",
                    counts.copied,
                    verb("copied", "to copy"),
                    counts.placeholders,
                    verb("placeholders", "placeholders to write"),
                    counts.skipped,
                    match self.delete {
                        true => format!(", {} {}", counts.deleted, verb("deleted", "to delete")),
                        false => String::new(),
                    }
                ),
            ));
        }
        for (action, keys) in &synced.samples {
            if *action == Action::Skip {
                continue;
            }
            outcome = outcome.detail(Detail::fact(
                format!("{} (first keys)", action.label()),
                keys.join(", "),
            ));
        }
        if synced.server_side > 0 {
            outcome = outcome.detail(Detail::fact(
                "server-side copies",
                format!(
                    "{} (inside the S3 service; no bytes through here)",
                    synced.server_side
                ),
            ));
        }
        if let Some(withheld) = &synced.deletes_withheld {
            outcome = outcome.detail(Detail::fact("deletions", withheld.clone()));
        }
        for (key, why) in synced.failed.iter().take(20) {
            outcome = outcome.detail(Detail::fact(format!("failed: {key}"), why.clone()));
        }
        if !dry && synced.seconds > 0.0 {
            let total = synced.total();
            let objects = total.copied + total.placeholders;
            outcome = outcome.detail(Detail::fact(
                "throughput",
                format!(
                    "{:.0} objects/s, {}/s over {:.1} s",
                    objects as f64 / synced.seconds,
                    human_bytes((total.bytes as f64 / synced.seconds) as u64),
                    synced.seconds
                ),
            ));
        }
        outcome
    }
}

/// Progress: objects decided, bytes moved.
struct Bars {
    objects: Bar,
    bytes: Option<Bar>,
}

impl media::sync::Report for Bars {
    fn object(&self) {
        self.objects.inc(1);
    }

    fn bytes(&self, n: u64) {
        if let Some(bar) = &self.bytes {
            bar.inc(n);
        }
    }
}

/// Opens a target's media location; relative directories resolve against
/// the workflow's directory.
async fn open(target: &str, location: &str, ctx: &StepCtx) -> Result<Store, StepError> {
    let resolved = if location.contains("://") || std::path::Path::new(location).is_absolute() {
        location.to_string()
    } else {
        ctx.workdir.join(location).display().to_string()
    };
    Store::open(&resolved)
        .await
        .map(Store::without_fsync)
        .map_err(|e| StepError::failed(format!("media of target `{target}`: {e}")))
}

/// The store signing with the target's key pair: resolved (Heroku's
/// Bucketeer), or read from the variables it names (`access_key_env`,
/// `secret_key_env`).
fn with_credentials(target: &str, store: Store, ctx: &StepCtx) -> Result<Store, StepError> {
    let (access, secret) =
        match &ctx.target(target).media_credentials {
            None => return Ok(store),
            Some(MediaCredentials::Given { access, secret }) => (access.clone(), secret.clone()),
            Some(MediaCredentials::Env { access, secret }) => {
                let read =
                    |name: &str| {
                        std::env::var(name).ok().filter(|v| !v.is_empty()).ok_or_else(|| {
                    StepError::failed(format!(
                        "media of target `{target}`: environment variable `{name}` is not \
                         set; export the key in it, or remove `access_key_env` and \
                         `secret_key_env` to use the AWS chain"
                    ))
                })
                    };
                (read(access)?, read(secret)?)
            }
        };
    Ok(store.with_static_credentials(&access, &secret))
}

/// Where the hash cache of a directory lives: under `.flightpath/cache/`
/// of the working directory, named by a hash of the directory's path.
fn cache_path(ctx: &StepCtx, location: &str) -> PathBuf {
    use sha2::{Digest, Sha256};
    let name = crate::storage::hex(&Sha256::digest(location.as_bytes())[..8]);
    ctx.workdir
        .join(".flightpath")
        .join("cache")
        .join("media")
        .join(format!("{name}.jsonl"))
}

/// "copy 3 objects and write 1 placeholder (1.2 MB), skip 10 already
/// there, delete 2" (or the past tense).
fn tally_text(total: &media::Counts, delete: bool, dry: bool) -> String {
    let n = |count: u64, one: &str, many: &str| {
        format!(
            "{} {}",
            crate::human::thousands(count),
            if count == 1 { one } else { many }
        )
    };
    let (copy, write, skip, delete_verb) = match dry {
        true => ("copy", "write", "skip", "delete"),
        false => ("copied", "wrote", "skipped", "deleted"),
    };
    let mut text = format!(
        "{copy} {} and {write} {} ({}), {skip} {} already there",
        n(total.copied, "object", "objects"),
        n(total.placeholders, "placeholder", "placeholders"),
        human_bytes(total.bytes),
        crate::human::thousands(total.skipped),
    );
    if delete {
        text.push_str(&format!(
            ", {delete_verb} {}",
            crate::human::thousands(total.deleted)
        ));
    }
    text
}

fn human_bytes(n: u64) -> String {
    crate::human::human_bytes(n as f64)
}
