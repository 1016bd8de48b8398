//! Checks made before any step runs, against the real servers (read-only):
//! no target that is written may be the same database as a target that is
//! read or protected, and a written database on a protected target's server
//! must say so (`same_server_as`). Two names for one database (a copied URL,
//! a DNS alias) would make a clone overwrite production, so identity is
//! asked of the servers themselves: `system_identifier` plus the database
//! name, falling back to the server's address and port, then to the URL,
//! when that is not allowed.
//!
//! Every protected target is compared with every written one, whether or not
//! a step reads it: protection is a property of the database, not of how a
//! workflow happens to use it.

use std::collections::{BTreeMap, BTreeSet};

use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

use crate::pg::connect::connect;
use crate::workflow::model::Workflow;

#[derive(Debug, thiserror::Error)]
pub enum SafetyError {
    #[error(
        "target `{written}` is the same database as `{read}` ({identity}); writing it would change what is only to be read"
    )]
    SameDatabase {
        written: String,
        read: String,
        identity: String,
    },
    #[error(
        "target `{written}` is another database on the server of protected target `{protected}` ({server}); \
         if that is intended, add `same_server_as: {protected}` to target `{written}`"
    )]
    SameServer {
        written: String,
        protected: String,
        server: String,
    },
    #[error("{0}")]
    Unreachable(String),
}

/// How a server and database identify themselves.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Identity {
    System {
        id: String,
        database: String,
    },
    Address {
        addr: String,
        port: i32,
        database: String,
    },
    Url {
        host: String,
        port: u16,
        database: String,
    },
}

impl Identity {
    fn describe(&self) -> String {
        format!("{}, database `{}`", self.describe_server(), self.database())
    }

    fn describe_server(&self) -> String {
        match self {
            Identity::System { id, .. } => format!("system identifier {id}"),
            Identity::Address { addr, port, .. } => format!("server {addr}:{port}"),
            Identity::Url { host, port, .. } => format!("{host}:{port}"),
        }
    }

    fn database(&self) -> &str {
        match self {
            Identity::System { database, .. }
            | Identity::Address { database, .. }
            | Identity::Url { database, .. } => database,
        }
    }

    /// The same server (whatever the database), at the same level of identity.
    fn same_server(&self, other: &Identity) -> bool {
        match (self, other) {
            (Identity::System { id: a, .. }, Identity::System { id: b, .. }) => a == b,
            (
                Identity::Address {
                    addr: a, port: p, ..
                },
                Identity::Address {
                    addr: b, port: q, ..
                },
            ) => a == b && p == q,
            (
                Identity::Url {
                    host: a, port: p, ..
                },
                Identity::Url {
                    host: b, port: q, ..
                },
            ) => a == b && p == q,
            _ => false,
        }
    }
}

/// Refuses when a written postgres target is the same database as a read or
/// protected one, or another database on a protected one's server without
/// `same_server_as` naming it.
pub async fn check_distinct_databases(
    workflow: &Workflow,
    cancel: &CancellationToken,
) -> Result<(), SafetyError> {
    let mut read = BTreeSet::new();
    let mut written = BTreeSet::new();
    for step in workflow.all_steps() {
        for usage in step.params.target_uses() {
            if usage.facet != crate::steps::Facet::Postgres {
                continue;
            }
            if usage.write {
                written.insert(usage.name);
            } else {
                read.insert(usage.name);
            }
        }
    }
    let protected: BTreeSet<String> = workflow
        .targets
        .values()
        .filter(|t| t.protected && t.postgres.is_some())
        .map(|t| t.name.clone())
        .collect();
    read.extend(protected.iter().cloned());
    let pairs: Vec<(&String, &String)> = written
        .iter()
        .flat_map(|w| read.iter().map(move |r| (w, r)))
        .filter(|(w, r)| w != r)
        .collect();
    if pairs.is_empty() {
        return Ok(());
    }
    let mut identities = BTreeMap::new();
    for name in pairs.iter().flat_map(|(w, r)| [*w, *r]) {
        if identities.contains_key(name) {
            continue;
        }
        let url = workflow.targets[name]
            .postgres
            .as_deref()
            .unwrap_or_default();
        identities.insert(name.clone(), identify(name, url, cancel).await?);
    }
    for &(w, r) in &pairs {
        let (left, right) = comparable(&identities[w], &identities[r]);
        if left == right {
            return Err(SafetyError::SameDatabase {
                written: w.clone(),
                read: r.clone(),
                identity: left.describe(),
            });
        }
    }
    for &(w, r) in &pairs {
        let (left, right) = comparable(&identities[w], &identities[r]);
        if !protected.contains(r) || !left.same_server(right) {
            continue;
        }
        // Naming any protected target on that server acknowledges it.
        let acknowledged = workflow.targets[w]
            .same_server_as
            .as_ref()
            .filter(|named| protected.contains(*named))
            .and_then(|named| identities.get(named))
            .is_some_and(|named| {
                let (a, b) = comparable(named, &identities[r]);
                a.same_server(b)
            });
        if !acknowledged {
            return Err(SafetyError::SameServer {
                written: w.clone(),
                protected: r.clone(),
                server: right.describe_server(),
            });
        }
    }
    Ok(())
}

