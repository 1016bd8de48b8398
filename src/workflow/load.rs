//! Loading a workflow file: parse, read strictly, check the step graph, and
//! build the validated [`Workflow`]. Every problem is collected and returned
//! together; nothing here connects to anything or writes anything.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use miette::NamedSource;

use crate::steps::{self, Facet, HerokuUse, MediaCredentials, StepParams};

use super::graph::Graph;
use super::model::{RawNote, Step, Target, Workflow};
use crate::syntax::diagnostics::{Located, Problem};
use crate::syntax::reader::{LoadCtx, MapReader};
use crate::syntax::template::Vars;
use crate::syntax::yaml::{self, Node, Span, Value};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read workflow `{}`: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: yaml::SourceError,
    },
    #[error("no workflow named `{name}` (looked for {tried})")]
    NotFound { name: String, tried: String },
    #[error("{} problem(s) in {}", problems.len(), path.display())]
    Invalid {
        path: PathBuf,
        problems: Vec<Located>,
    },
}

/// `<workflow>` on the command line: a path, or a name resolved as
/// `workflows/<name>.yaml` (or `.yml`) under `dir`.
pub fn resolve(dir: &Path, workflow: &str) -> Result<PathBuf, LoadError> {
    let as_path = dir.join(workflow);
    // Anything there but a directory is the workflow meant, so a FIFO or a
    // device is refused by name (by `load`) rather than "not found".
    let present = |path: &Path| std::fs::metadata(path).is_ok_and(|meta| !meta.is_dir());
    if present(&as_path) {
        return Ok(as_path);
    }
    let candidates = [
        dir.join("workflows").join(format!("{workflow}.yaml")),
        dir.join("workflows").join(format!("{workflow}.yml")),
    ];
    candidates
        .iter()
        .find(|p| present(p))
        .cloned()
        .ok_or_else(|| LoadError::NotFound {
            name: workflow.to_string(),
            tried: [as_path.as_path(), &candidates[0], &candidates[1]]
                .iter()
                .map(|p| format!("`{}`", relative(dir, p).display()))
                .collect::<Vec<_>>()
                .join(", "),
        })
}

fn relative<'a>(dir: &Path, path: &'a Path) -> &'a Path {
    path.strip_prefix(dir).unwrap_or(path)
}

/// Reads and validates the workflow at `path`; `shown_as` is how the file is
/// named in messages (the path the user typed).
pub fn load(path: &Path, shown_as: &str, vars: &Vars) -> Result<Workflow, LoadError> {
    let source = yaml::read_source(path).map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    load_str(&source, path, shown_as, vars)
}

fn load_str(source: &str, path: &Path, shown_as: &str, vars: &Vars) -> Result<Workflow, LoadError> {
    let mut cx = LoadCtx::new(source, vars);
    cx.dir = path.parent().map(Path::to_path_buf);
    let named = Arc::new(NamedSource::new(shown_as, source.to_string()));
    let workflow = match yaml::parse(source) {
        Ok(root) => read_workflow(&mut cx, &root, path, &named),
        Err(err) => {
            cx.push(err.problem());
            None
        }
    };
    match workflow {
        Some(workflow) if cx.diags.is_empty() && cx.external.is_empty() => Ok(workflow),
        _ => {
            cx.diags.problems.sort_by_key(|p| p.span.offset);
            Err(LoadError::Invalid {
                path: path.to_path_buf(),
                problems: cx
                    .diags
                    .problems
                    .into_iter()
                    .map(|problem| Located {
                        problem,
                        source: named.clone(),
                    })
                    .chain(cx.external)
                    .collect(),
            })
        }
    }
}

/// A step as read, before graph checks.
struct RawStep {
    id: String,
    key_span: Span,
    needs: Vec<(String, Span)>,
    params: Option<StepParams>,
    on_failure: bool,
}

