//! Opening a repository target: a local path (fetched first with
//! `fetch: true`), or a URL cloned bare into `.flightpath/git/<name>` and
//! fetched on every run. Credentials are offered once per kind: libgit2
//! calls the credential callback again after each refusal, so a second
//! request for the same kind means the first was refused, and the fetch
//! stops there with one error instead of looping.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use git2::{AutotagOption, Cred, CredentialType, FetchOptions, FetchPrune, RemoteCallbacks};

use super::Error;

/// Where a repository target is and how to reach it.
#[derive(Debug, Clone, PartialEq)]
pub struct RepoSpec {
    /// The target's name (for messages and the cache directory).
    pub target: String,
    /// `git:` as written: a path, or a URL (`https://…`, `ssh://…`,
    /// `git@host:org/repo.git`, `file://…`).
    pub location: String,
    /// Fetch a local path's remotes before reading it (a URL is always
    /// fetched).
    pub fetch: bool,
    /// The environment variable holding an HTTPS token.
    pub token_env: Option<String>,
}

/// A repository ready to be read.
pub struct Opened {
    pub repo: git2::Repository,
    /// Where it is on disk (the cache for a URL).
    pub path: PathBuf,
    /// The URLs fetched before reading, in order.
    pub fetched: Vec<String>,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened")
            .field("path", &self.path)
            .field("fetched", &self.fetched)
            .finish()
    }
}

/// Whether `git:` names a remote rather than a directory.
pub fn is_url(location: &str) -> bool {
    if location.contains("://") {
        return true;
    }
    // scp-like `user@host:path`: a colon before any slash.
    match (location.find(':'), location.find('/')) {
        (Some(colon), slash) => {
            location[..colon].contains('@') && slash.is_none_or(|slash| colon < slash)
        }
        _ => false,
    }
}

/// The cache directory of a URL target: its name, with anything but
/// letters, digits, `.`, `-` and `_` replaced.
pub fn cache_dir(workdir: &Path, target: &str) -> PathBuf {
    let name: String = target
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let name = if name.starts_with('.') {
        format!("_{name}")
    } else {
        name
    };
    workdir.join(".flightpath").join("git").join(name)
}

/// Opens (and fetches) the repository of a target. `cancelled` is polled
/// while objects arrive; a fetch stops when it returns true.
pub fn open(
    spec: &RepoSpec,
    workdir: &Path,
    cancelled: &dyn Fn() -> bool,
) -> Result<Opened, Error> {
    let mut opened = if is_url(&spec.location) {
        let token = token(spec, &spec.location)?;
        let path = cache_dir(workdir, &spec.target);
        let repo = prepare_cache(spec, &path)?;
        let mut remote = repo
            .find_remote("origin")
            .map_err(|e| cache_error(spec, &path, e))?;
        fetch(spec, &mut remote, token.as_deref(), cancelled)?;
        drop(remote);
        Opened {
            repo,
            path,
            fetched: vec![spec.location.clone()],
        }
    } else {
        let path = workdir.join(&spec.location);
        let repo = git2::Repository::open(&path).map_err(|e| Error::NotARepository {
            target: spec.target.clone(),
            location: spec.location.clone(),
            message: e.message().to_string(),
        })?;
        let mut fetched = Vec::new();
        if spec.fetch {
            let names = repo.remotes().map_err(|e| read_error(spec, e))?;
            for name in names.iter().filter_map(|n| n.ok().flatten()) {
                let mut remote = repo.find_remote(name).map_err(|e| read_error(spec, e))?;
                let url = remote.url().unwrap_or(name).to_string();
                let token = token(spec, &url)?;
                fetch_checked(spec, &repo, &mut remote, token.as_deref(), cancelled)?;
                fetched.push(url);
            }
        }
        Opened {
            repo,
            path,
            fetched,
        }
    };
    if opened.repo.is_shallow() {
        return Err(Error::Shallow {
            target: spec.target.clone(),
            location: spec.location.clone(),
        });
    }
    opened.fetched.dedup();
    Ok(opened)
}