/// Every level of identity a target could give.
struct Identities {
    system: Option<Identity>,
    address: Option<Identity>,
    url: Identity,
}

/// The most precise identity both sides have.
fn comparable<'a>(a: &'a Identities, b: &'a Identities) -> (&'a Identity, &'a Identity) {
    match (&a.system, &b.system, &a.address, &b.address) {
        (Some(x), Some(y), _, _) => (x, y),
        (_, _, Some(x), Some(y)) => (x, y),
        _ => (&a.url, &b.url),
    }
}

async fn identify(
    name: &str,
    url: &str,
    cancel: &CancellationToken,
) -> Result<Identities, SafetyError> {
    let client = connect(name, url, cancel).await.map_err(|e| {
        SafetyError::Unreachable(format!("checking that targets are distinct: {e}"))
    })?;
    let database: String = query_text(&client, "SELECT current_database()")
        .await
        .unwrap_or_default();
    let system = query_text(
        &client,
        "SELECT system_identifier::text FROM pg_control_system()",
    )
    .await
    .map(|id| Identity::System {
        id,
        database: database.clone(),
    });
    let address = match client
        .query_one("SELECT inet_server_addr()::text, inet_server_port()", &[])
        .await
    {
        Ok(row) => match (
            row.get::<_, Option<String>>(0),
            row.get::<_, Option<i32>>(1),
        ) {
            (Some(addr), Some(port)) => Some(Identity::Address {
                addr,
                port,
                database: database.clone(),
            }),
            _ => None,
        },
        Err(_) => None,
    };
    Ok(Identities {
        system,
        address,
        url: url_identity(url, &database),
    })
}

async fn query_text(client: &Client, sql: &str) -> Option<String> {
    client
        .query_one(sql, &[])
        .await
        .ok()?
        .get::<_, Option<String>>(0)
}

fn url_identity(url: &str, database: &str) -> Identity {
    // tokio-postgres refuses libpq's TLS keys (`sslmode=verify-full`,
    // `sslrootcert`), so they are taken out first.
    let config: Option<tokio_postgres::Config> = crate::pg::connect::split_tls_params(url)
        .ok()
        .and_then(|(_, rest)| rest.parse().ok());
    let host = config
        .as_ref()
        .and_then(|c| c.get_hosts().first().cloned())
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(h) => normalize_host(&h),
            tokio_postgres::config::Host::Unix(p) => format!("unix:{}", p.display()),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = config
        .as_ref()
        .and_then(|c| c.get_ports().first().copied())
        .unwrap_or(5432);
    Identity::Url {
        host,
        port,
        database: database.to_string(),
    }
}

fn normalize_host(host: &str) -> String {
    match host {
        "localhost" | "127.0.0.1" | "::1" => "localhost".into(),
        other => other.to_ascii_lowercase(),
    }
}