fn read_workflow(
    cx: &mut LoadCtx,
    root: &Node,
    path: &Path,
    source: &Arc<NamedSource<String>>,
) -> Option<Workflow> {
    let mut top = MapReader::new(cx, root, "the workflow")?;
    let name = top.required_string(cx, "name");
    let description = top.string(cx, "description");
    let targets = match top.get("targets") {
        Some(node) => read_targets(cx, node),
        None => BTreeMap::new(),
    };
    let steps_node = top.require(cx, "steps");
    let on_failure_node = top.get("on_failure");
    top.finish(cx);

    let mut raw_steps = Vec::new();
    if let Some(node) = steps_node {
        read_steps(cx, node, false, &mut raw_steps);
    }
    let main_count = raw_steps.len();
    if let Some(node) = on_failure_node {
        read_steps(cx, node, true, &mut raw_steps);
    }
    check_duplicate_ids(cx, &raw_steps);

    let (main, on_failure) = raw_steps.split_at(main_count);
    let main_order = check_graph(cx, main, &[]);
    let failure_order = check_graph(cx, on_failure, main);
    check_targets(cx, &raw_steps, &targets);
    if let Some(order) = &main_order {
        check_write_conflicts(cx, main, order);
        check_carry_over(cx, main);
    }

    let build = |group: &[RawStep], order: Option<Vec<usize>>| -> Option<Vec<Step>> {
        order?
            .into_iter()
            .map(|i| {
                let s = &group[i];
                Some(Step {
                    id: s.id.clone(),
                    needs: s.needs.iter().map(|(n, _)| n.clone()).collect(),
                    params: s.params.clone()?,
                    on_failure: s.on_failure,
                })
            })
            .collect()
    };
    let steps = build(main, main_order)?;
    let on_failure = build(on_failure, failure_order)?;
    Some(Workflow {
        name: name?,
        description,
        path: path.to_path_buf(),
        source: source.clone(),
        targets,
        steps,
        on_failure,
        secrets: cx.secrets.clone(),
        raw_uses: cx
            .raw_uses
            .iter()
            .map(|(what, raw)| {
                let (line, column) = line_column(cx.source, raw.span.offset);
                RawNote {
                    name: raw.name.clone(),
                    what: what.clone(),
                    line,
                    column,
                }
            })
            .collect(),
    })
}

/// The 1-based line and character column of a byte offset.
fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let before = source.get(..offset).unwrap_or(source);
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (
        before.matches('\n').count() + 1,
        before[line_start..].chars().count() + 1,
    )
}

fn read_targets(cx: &mut LoadCtx, node: &Node) -> BTreeMap<String, Target> {
    let mut targets = BTreeMap::new();
    // (target, (the target it names, where)) for every `same_server_as`.
    let mut same_server: Vec<(String, (String, Span))> = Vec::new();
    let Some(map) = MapReader::new(cx, node, "`targets`") else {
        return targets;
    };
    let Value::Map(entries) = &node.value else {
        map.finish(cx);
        return targets;
    };
    for (key, value) in entries {
        let what = format!("target `{}`", key.name);
        let Some(mut reader) = MapReader::new(cx, value, what) else {
            continue;
        };
        // A present key whose value has a problem (say, a missing variable)
        // still counts as present, so that problem is not reported twice.
        let mut endpoint = |reader: &mut MapReader, key: &'static str| {
            let node = reader.get(key)?;
            let what = format!("{} `{key}`", reader.what());
            Some((cx.string(node, &what), node.clone()))
        };
        let postgres = endpoint(&mut reader, "postgres");
        let media = endpoint(&mut reader, "media");
        let git = endpoint(&mut reader, "git").map(|(url, _)| url.unwrap_or_default());
        let mut heroku = Vec::new();
        if let Some((Some(url), node)) = &postgres {
            if crate::heroku::is_heroku(url) {
                heroku.extend(check_heroku(cx, &key.name, node, url, Facet::Postgres));
            } else {
                check_postgres(cx, &key.name, node, url);
            }
        }
        if let Some((Some(url), node)) = &media
            && crate::heroku::is_heroku(url)
        {
            heroku.extend(check_heroku(cx, &key.name, node, url, Facet::Media));
        }
        let postgres = postgres.map(|(url, _)| url.unwrap_or_default());
        let media = media.map(|(url, _)| url.unwrap_or_default());
        // Registered now, so that every message about this target, from
        // validation on, masks its password as the connector reads it.
        if let Some(url) = &postgres {
            cx.secrets
                .extend(crate::pg::connect::connection_secrets(url));
        }
        for url in [&media, &git].into_iter().flatten() {
            cx.secrets.extend(crate::redact::url_secrets(url));
        }
        let protected = reader.bool(cx, "protected").unwrap_or(false);
        let (fetch, token_env) = read_git_access(cx, &mut reader, git.is_some());
        let media_credentials = read_media_access(cx, &mut reader, media.is_some());
        if let (Some(_), Some(heroku)) = (
            &media_credentials,
            heroku.iter().find(|h| h.facet == Facet::Media),
        ) {
            cx.push(
                Problem::new(
                    "flightpath::target::media_credentials",
                    format!(
                        "target `{}` `media` is Heroku app `{}`, whose Bucketeer add-on gives \
                         the key pair; `access_key_env` and `secret_key_env` would replace it",
                        key.name, heroku.app
                    ),
                    heroku.span,
                    "the keys come from the app",
                )
                .help("remove `access_key_env` and `secret_key_env`"),
            );
        }
        let same_server_as = reader.get("same_server_as").and_then(|node| {
            let what = format!("{} `same_server_as`", reader.what());
            Some((cx.string(node, &what)?, node.span))
        });
        if let Some(named) = &same_server_as {
            same_server.push((key.name.clone(), named.clone()));
        }
        let target = Target {
            name: key.name.clone(),
            postgres,
            media,
            git,
            fetch,
            token_env,
            media_credentials: media_credentials
                .map(|(access, secret)| MediaCredentials::Env { access, secret }),
            heroku,
            protected,
            same_server_as: same_server_as.map(|(name, _)| name),
            span: key.span,
        };
        reader.finish(cx);
        if target.postgres.is_none() && target.media.is_none() && target.git.is_none() {
            cx.push(
                Problem::new(
                    "flightpath::target::empty",
                    format!("target `{}` has no endpoint", key.name),
                    key.span,
                    "no `postgres`, `media` or `git`",
                )
                .help("give it `postgres: <url>`, `media: <url or directory>` or `git: <path or url>`"),
            );
        }
        targets.insert(key.name.clone(), target);
    }
    check_same_server(cx, &targets, &same_server);
    check_heroku_apps(cx, &targets);
    targets
}

