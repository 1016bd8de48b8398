//! The backups a store holds: its manifests, newest first, and the one a
//! restore or verify names (`latest`, a name, a key or a path). A dump
//! without a manifest is not a backup and never appears; a JSON file that
//! is not a manifest is skipped.

use super::manifest::{self, Manifest};
use super::{Error, Result};
use crate::storage::Store;

/// Which backup to take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Which {
    /// The newest, of one workflow when given.
    Latest { workflow: Option<String> },
    /// A name (`<workflow>/<time>-<run>`), the dump's or manifest's key, or
    /// a path: the store's location followed by a key.
    Named(String),
}

impl Which {
    pub fn parse(text: &str, workflow: Option<&str>) -> Which {
        match text.trim() {
            "latest" => Which::Latest {
                workflow: workflow.map(str::to_string),
            },
            other => Which::Named(other.to_string()),
        }
    }
}

/// Every backup in the store (of `workflow`, when given), newest first.
pub async fn list(store: &Store, workflow: Option<&str>) -> Result<Vec<Manifest>> {
    let prefix = workflow
        .map(|w| format!("{}/", manifest::workflow_segment(w)))
        .unwrap_or_default();
    let mut found = Vec::new();
    for meta in store.list(&prefix).collect().await? {
        let Some(name) = meta.key.strip_suffix(manifest::MANIFEST_EXT) else {
            continue;
        };
        let bytes = store.get_bytes(&meta.key).await?;
        match Manifest::from_json(&bytes) {
            Ok(m) if m.name == name => found.push(m),
            Ok(_) => tracing::warn!(
                "{}: {} names another backup; skipped",
                store.location(),
                meta.key
            ),
            Err(e) => tracing::debug!("{}: {} is not a manifest: {e}", store.location(), meta.key),
        }
    }
    found.sort_by(|a, b| b.created.cmp(&a.created).then(b.name.cmp(&a.name)));
    Ok(found)
}

/// The backup `which` names in the store.
pub async fn find(store: &Store, which: &Which) -> Result<Manifest> {
    match which {
        Which::Latest { workflow } => list(store, workflow.as_deref())
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| Error::NoBackups {
                location: store.location(),
                workflow: workflow.clone(),
            }),
        Which::Named(text) => {
            let name = name_in(store, text);
            let key = manifest::manifest_key(&name);
            let bytes = match store.get_bytes(&key).await {
                Ok(bytes) => bytes,
                Err(crate::storage::StorageError::NotFound { .. }) => {
                    return Err(not_found(store, &name).await);
                }
                Err(e) => return Err(e.into()),
            };
            Manifest::from_json(&bytes).map_err(|message| Error::BadManifest {
                name: name.clone(),
                location: store.location(),
                key,
                message,
            })
        }
    }
}

/// A name, key or path as the backup's name in `store`.
pub fn name_in(store: &Store, text: &str) -> String {
    let location = store.location();
    let base = location
        .split('?')
        .next()
        .unwrap_or("")
        .trim_end_matches('/');
    let mut rest = text.trim();
    // A path: the store's location, then the key (and the location's query).
    if let Some(after) = rest.strip_prefix(base).and_then(|r| r.strip_prefix('/')) {
        rest = after.split('?').next().unwrap_or(after);
    }
    let rest = rest.trim_start_matches("./");
    rest.strip_suffix(manifest::DUMP_EXT)
        .or_else(|| rest.strip_suffix(manifest::MANIFEST_EXT))
        .unwrap_or(rest)
        .to_string()
}

async fn not_found(store: &Store, name: &str) -> Error {
    let known: Vec<String> = list(store, None)
        .await
        .map(|all| all.into_iter().map(|m| m.name).collect())
        .unwrap_or_default();
    if known.is_empty() {
        return Error::NoBackups {
            location: store.location(),
            workflow: None,
        };
    }
    let mut close: Vec<(f64, String)> = known
        .into_iter()
        .map(|k| (strsim::jaro_winkler(&k, name), k))
        .filter(|(score, _)| *score > 0.8)
        .collect();
    close.sort_by(|a, b| b.0.total_cmp(&a.0));
    Error::NotFound {
        name: name.to_string(),
        location: store.location(),
        known: close.into_iter().take(3).map(|(_, k)| k).collect(),
    }
}
