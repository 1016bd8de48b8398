//! How many connections a clone opens, decided once: the copy workers
//! (`jobs`), the index-build workers (`index_jobs`) and the clone's own two
//! sessions on the staging server (the maintenance connection that creates
//! and swaps databases, and the one that applies the schema), checked against
//! what the server allows before anything is written.
//!
//! Pure: the server's limits come in as [`ServerLimits`], read by the plan.

/// Most copy workers a default picks, however many cores the machine has:
/// past this the servers, not flightpath, are the bottleneck, and a 64-core
/// CI runner would otherwise open more connections than PostgreSQL's
/// default `max_connections` of 100.
pub const MAX_DEFAULT_JOBS: usize = 8;

/// The clone's own sessions on the staging server besides its workers: the
/// maintenance connection and the one on the new database that applies the
/// schema (the in-place strategy uses one connection in all).
pub const OWN_SESSIONS: usize = 2;

/// The run's own connection to the staging server, besides the clone's:
/// the advisory lock that keeps a second run off the database.
pub const RUN_LOCK: usize = 1;

/// The worker counts of one clone, each with where it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Workers {
    /// Copy workers: each holds one source and one staging connection.
    pub jobs: usize,
    pub jobs_default: bool,
    /// Index-build workers (also build foreign keys after the copy): one
    /// staging connection each.
    pub index_jobs: usize,
    pub index_jobs_default: bool,
}

impl Workers {
    /// `jobs` and `index_jobs` as written (`None` when absent), with the
    /// defaults: `jobs` is the number of cores, at most
    /// [`MAX_DEFAULT_JOBS`]; `index_jobs` is `jobs`.
    pub fn resolve(jobs: Option<usize>, index_jobs: Option<usize>, cores: usize) -> Workers {
        // Validation refuses 0; a pool without workers would never finish.
        let jobs_value = jobs
            .unwrap_or_else(|| cores.clamp(1, MAX_DEFAULT_JOBS))
            .max(1);
        Workers {
            jobs: jobs_value,
            jobs_default: jobs.is_none(),
            index_jobs: index_jobs.unwrap_or(jobs_value).max(1),
            index_jobs_default: index_jobs.is_none(),
        }
    }

    /// The most connections the clone holds on the staging server at once.
    pub fn staging_connections(&self) -> usize {
        self.jobs + self.index_jobs + OWN_SESSIONS
    }

    /// `jobs 2, index_jobs 2 (defaults: 2 cores)`, for the plan.
    pub fn describe(&self, cores: usize) -> String {
        let mut text = format!("jobs {}, index_jobs {}", self.jobs, self.index_jobs);
        match (self.jobs_default, self.index_jobs_default) {
            (true, true) => text.push_str(&format!(" (defaults: {})", cores_phrase(cores))),
            (true, false) => text.push_str(&format!(" (jobs by default: {})", cores_phrase(cores))),
            (false, true) => text.push_str(" (index_jobs by default: as many as jobs)"),
            (false, false) => {}
        }
        text
    }
}

fn cores_phrase(cores: usize) -> String {
    match cores {
        1 => "1 core".to_string(),
        n if n > MAX_DEFAULT_JOBS => format!("{n} cores, at most {MAX_DEFAULT_JOBS}"),
        n => format!("{n} cores"),
    }
}

/// What the staging server allows, as its settings say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    pub max_connections: usize,
    /// `superuser_reserved_connections` plus `reserved_connections`
    /// (PostgreSQL 16+): slots an ordinary role cannot take.
    pub reserved: usize,
    /// Whether the clone's role may use the reserved slots (a superuser).
    pub superuser: bool,
    /// Sessions open on the server now, in every database (from
    /// `pg_stat_database`, which every role may read in full).
    pub in_use: usize,
}

impl ServerLimits {
    /// Connections the clone's role may open when nobody else is connected.
    pub fn usable(&self) -> usize {
        match self.superuser {
            true => self.max_connections,
            false => self.max_connections.saturating_sub(self.reserved),
        }
    }
}