/// The name of an environment variable a target reads a secret from
/// (`token_env`, `access_key_env`, …); its value, when set, is registered
/// as a secret so no output ever shows it.
fn env_name(
    cx: &mut LoadCtx,
    reader: &MapReader,
    node: &crate::syntax::yaml::Node,
    key: &'static str,
    example: &str,
) -> Option<String> {
    let code = match key {
        "token_env" => "flightpath::target::token_env",
        "access_key_env" => "flightpath::target::access_key_env",
        _ => "flightpath::target::secret_key_env",
    };
    let name = cx.string(node, &format!("{} `{key}`", reader.what()))?;
    let valid = !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if !valid {
        cx.push(
            Problem::new(
                code,
                format!(
                    "{} `{key}` must name an environment variable",
                    reader.what()
                ),
                node.span,
                "not a variable name",
            )
            .help(format!(
                "write the variable's name, not its value: `{key}: {example}`"
            )),
        );
        return None;
    }
    if let Some(value) = cx.vars.get(&name).filter(|v| !v.is_empty()) {
        cx.secrets.push(value);
    }
    Some(name)
}

/// `access_key_env` and `secret_key_env` of a `media:` target: the
/// variables holding its S3 access key pair (both or neither; without them
/// the standard AWS chain is used).
fn read_media_access(
    cx: &mut LoadCtx,
    reader: &mut MapReader,
    has_media: bool,
) -> Option<(String, String)> {
    let access_node = reader.get("access_key_env");
    let secret_node = reader.get("secret_key_env");
    let access = access_node.and_then(|node| {
        env_name(
            cx,
            reader,
            node,
            "access_key_env",
            "BUCKETEER_AWS_ACCESS_KEY_ID",
        )
    });
    let secret = secret_node.and_then(|node| {
        env_name(
            cx,
            reader,
            node,
            "secret_key_env",
            "BUCKETEER_AWS_SECRET_ACCESS_KEY",
        )
    });
    let given = access_node.or(secret_node)?;
    if !has_media {
        cx.push(
            Problem::new(
                "flightpath::target::media_only",
                format!(
                    "{} `access_key_env` and `secret_key_env` are S3 credentials, but it has no `media`",
                    reader.what()
                ),
                given.span,
                "only for `media:` targets",
            )
            .help("add `media: s3://bucket/prefix`, or remove the credentials"),
        );
        return None;
    }
    match (access, secret, access_node, secret_node) {
        (Some(access), Some(secret), _, _) => Some((access, secret)),
        (_, _, Some(_), Some(_)) => None, // a bad name, already reported
        (_, _, present, _) => {
            let (have, missing) = match present {
                Some(_) => ("access_key_env", "secret_key_env"),
                None => ("secret_key_env", "access_key_env"),
            };
            cx.push(
                Problem::new(
                    "flightpath::target::media_credentials",
                    format!("{} has `{have}` but no `{missing}`", reader.what()),
                    given.span,
                    "half of a key pair",
                )
                .help(format!(
                    "add `{missing}` naming the variable with the other half"
                )),
            );
            None
        }
    }
}

