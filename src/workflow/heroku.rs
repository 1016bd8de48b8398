//! Resolving a loaded workflow's `heroku://APP` endpoints: one API call per
//! app, each endpoint replaced by what it stands for, every value (and the
//! API key) registered as a secret before anything is printed. A failure
//! is a located problem at the endpoint, like any other in the file.

use std::collections::BTreeMap;

use crate::heroku::{self, Api, ConfigVars, HerokuError, Resolved};
use crate::steps::{Facet, MediaCredentials};
use crate::syntax::diagnostics::{Located, Problem};

use super::LoadError;
use super::model::Workflow;

/// Replaces every `heroku://` endpoint of `workflow` by the app's values.
/// The key and every resolved value join `workflow.secrets`, also when
/// resolving fails, so the error is printed under the masks.
pub async fn resolve(workflow: &mut Workflow, api: &Api) -> Result<(), LoadError> {
    let apps: Vec<String> = workflow
        .targets
        .values()
        .flat_map(|t| t.heroku.iter().map(|h| h.app.clone()))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    if apps.is_empty() {
        return Ok(());
    }
    if let Some(key) = api.key() {
        workflow.secrets.push(key.to_string());
    }
    let mut fetched: BTreeMap<String, Result<ConfigVars, HerokuError>> = BTreeMap::new();
    let calls = apps.iter().map(|app| api.config_vars(app));
    for (app, vars) in apps.iter().zip(futures_util::future::join_all(calls).await) {
        fetched.insert(app.clone(), vars);
    }

    let mut problems = Vec::new();
    let mut secrets = Vec::new();
    // A failed call is named once, at the first endpoint of its app.
    let mut named_apps = std::collections::BTreeSet::new();
    for target in workflow.targets.values_mut() {
        for endpoint in target.heroku.clone() {
            let vars = match &fetched[&endpoint.app] {
                Ok(vars) => vars,
                Err(e) => {
                    if named_apps.insert(endpoint.app.clone()) {
                        problems.push(problem(&target.name, endpoint.facet, endpoint.span, e));
                    }
                    continue;
                }
            };
            let resolved = match endpoint.facet {
                Facet::Postgres => target
                    .postgres
                    .as_deref()
                    .filter(|url| heroku::is_heroku(url))
                    .map(|url| parse_postgres(url).resolve(vars)),
                _ => target
                    .media
                    .as_deref()
                    .filter(|url| heroku::is_heroku(url))
                    .map(|url| parse_media(url).resolve(vars)),
            };
            match resolved {
                Some(Ok(resolved)) => {
                    secrets.extend(resolved.secrets());
                    match resolved {
                        Resolved::Postgres { url } => target.postgres = Some(url),
                        Resolved::Media {
                            location,
                            access_key,
                            secret_key,
                            ..
                        } => {
                            target.media = Some(location);
                            target.media_credentials = Some(MediaCredentials::Given {
                                access: access_key,
                                secret: secret_key,
                            });
                        }
                    }
                }
                Some(Err(e)) => {
                    problems.push(problem(&target.name, endpoint.facet, endpoint.span, &e))
                }
                None => {}
            }
        }
    }
    workflow.secrets.extend(secrets);
    if problems.is_empty() {
        return Ok(());
    }
    Err(LoadError::Invalid {
        path: workflow.path.clone(),
        problems: problems
            .into_iter()
            .map(|problem| Located {
                problem,
                source: workflow.source.clone(),
            })
            .collect(),
    })
}

/// The endpoint as the load checked it.
fn parse_postgres(url: &str) -> heroku::PostgresEndpoint {
    heroku::parse_postgres(url).expect("checked when the workflow was loaded")
}

fn parse_media(url: &str) -> heroku::MediaEndpoint {
    heroku::parse_media(url).expect("checked when the workflow was loaded")
}

fn problem(
    target: &str,
    facet: Facet,
    span: crate::syntax::yaml::Span,
    e: &HerokuError,
) -> Problem {
    let (code, label) = match e {
        HerokuError::NoKey { .. } => ("flightpath::heroku::key", "needs HEROKU_API_KEY"),
        HerokuError::Unauthorized { .. } | HerokuError::Forbidden { .. } => {
            ("flightpath::heroku::refused", "the API refused the key")
        }
        HerokuError::NotFound { .. } => ("flightpath::heroku::app", "no such app"),
        HerokuError::MissingVar { .. } | HerokuError::NotAUrl { .. } => {
            ("flightpath::heroku::config", "not in the app's config vars")
        }
        _ => ("flightpath::heroku::api", "the API did not answer"),
    };
    Problem::new(
        code,
        format!("target `{target}` `{}`: {e}", facet.key()),
        span,
        label,
    )
}