/// A shallow repository is refused before a fetch, which would otherwise
/// spend time downloading into history that still cannot be read.
fn fetch_checked(
    spec: &RepoSpec,
    repo: &git2::Repository,
    remote: &mut git2::Remote,
    token: Option<&str>,
    cancelled: &dyn Fn() -> bool,
) -> Result<(), Error> {
    if repo.is_shallow() {
        return Err(Error::Shallow {
            target: spec.target.clone(),
            location: spec.location.clone(),
        });
    }
    fetch(spec, remote, token, cancelled)
}

/// The bare cache of a URL target, created empty with an `origin` remote
/// the first time; the remote's URL follows the workflow's.
fn prepare_cache(spec: &RepoSpec, path: &Path) -> Result<git2::Repository, Error> {
    let repo = if path.exists() {
        git2::Repository::open_bare(path).map_err(|e| cache_error(spec, path, e))?
    } else {
        std::fs::create_dir_all(path).map_err(|e| Error::Cache {
            target: spec.target.clone(),
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        git2::Repository::init_bare(path).map_err(|e| cache_error(spec, path, e))?
    };
    match repo.find_remote("origin") {
        Ok(remote) if remote.url().ok() == Some(spec.location.as_str()) => {}
        Ok(_) => repo
            .remote_set_url("origin", &spec.location)
            .map_err(|e| cache_error(spec, path, e))?,
        Err(_) => {
            repo.remote("origin", &spec.location)
                .map_err(|e| cache_error(spec, path, e))?;
        }
    }
    Ok(repo)
}

/// Fetches a remote's configured refspecs (remote-tracking branches),
/// pruning branches deleted upstream. No tags, no local branch moves.
fn fetch(
    spec: &RepoSpec,
    remote: &mut git2::Remote,
    token: Option<&str>,
    cancelled: &dyn Fn() -> bool,
) -> Result<(), Error> {
    let url = remote.url().unwrap_or_default().to_string();
    let credentials = Credentials::new(spec, token, "read");
    let mut callbacks = RemoteCallbacks::new();
    callbacks.credentials(|asking, username, allowed| credentials.offer(asking, username, allowed));
    callbacks.transfer_progress(|_| !cancelled());
    let mut options = FetchOptions::new();
    options
        .remote_callbacks(callbacks)
        .prune(FetchPrune::On)
        .download_tags(AutotagOption::None);
    let result = remote.fetch::<&str>(&[], Some(&mut options), None);
    drop(options);
    match result {
        Ok(()) => Ok(()),
        Err(_) if cancelled() => Err(Error::Cancelled),
        Err(e) => match credentials.refused() {
            Some(why) => Err(Error::Credentials {
                target: spec.target.clone(),
                url,
                why,
            }),
            None => Err(Error::Fetch {
                target: spec.target.clone(),
                url,
                message: e.message().to_string(),
            }),
        },
    }
}

/// The token of a target (`token_env`) for contacting `url`, read from the
/// environment. Only an HTTPS (or HTTP) remote takes a token, so for a
/// path, `file://` or SSH remote an unset variable is no error: a workflow
/// that names `token_env: GITHUB_TOKEN` for CI runs on a laptop too.
pub(super) fn token(spec: &RepoSpec, url: &str) -> Result<Option<String>, Error> {
    let lower = url.to_ascii_lowercase();
    if !(lower.starts_with("https://") || lower.starts_with("http://")) {
        return Ok(None);
    }
    match &spec.token_env {
        Some(name) => std::env::var(name)
            .map(Some)
            .map_err(|_| Error::TokenMissing {
                target: spec.target.clone(),
                name: name.clone(),
            }),
        None => Ok(None),
    }
}

/// The credential callback of one fetch or push: each kind of credential
/// is offered once, and the reason for giving up is kept for the error.
pub(super) struct Credentials<'a> {
    spec: &'a RepoSpec,
    token: Option<&'a str>,
    /// What the token must allow: `read`, `push to`.
    access: &'static str,
    /// Why the credentials were refused, set by the call that gave up.
    refused: RefCell<Option<String>>,
    /// The kinds of credential already offered (each is offered once).
    offered: RefCell<Vec<CredentialType>>,
}

impl<'a> Credentials<'a> {
    pub(super) fn new(spec: &'a RepoSpec, token: Option<&'a str>, access: &'static str) -> Self {
        Credentials {
            spec,
            token,
            access,
            refused: RefCell::new(None),
            offered: RefCell::new(Vec::new()),
        }
    }

    /// Why the server's requests for credentials were given up on, if they were.
    pub(super) fn refused(&self) -> Option<String> {
        self.refused.borrow().clone()
    }

    /// Answers libgit2's request for credentials from `asking`.
    pub(super) fn offer(
        &self,
        asking: &str,
        username: Option<&str>,
        allowed: CredentialType,
    ) -> Result<Cred, git2::Error> {
        let give_up = |why: String| {
            let error = git2::Error::from_str(&why);
            *self.refused.borrow_mut() = Some(why);
            Err(error)
        };
        let token = self.token;
        let kind = if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) && token.is_some() {
            CredentialType::USER_PASS_PLAINTEXT
        } else if allowed.contains(CredentialType::SSH_KEY) {
            CredentialType::SSH_KEY
        } else if allowed.contains(CredentialType::USERNAME) {
            CredentialType::USERNAME
        } else if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
            return give_up(
                "the server asks for a user name and token, and the target has no \
                 `token_env`; add `token_env: <VARIABLE>` naming the variable that holds \
                 the token, or use an SSH URL with a key in the SSH agent"
                    .to_string(),
            );
        } else {
            return give_up(format!(
                "the server asks for credentials of a kind flightpath does not offer ({allowed:?})"
            ));
        };
        if self.offered.borrow().contains(&kind) {
            return give_up(match kind {
                CredentialType::USER_PASS_PLAINTEXT => format!(
                    "the token in `{}` was not accepted; check that it is current and may \
                     {} the repository",
                    self.spec.token_env.as_deref().unwrap_or("token_env"),
                    self.access
                ),
                CredentialType::SSH_KEY => "no key in the SSH agent was accepted; add one \
                                            with `ssh-add` (`ssh-add -l` lists them)"
                    .to_string(),
                _ => "the user name was not accepted".to_string(),
            });
        }
        if kind == CredentialType::USER_PASS_PLAINTEXT && crate::redact::exposed_in_transit(asking)
        {
            return give_up(
                "it asks for the token over plain `http://`, where anyone on the way could \
                 read it; use the repository's `https://` URL"
                    .to_string(),
            );
        }
        self.offered.borrow_mut().push(kind);
        let user = username.unwrap_or("git");
        match kind {
            CredentialType::USER_PASS_PLAINTEXT => Cred::userpass_plaintext(
                username.unwrap_or("x-access-token"),
                token.unwrap_or_default(),
            ),
            CredentialType::SSH_KEY => Cred::ssh_key_from_agent(user).or_else(|e| {
                give_up(format!(
                    "the SSH agent could not be used ({}); start it and add a key \
                     (`eval $(ssh-agent) && ssh-add`), or use HTTPS with `token_env`",
                    e.message()
                ))
            }),
            _ => Cred::username(user),
        }
    }
}

fn cache_error(spec: &RepoSpec, path: &Path, e: git2::Error) -> Error {
    Error::Cache {
        target: spec.target.clone(),
        path: path.display().to_string(),
        message: e.message().to_string(),
    }
}

fn read_error(spec: &RepoSpec, e: git2::Error) -> Error {
    Error::Read {
        target: spec.target.clone(),
        message: e.message().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_paths_are_told_apart() {
        assert!(is_url("https://github.com/org/app.git"));
        assert!(is_url("git@github.com:org/app.git"));
        assert!(is_url("file:///srv/git/app.git"));
        assert!(!is_url("."));
        assert!(!is_url("../app"));
        assert!(!is_url("repos/a@b:c/d"));
    }

    #[test]
    fn cache_names_stay_inside_the_cache() {
        let dir = cache_dir(Path::new("/w"), "../repo one");
        assert_eq!(dir, Path::new("/w/.flightpath/git/_.._repo_one"));
    }
}