/// `fetch` and `token_env`, which only a `git:` target may have. The
/// token's value, when the variable is set, is registered as a secret so no
/// output ever shows it.
fn read_git_access(
    cx: &mut LoadCtx,
    reader: &mut MapReader,
    has_git: bool,
) -> (bool, Option<String>) {
    let fetch_node = reader.get("fetch");
    let fetch = fetch_node
        .and_then(|node| cx.bool(node, &format!("{} `fetch`", reader.what())))
        .unwrap_or(false);
    let token_node = reader.get("token_env");
    let token_env =
        token_node.and_then(|node| env_name(cx, reader, node, "token_env", "GITHUB_TOKEN"));
    if !has_git {
        for (key, node) in [("fetch", fetch_node), ("token_env", token_node)] {
            if let Some(node) = node {
                cx.push(
                    Problem::new(
                        "flightpath::target::git_only",
                        format!(
                            "{} `{key}` is about a git repository, but it has no `git`",
                            reader.what()
                        ),
                        node.span,
                        "only for `git:` targets",
                    )
                    .help("give the target `git: <path or url>`, or remove this key"),
                );
            }
        }
    }
    (fetch, token_env)
}

/// A target's `postgres:` must be a connection string the connector can
/// read: a `postgres://` URL or `key=value` pairs. Nothing is connected
/// to; the value itself is never shown (it may hold a password).
fn check_postgres(cx: &mut LoadCtx, target: &str, node: &Node, url: &str) {
    let problem = |message: String, label: &str| {
        Problem::new("flightpath::target::postgres", message, node.span, label).help(
            "write a URL such as `postgres://user@host:5432/dbname`, or `key=value` \
             pairs such as `host=db.internal dbname=app user=app`",
        )
    };
    let what = format!("target `{target}` `postgres`");
    let problem = match &node.value {
        Value::Str(_) => {
            if url.trim().is_empty() {
                Some(problem(
                    format!("{what} is empty"),
                    "no connection string (an empty variable?)",
                ))
            } else {
                crate::pg::connect::check_connection_string(url)
                    .err()
                    .map(|why| {
                        problem(
                            format!("{what} is not a connection string: {why}"),
                            "not a `postgres://` URL or `key=value` pairs",
                        )
                    })
            }
        }
        _ => Some(problem(
            format!("{what} must be a connection string, found {}", node.kind()),
            "not a `postgres://` URL or `key=value` pairs",
        )),
    };
    if let Some(problem) = problem {
        cx.push(problem);
    }
}

/// A `heroku://APP` endpoint, checked for form only (the API is asked
/// before a run or a plan, never by `validate`).
fn check_heroku(
    cx: &mut LoadCtx,
    target: &str,
    node: &Node,
    url: &str,
    facet: Facet,
) -> Option<HerokuUse> {
    let parsed = match facet {
        Facet::Postgres => crate::heroku::parse_postgres(url).map(|e| e.app),
        _ => crate::heroku::parse_media(url).map(|e| e.app),
    };
    match parsed {
        Ok(app) => Some(HerokuUse {
            facet,
            app,
            span: node.span,
        }),
        Err(why) => {
            let example = match facet {
                Facet::Postgres => "`heroku://acme-staging` (its `DATABASE_URL`)",
                _ => {
                    "`heroku://acme-staging` (its Bucketeer bucket) or `heroku://acme-staging/public`"
                }
            };
            cx.push(
                Problem::new(
                    "flightpath::target::heroku",
                    format!(
                        "target `{target}` `{}` is not a Heroku endpoint: {why}",
                        facet.key()
                    ),
                    node.span,
                    "not `heroku://APP`",
                )
                .help(format!("write {example}")),
            );
            None
        }
    }
}