/// How a clone fits on the staging server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fit {
    Fits,
    /// Fits the server, but not beside the sessions open now: the run may
    /// fail for want of a connection if they stay.
    Tight {
        free: usize,
    },
    /// More than the server allows, whoever else is connected.
    TooMany,
}

/// Whether a clone of `workers` fits on the staging server, beside the
/// run's lock connection.
pub fn fit(workers: &Workers, limits: &ServerLimits) -> Fit {
    let needed = workers.staging_connections() + RUN_LOCK;
    let usable = limits.usable();
    if needed > usable {
        return Fit::TooMany;
    }
    let free = usable.saturating_sub(limits.in_use);
    match needed > free {
        true => Fit::Tight { free },
        false => Fit::Fits,
    }
}

/// `max_connections 100 − 3 reserved`, for the plan and the refusal.
pub fn limits_phrase(limits: &ServerLimits) -> String {
    match (limits.superuser, limits.reserved) {
        (true, _) | (false, 0) => format!("max_connections {}", limits.max_connections),
        (false, reserved) => format!(
            "max_connections {} − {reserved} reserved",
            limits.max_connections
        ),
    }
}

/// `at most 6 (jobs 2 + index_jobs 2 + 2 of its own); the server allows
/// 100 (max_connections 100), 7 in use now`, for the plan.
pub fn connections_phrase(workers: &Workers, limits: &ServerLimits) -> String {
    format!(
        "at most {} (jobs {} + index_jobs {} + {OWN_SESSIONS} of its own); the server allows {} ({}), {} in use now",
        workers.staging_connections(),
        workers.jobs,
        workers.index_jobs,
        limits.usable(),
        limits_phrase(limits),
        limits.in_use,
    )
}

/// The refusal of a clone that needs more connections than the staging
/// server of `target` allows: the numbers, and what to lower.
pub fn too_many(target: &str, workers: &Workers, limits: &ServerLimits) -> String {
    let usable = limits.usable();
    let fits = largest_fitting_jobs(usable);
    let fix = match fits {
        0 => format!("raise max_connections on the server (it allows {usable})"),
        n => format!(
            "set `jobs` and `index_jobs` to {n} or less (both at {n}: {} connections with the lock), or raise max_connections on the server",
            2 * n + OWN_SESSIONS + RUN_LOCK
        ),
    };
    format!(
        "target `{target}`: this clone opens up to {} connections to the staging server \
         (jobs {} + index_jobs {} + {OWN_SESSIONS} of its own, and the run's lock), and the server allows {usable} \
         ({}); {fix}",
        workers.staging_connections() + RUN_LOCK,
        workers.jobs,
        workers.index_jobs,
        limits_phrase(limits),
    )
}

/// The plan's warning when the clone fits the server but not beside the
/// sessions open now; `None` when it fits (a clone that cannot fit at all is
/// refused with [`too_many`] instead).
pub fn tight_warning(target: &str, workers: &Workers, limits: &ServerLimits) -> Option<String> {
    let Fit::Tight { free } = fit(workers, limits) else {
        return None;
    };
    Some(format!(
        "the staging server of `{target}` has {free} connection(s) free now and this clone, with the run's lock, needs up to {}: it fails for want of one unless other sessions close",
        workers.staging_connections() + RUN_LOCK,
    ))
}

/// What the server's settings allow the current role, and how many client
/// sessions are open now (read by the plan).
pub const LIMITS_SQL: &str = "SELECT current_setting('max_connections')::int, \
     current_setting('superuser_reserved_connections')::int \
       + coalesce(current_setting('reserved_connections', true)::int, 0), \
     (SELECT rolsuper FROM pg_roles WHERE rolname = current_user), \
     (SELECT coalesce(sum(numbackends), 0)::int FROM pg_stat_database)";

