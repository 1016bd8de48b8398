//! Waiting on other sessions' locks, out loud. A statement that needs a lock
//! another session holds runs under a `lock_timeout` and is retried a few
//! times; while it waits, a second connection (the observer) asks the server
//! who blocks it (`pg_blocking_pids`) and says so: pid, application, user,
//! state and age of its transaction — never its query text, which can hold
//! data.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

/// A session holding a lock someone waits for, as `pg_stat_activity` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Holder {
    pub pid: i32,
    pub application: String,
    pub user: String,
    /// `idle in transaction`, `active`…; empty when the role may not see it.
    pub state: String,
    /// Seconds since its transaction began, when visible.
    pub transaction_age: Option<f64>,
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let application = if self.application.is_empty() {
            "no application_name".to_string()
        } else {
            format!("application `{}`", self.application)
        };
        write!(f, "pid {} ({application}, user `{}`", self.pid, self.user)?;
        if !self.state.is_empty() {
            write!(f, ", {}", self.state)?;
        }
        if let Some(age) = self.transaction_age {
            write!(f, ", transaction open for {}", whole_seconds(age))?;
        }
        f.write_str(")")
    }
}

fn whole_seconds(seconds: f64) -> String {
    format!("{} s", seconds.max(0.0).round() as u64)
}

/// The holders as one phrase: "pid 1 (…), pid 2 (…)".
pub fn describe(holders: &[Holder]) -> String {
    holders
        .iter()
        .map(Holder::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The sessions blocking backend `pid`, seen from `observer`.
pub async fn blockers(observer: &Client, pid: i32) -> Result<Vec<Holder>, tokio_postgres::Error> {
    let rows = observer
        .query(
            "SELECT a.pid, coalesce(a.application_name, ''), coalesce(a.usename::text, ''), \
                    coalesce(a.state, ''), extract(epoch FROM now() - a.xact_start)::float8 \
             FROM pg_stat_activity a WHERE a.pid = ANY (pg_blocking_pids($1)) ORDER BY a.pid",
            &[&pid],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Holder {
            pid: r.get(0),
            application: r.get(1),
            user: r.get(2),
            state: r.get(3),
            transaction_age: r.get(4),
        })
        .collect())
}

/// The backend pid of `client`'s session.
pub async fn backend_pid(client: &Client) -> Result<i32, tokio_postgres::Error> {
    Ok(client
        .query_one("SELECT pg_backend_pid()", &[])
        .await?
        .get(0))
}

/// Whether `err` is a `lock_timeout` expiring (SQLSTATE 55P03).
pub fn is_lock_timeout(err: &tokio_postgres::Error) -> bool {
    err.code() == Some(&SqlState::LOCK_NOT_AVAILABLE)
}

/// How long one attempt waits for a lock, and how many attempts there are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Patience {
    pub lock_timeout: Duration,
    pub attempts: u32,
}

impl Patience {
    /// For taking staging's locks: 5 s at a time (other sessions queue
    /// behind a waiting exclusive lock, so it gives way now and then), six
    /// times.
    pub const STAGING: Patience = Patience {
        lock_timeout: Duration::from_secs(5),
        attempts: 6,
    };

    /// `SET LOCAL lock_timeout = …` for one attempt.
    pub fn set_local(&self) -> String {
        format!(
            "SET LOCAL lock_timeout = '{}ms'",
            self.lock_timeout.as_millis()
        )
    }

    /// The whole wait, for messages.
    pub fn total(&self) -> Duration {
        self.lock_timeout * self.attempts
    }
}

/// Runs `work` while `observer` watches backend `pid`: once it has waited
/// about a second, `on_wait` hears who blocks it (again whenever that
/// changes). Returns the work's result and the last holders seen.
pub async fn watched<T>(
    observer: &Client,
    pid: i32,
    work: impl Future<Output = T>,
    on_wait: &(dyn Fn(&[Holder]) + Sync),
) -> (T, Vec<Holder>) {
    tokio::pin!(work);
    let mut seen: Vec<Holder> = Vec::new();
    let mut reported: Vec<i32> = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.tick().await;
    let mut polls = 0u32;
    loop {
        tokio::select! {
            result = &mut work => return (result, seen),
            _ = tick.tick() => {
                polls += 1;
                // A failing observer only costs the explanation.
                let Ok(now) = blockers(observer, pid).await else { continue };
                if now.is_empty() {
                    continue;
                }
                seen = now;
                let pids: Vec<i32> = seen.iter().map(|h| h.pid).collect();
                // Past a second of waiting, and whenever the holders change.
                if polls >= 2 && pids != reported {
                    on_wait(&seen);
                    reported = pids;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_holder_reads_without_its_query() {
        let holder = Holder {
            pid: 4242,
            application: "psql".into(),
            user: "app".into(),
            state: "idle in transaction".into(),
            transaction_age: Some(41.6),
        };
        assert_eq!(
            holder.to_string(),
            "pid 4242 (application `psql`, user `app`, idle in transaction, transaction open for 42 s)"
        );
        let hidden = Holder {
            application: String::new(),
            state: String::new(),
            transaction_age: None,
            ..holder
        };
        assert_eq!(
            hidden.to_string(),
            "pid 4242 (no application_name, user `app`)"
        );
    }
}