/// A target that may be written, given as the Heroku app of a protected
/// target (another database attached to production's app, say), is
/// refused unless it says so with `same_server_as` naming that target.
fn check_heroku_apps(cx: &mut LoadCtx, targets: &BTreeMap<String, Target>) {
    for target in targets.values().filter(|t| !t.protected) {
        for endpoint in &target.heroku {
            let Some(protected) = targets
                .values()
                .find(|p| p.protected && p.heroku.iter().any(|h| h.app == endpoint.app))
            else {
                continue;
            };
            let declared = target.same_server_as.as_deref() == Some(protected.name.as_str());
            if endpoint.facet == Facet::Postgres && declared {
                continue;
            }
            let help = match endpoint.facet {
                Facet::Postgres => format!(
                    "name the staging app here; mark this target `protected: true` if it is \
                     only read; or, if this database of the app is meant to be written, say so \
                     with `same_server_as: {}`",
                    protected.name
                ),
                _ => "name the staging app here (its own Bucketeer bucket), or mark this target \
                      `protected: true` if it is only read"
                    .to_string(),
            };
            cx.push(
                Problem::new(
                    "flightpath::target::heroku-protected",
                    format!(
                        "target `{}` `{}` is Heroku app `{}`, the app of protected target `{}`: \
                         writing it would write production's app",
                        target.name,
                        endpoint.facet.key(),
                        endpoint.app,
                        protected.name
                    ),
                    endpoint.span,
                    "production's app",
                )
                .help(help),
            );
        }
    }
}

/// `same_server_as` names another target that has a database.
fn check_same_server(
    cx: &mut LoadCtx,
    targets: &BTreeMap<String, Target>,
    same_server: &[(String, (String, Span))],
) {
    for (name, (named, span)) in same_server {
        let problem = match targets.get(named) {
            None => Problem::new(
                "flightpath::target::unknown",
                format!("target `{name}`: `same_server_as` names unknown target `{named}`"),
                *span,
                "no target with this name",
            )
            .suggest(named, targets.keys().map(String::as_str)),
            Some(_) if named == name => Problem::new(
                "flightpath::target::same-server",
                format!("target `{name}`: `same_server_as` names the target itself"),
                *span,
                "names this same target",
            )
            .help("name the protected target whose server this database is on"),
            Some(other) if other.postgres.is_none() || targets[name].postgres.is_none() => {
                Problem::new(
                    "flightpath::target::same-server",
                    format!(
                        "`same_server_as` is about databases, but target `{}` has no `postgres`",
                        if other.postgres.is_none() {
                            named
                        } else {
                            name
                        }
                    ),
                    *span,
                    "no database to compare",
                )
                .help("give both targets `postgres: <url>`, or remove `same_server_as`")
            }
            Some(_) => continue,
        };
        cx.push(problem);
    }
}

fn read_steps(cx: &mut LoadCtx, node: &Node, on_failure: bool, out: &mut Vec<RawStep>) {
    let section = if on_failure {
        "`on_failure`"
    } else {
        "`steps`"
    };
    let Value::Map(entries) = &node.value else {
        // MapReader reports the type error.
        MapReader::new(cx, node, section);
        return;
    };
    for (key, value) in entries {
        if !valid_id(&key.name) {
            cx.push(
                Problem::new(
                    "flightpath::step::id",
                    format!("`{}` is not a valid step id", key.name),
                    key.span,
                    "invalid id",
                )
                .help("use letters, digits, `_` and `-`"),
            );
        }
        out.push(read_step(cx, &key.name, key.span, value, on_failure));
    }
}

fn read_step(cx: &mut LoadCtx, id: &str, key_span: Span, node: &Node, on_failure: bool) -> RawStep {
    let mut step = RawStep {
        id: id.to_string(),
        key_span,
        needs: Vec::new(),
        params: None,
        on_failure,
    };
    let Some(mut reader) = MapReader::new(cx, node, format!("step `{id}`")) else {
        return step;
    };
    let kind = reader
        .require(cx, "uses")
        .and_then(|n| read_kind(cx, id, n));
    step.needs = reader.string_list(cx, "needs").unwrap_or_default();
    reader.string(cx, "description");
    let with_node = reader.get("with");
    reader.finish(cx);
    if let Some(kind) = kind {
        let empty = Node {
            span: node.span,
            value: Value::Null,
        };
        let with_node = with_node.unwrap_or(&empty);
        if let Some(mut with) =
            MapReader::new(cx, with_node, format!("`with` of step `{id}` ({kind})"))
        {
            step.params = StepParams::parse(kind, &mut with, cx);
            with.finish(cx);
        }
    }
    step
}