/// The largest `jobs` (with `index_jobs` equal to it) that fits in `usable`.
pub fn largest_fitting_jobs(usable: usize) -> usize {
    usable.saturating_sub(OWN_SESSIONS + RUN_LOCK) / 2
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: usize, reserved: usize, in_use: usize) -> ServerLimits {
        ServerLimits {
            max_connections: max,
            reserved,
            superuser: false,
            in_use,
        }
    }

    #[test]
    fn defaults_follow_the_cores_up_to_eight() {
        for (cores, want) in [(1, 1), (2, 2), (8, 8), (64, 8)] {
            let w = Workers::resolve(None, None, cores);
            assert_eq!((w.jobs, w.index_jobs), (want, want), "{cores} cores");
            assert!(w.jobs_default && w.index_jobs_default);
        }
    }

    #[test]
    fn index_jobs_follows_an_explicit_jobs() {
        let w = Workers::resolve(Some(3), None, 64);
        assert_eq!((w.jobs, w.index_jobs), (3, 3));
        assert_eq!(w.staging_connections(), 8);
        let w = Workers::resolve(Some(3), Some(1), 64);
        assert_eq!(w.staging_connections(), 6);
    }

    #[test]
    fn a_64_core_runner_stays_under_the_default_max_connections() {
        let w = Workers::resolve(None, None, 64);
        assert_eq!(w.staging_connections(), 18);
        assert_eq!(fit(&w, &limits(100, 3, 10)), Fit::Fits);
        let none = Workers::resolve(Some(0), Some(0), 2);
        assert_eq!((none.jobs, none.index_jobs), (1, 1));
    }

    #[test]
    fn the_fit_counts_reserved_slots_and_sessions_in_use() {
        // 10 + 10 + 2, and the run's lock: 23.
        let w = Workers::resolve(Some(10), Some(10), 2);
        assert_eq!(fit(&w, &limits(22, 0, 0)), Fit::TooMany);
        assert_eq!(fit(&w, &limits(26, 3, 0)), Fit::Fits);
        assert_eq!(fit(&w, &limits(25, 3, 0)), Fit::TooMany);
        assert_eq!(fit(&w, &limits(26, 3, 2)), Fit::Tight { free: 21 });
        assert_eq!(
            tight_warning("staging", &w, &limits(26, 3, 2)).as_deref(),
            Some(
                "the staging server of `staging` has 21 connection(s) free now and this clone, \
                 with the run's lock, needs up to 23: it fails for want of one unless other \
                 sessions close"
            )
        );
        assert_eq!(tight_warning("staging", &w, &limits(26, 3, 0)), None);
        let superuser = ServerLimits {
            superuser: true,
            ..limits(23, 3, 0)
        };
        assert_eq!(fit(&w, &superuser), Fit::Fits);
    }

    #[test]
    fn the_plan_says_where_each_number_came_from() {
        assert_eq!(
            Workers::resolve(None, None, 2).describe(2),
            "jobs 2, index_jobs 2 (defaults: 2 cores)"
        );
        assert_eq!(
            Workers::resolve(None, None, 64).describe(64),
            "jobs 8, index_jobs 8 (defaults: 64 cores, at most 8)"
        );
        assert_eq!(
            Workers::resolve(Some(4), None, 2).describe(2),
            "jobs 4, index_jobs 4 (index_jobs by default: as many as jobs)"
        );
        assert_eq!(
            Workers::resolve(Some(4), Some(1), 2).describe(2),
            "jobs 4, index_jobs 1"
        );
        assert_eq!(
            limits_phrase(&limits(100, 3, 0)),
            "max_connections 100 − 3 reserved"
        );
        assert_eq!(largest_fitting_jobs(97), 47);
        assert_eq!(largest_fitting_jobs(100), 48);
    }

    #[test]
    fn the_refusal_gives_the_numbers_and_the_fix() {
        let w = Workers::resolve(Some(60), Some(60), 2);
        assert_eq!(
            too_many("staging", &w, &limits(100, 3, 5)),
            "target `staging`: this clone opens up to 123 connections to the staging server \
             (jobs 60 + index_jobs 60 + 2 of its own, and the run's lock), and the server allows 97 \
             (max_connections 100 − 3 reserved); set `jobs` and `index_jobs` to 47 or less \
             (both at 47: 97 connections with the lock), or raise max_connections on the server"
        );
        assert!(
            too_many("s", &w, &limits(3, 3, 0))
                .ends_with("raise max_connections on the server (it allows 0)")
        );
    }
}