fn read_kind(cx: &mut LoadCtx, id: &str, node: &Node) -> Option<&'static str> {
    let name = cx.string(node, &format!("step `{id}` `uses`"))?;
    if let Some(kind) = steps::KINDS.iter().find(|k| **k == name) {
        return Some(kind);
    }
    if steps::PLANNED_KINDS.contains(&name.as_str()) {
        cx.push(
            Problem::new(
                "flightpath::uses::unavailable",
                format!("step kind `{name}` is not available in this version of flightpath"),
                node.span,
                "not available yet",
            )
            .help(format!("available kinds: {}", steps::KINDS.join(", "))),
        );
        return None;
    }
    let problem = Problem::new(
        "flightpath::uses::unknown",
        format!("step `{id}` uses unknown kind `{name}`"),
        node.span,
        "unknown step kind",
    );
    let all = steps::KINDS.iter().chain(steps::PLANNED_KINDS).copied();
    let problem = match crate::syntax::diagnostics::did_you_mean(&name, all) {
        Some(best) => problem.help(format!("did you mean `{best}`?")),
        None => problem.help(format!("available kinds: {}", steps::KINDS.join(", "))),
    };
    cx.push(problem);
    None
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn check_duplicate_ids(cx: &mut LoadCtx, steps: &[RawStep]) {
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    for step in steps {
        if !seen.insert(&step.id) {
            cx.push(
                Problem::new(
                    "flightpath::step::duplicate",
                    format!("step id `{}` is used twice", step.id),
                    step.key_span,
                    "already used",
                )
                .help("step ids are shared by `steps` and `on_failure`; rename one of them"),
            );
        }
    }
}

/// Resolves `needs`, reports unknown ones and cycles, and checks every
/// `${steps.…}` reference. Returns the execution order when the graph is
/// sound. `earlier` are the main steps (for `on_failure`, whose references
/// may read any of them).
fn check_graph(cx: &mut LoadCtx, group: &[RawStep], earlier: &[RawStep]) -> Option<Vec<usize>> {
    let ids: Vec<&str> = group.iter().map(|s| s.id.as_str()).collect();
    let mut needs: Vec<Vec<usize>> = Vec::with_capacity(group.len());
    let mut sound = true;
    for step in group {
        let mut list = Vec::new();
        for (name, span) in &step.needs {
            match ids.iter().position(|id| id == name) {
                Some(i) => list.push(i),
                None => {
                    sound = false;
                    cx.push(unknown_need(step, name, *span, &ids, earlier));
                }
            }
        }
        needs.push(list);
    }
    let graph = Graph { needs: &needs };
    for cycle in graph.cycles() {
        sound = false;
        let mut names: Vec<&str> = cycle.iter().map(|&i| ids[i]).collect();
        names.push(ids[cycle[0]]);
        let first = &group[cycle[0]];
        let closing = first
            .needs
            .iter()
            .find(|(n, _)| n == ids[*cycle.get(1).unwrap_or(&cycle[0])])
            .map(|(_, span)| *span)
            .unwrap_or(first.key_span);
        cx.push(
            Problem::new(
                "flightpath::needs::cycle",
                format!("dependency cycle: {}", names.join(" -> ")),
                closing,
                "this dependency closes the cycle",
            )
            .help("remove one of these `needs` so the steps can run in some order"),
        );
    }
    let ancestors = graph.ancestors();
    for (i, step) in group.iter().enumerate() {
        let Some(params) = &step.params else { continue };
        for template in params.templates() {
            for reference in template.references() {
                check_reference(cx, step, reference, group, &ancestors[i], earlier);
            }
        }
    }
    sound.then(|| graph.order())
}

fn unknown_need(
    step: &RawStep,
    name: &str,
    span: Span,
    ids: &[&str],
    earlier: &[RawStep],
) -> Problem {
    if step.on_failure && earlier.iter().any(|s| s.id == name) {
        return Problem::new(
            "flightpath::needs::on-failure",
            format!("on_failure step `{}` needs main step `{name}`", step.id),
            span,
            "a main step",
        )
        .help("`on_failure` steps run after a failure and can only need other `on_failure` steps; read main steps' outputs with `${steps.<id>.<output>}` instead");
    }
    Problem::new(
        "flightpath::needs::unknown",
        format!("step `{}` needs unknown step `{name}`", step.id),
        span,
        "no step with this id",
    )
    .suggest(name, ids.iter().copied())
}

fn check_reference(
    cx: &mut LoadCtx,
    step: &RawStep,
    reference: &crate::syntax::template::OutputRef,
    group: &[RawStep],
    ancestors: &BTreeSet<usize>,
    earlier: &[RawStep],
) {
    let ids: Vec<&str> = group.iter().map(|s| s.id.as_str()).collect();
    let target = reference.step.as_str();
    let in_group = ids.iter().position(|id| *id == target);
    let in_earlier = earlier.iter().any(|s| s.id == target);
    let read = match in_group {
        Some(i) => group[i].params.as_ref(),
        None => earlier
            .iter()
            .find(|s| s.id == target)
            .and_then(|s| s.params.as_ref()),
    };
    if let Some(params) = read {
        check_output_name(cx, target, params, reference);
    }
    match in_group {
        Some(i) if ancestors.contains(&i) => {}
        Some(_) => cx.push(
            Problem::new(
                "flightpath::outputs::not-needed",
                format!(
                    "step `{}` reads an output of `{target}`, which is not among its needs",
                    step.id
                ),
                reference.span,
                format!("`{target}` may not have run yet"),
            )
            .help(format!("add `{target}` to the `needs` of `{}`", step.id)),
        ),
        None if in_earlier => {}
        None => {
            let all: Vec<&str> = ids
                .iter()
                .copied()
                .chain(earlier.iter().map(|s| s.id.as_str()))
                .collect();
            cx.push(
                Problem::new(
                    "flightpath::outputs::unknown-step",
                    format!(
                        "step `{}` reads an output of unknown step `{target}`",
                        step.id
                    ),
                    reference.span,
                    "no step with this id",
                )
                .suggest(target, all),
            )
        }
    }
}

/// `reference` names an output that a step of `params`' kind sets.
fn check_output_name(
    cx: &mut LoadCtx,
    step: &str,
    params: &StepParams,
    reference: &crate::syntax::template::OutputRef,
) {
    let outputs = params.outputs();
    let output = reference.output.as_str();
    if outputs.contains(&output) {
        return;
    }
    let kind = params.kind();
    let listed = if outputs.is_empty() {
        format!("a `{kind}` step has no outputs")
    } else {
        let names: Vec<String> = outputs.iter().map(|o| format!("`{o}`")).collect();
        format!("the outputs of a `{kind}` step are {}", names.join(", "))
    };
    let problem = Problem::new(
        "flightpath::outputs::unknown",
        format!("step `{step}` ({kind}) has no output `{output}`"),
        reference.span,
        "no such output",
    );
    let problem = match crate::syntax::diagnostics::did_you_mean(output, outputs.iter().copied()) {
        Some(best) => problem.help(format!("did you mean `{best}`? {listed}")),
        None => problem.help(listed),
    };
    cx.push(problem);
}

/// Every referenced target exists, has the facet the step uses, and is not
/// written when it is `protected`.
fn check_targets(cx: &mut LoadCtx, steps: &[RawStep], targets: &BTreeMap<String, Target>) {
    for step in steps {
        let Some(params) = &step.params else { continue };
        for usage in params.target_uses() {
            let Some(target) = targets.get(&usage.name) else {
                cx.push(
                    Problem::new(
                        "flightpath::target::unknown",
                        format!("step `{}` uses unknown target `{}`", step.id, usage.name),
                        usage.span,
                        "no target with this name",
                    )
                    .suggest(&usage.name, targets.keys().map(String::as_str)),
                );
                continue;
            };
            let has_facet = match usage.facet {
                Facet::Postgres => target.postgres.is_some(),
                Facet::Media => target.media.is_some(),
                Facet::Git => target.git.is_some(),
            };
            if !has_facet {
                cx.push(
                    Problem::new(
                        "flightpath::target::facet",
                        format!(
                            "step `{}` ({}) needs target `{}` to have `{}`",
                            step.id,
                            params.kind(),
                            usage.name,
                            usage.facet.key()
                        ),
                        usage.span,
                        format!("no `{}` on this target", usage.facet.key()),
                    )
                    .help(format!(
                        "add `{}: …` to target `{}`",
                        usage.facet.key(),
                        usage.name
                    )),
                );
            }
            if usage.write && target.protected {
                cx.push(
                    Problem::new(
                        "flightpath::target::protected",
                        format!(
                            "step `{}` would write to target `{}`, which is protected",
                            step.id, usage.name
                        ),
                        usage.span,
                        "protected: may be read, never written",
                    )
                    .help(
                        "write to another target, or (for a read-only query) set `readonly: true`",
                    ),
                );
            }
        }
    }
}

/// A `postgres.staging-only-rows` step with `preserve: true` hands its rows
/// to the `postgres.clone` of the same target: some clone of that target
/// must exist, and every clone of that target must need it (directly or
/// through other steps): one that does not could run before it.
fn check_carry_over(cx: &mut LoadCtx, steps: &[RawStep]) {
    let ids: Vec<&str> = steps.iter().map(|s| s.id.as_str()).collect();
    let ancestors = step_ancestors(steps, &ids);
    let clones: Vec<(usize, &steps::postgres_clone::Params)> = steps
        .iter()
        .enumerate()
        .filter_map(|(i, s)| match &s.params {
            Some(StepParams::PostgresClone(clone)) => Some((i, clone)),
            _ => None,
        })
        .collect();
    for (p, step) in steps.iter().enumerate() {
        let Some(StepParams::PostgresStagingOnlyRows(keep)) = &step.params else {
            continue;
        };
        let Some(span) = keep.preserve else { continue };
        let of_target: Vec<_> = clones
            .iter()
            .filter(|(_, clone)| clone.target == keep.target)
            .collect();
        if of_target.is_empty() {
            cx.push(
                Problem::new(
                    "flightpath::staging_only::preserve",
                    format!(
                        "step `{}` keeps staging-only rows for the clone of `{}`, but no \
                         `postgres.clone` of `{}` needs it",
                        step.id, keep.target, keep.target
                    ),
                    span,
                    "nothing would carry these rows over",
                )
                .help(format!(
                    "add a `postgres.clone` of `{}` that needs `{}`, or leave `preserve` out to \
                     only list the rows",
                    keep.target, step.id
                )),
            );
        }
        for (c, clone) in of_target {
            if ancestors[*c].contains(&p) {
                continue;
            }
            cx.push(
                Problem::new(
                    "flightpath::staging_only::preserve",
                    format!(
                        "step `{}` clones `{}` and could run before step `{}`, which keeps \
                         staging-only rows for that clone",
                        ids[*c], clone.target, step.id
                    ),
                    clone.target_span,
                    format!("does not need `{}`", step.id),
                )
                .help(format!("add `needs: [{}]` to step `{}`", step.id, ids[*c])),
            );
        }
    }
}

/// Each step's transitive `needs`, by index (unknown names are reported
/// elsewhere and left out here).
fn step_ancestors(steps: &[RawStep], ids: &[&str]) -> Vec<std::collections::BTreeSet<usize>> {
    let needs: Vec<Vec<usize>> = steps
        .iter()
        .map(|s| {
            s.needs
                .iter()
                .filter_map(|(n, _)| ids.iter().position(|id| id == n))
                .collect()
        })
        .collect();
    Graph { needs: &needs }.ancestors()
}

/// Two steps writing the same facet of a target (its database, its media,
/// its repository) must be ordered by `needs`; a clone and a media sync of
/// one target may run side by side.
fn check_write_conflicts(cx: &mut LoadCtx, steps: &[RawStep], order: &[usize]) {
    let ids: Vec<&str> = steps.iter().map(|s| s.id.as_str()).collect();
    let ancestors = step_ancestors(steps, &ids);
    let mut writers: BTreeMap<(String, &'static str), Vec<usize>> = BTreeMap::new();
    for &i in order {
        let Some(params) = &steps[i].params else {
            continue;
        };
        for usage in params.target_uses().into_iter().filter(|u| u.write) {
            let earlier = writers
                .entry((usage.name.clone(), usage.facet.key()))
                .or_default();
            for &j in earlier.iter() {
                if !ancestors[i].contains(&j) && !ancestors[j].contains(&i) {
                    cx.push(
                        Problem::new(
                            "flightpath::target::concurrent-writes",
                            format!(
                                "steps `{}` and `{}` both write target `{}` and could run at the same time",
                                ids[j], ids[i], usage.name
                            ),
                            usage.span,
                            format!("`{}` also writes `{}`", ids[j], usage.name),
                        )
                        .help(format!("add `needs: [{}]` to step `{}`", ids[j], ids[i])),
                    );
                }
            }
            if !earlier.contains(&i) {
                earlier.push(i);
            }
        }
    }
}
