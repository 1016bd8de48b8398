//! What runs next in the swap strategy's load: one queue of tasks — copy a
//! table or one block range of it, run one of its post-data builds, add a
//! foreign key whose two tables are in — shared by every worker. Decides
//! order only; never connects anywhere.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::Instant;

use tokio::sync::Notify;

use super::spec::TableRule;
use super::table::{BlockRange, ranges_for};
use crate::pg::catalog::Table;
use crate::pg::schema::{Entry, EntryKind};

/// One unit of work for a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Task {
    /// Copy table `table` (index into the table list), optionally one range.
    Copy {
        table: usize,
        range: Option<BlockRange>,
    },
    /// Run post-data entry `entry`, one of `table`'s builds when given.
    Build { entry: usize, table: Option<usize> },
}

/// A foreign key that can be added while other tables are still copying:
/// both of its tables are plain tables of this clone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ForeignKey {
    pub entry: usize,
    pub from: usize,
    pub to: usize,
}

/// The shared queue. Index builds and foreign keys go to the front as soon
/// as they can run (finishing tables first keeps the tail short); copies
/// wait in [`copy_order`].
pub(crate) struct Queue {
    /// Held only to take or finish a task, never across an await.
    state: Mutex<QueueState>,
    /// Wakes workers waiting for a task when one finishes (it may have
    /// queued more, or ended the work).
    notify: Notify,
}

pub(crate) struct QueueState {
    tasks: VecDeque<Task>,
    /// Tasks taken and not yet done (they may enqueue more).
    running: usize,
    /// Per table: ranges not yet copied.
    ranges_left: Vec<usize>,
    /// Per table: the post-data entries to run once its data is in.
    builds: Vec<Vec<usize>>,
    /// Per table: builds queued or running.
    builds_left: Vec<usize>,
    /// Per table: data in and every build done.
    built: Vec<bool>,
    /// Foreign keys waiting for their tables.
    foreign_keys: Vec<ForeignKey>,
    copied: Vec<Option<TableProgress>>,
}

/// Rows, bytes and wall time of one table's copy so far.
#[derive(Debug, Clone)]
pub(crate) struct TableProgress {
    pub rows: u64,
    pub bytes: u64,
    pub started: Instant,
    pub finished: Instant,
}

/// The post-data entries the queue does not run, in pg_dump's order.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Leftover {
    /// Run after every table is in (rules, policies, views' data…).
    pub later: Vec<usize>,
    /// Foreign keys touching something that is not a plain table of this
    /// clone: added last, in parallel.
    pub foreign_keys: Vec<usize>,
    /// Comments, which may be on a foreign key added at the very end.
    pub comments: Vec<usize>,
}

impl QueueState {
    /// A table's data and builds are done: queue the foreign keys it unblocks.
    fn mark_built(&mut self, table: usize) {
        self.built[table] = true;
        let (ready, waiting): (Vec<ForeignKey>, Vec<ForeignKey>) = self
            .foreign_keys
            .iter()
            .partition(|fk| self.built[fk.from] && self.built[fk.to]);
        self.foreign_keys = waiting;
        // Ahead of further copies: finishing tables first keeps the tail short.
        for fk in ready {
            self.tasks.push_front(Task::Build {
                entry: fk.entry,
                table: None,
            });
        }
    }

    fn copy_done(&mut self, table: usize, rows: u64, bytes: u64, started: Instant) {
        let now = Instant::now();
        let entry = self.copied[table].get_or_insert(TableProgress {
            rows: 0,
            bytes: 0,
            started,
            finished: now,
        });
        entry.rows += rows;
        entry.bytes += bytes;
        entry.started = entry.started.min(started);
        entry.finished = now;
        self.ranges_left[table] -= 1;
        if self.ranges_left[table] > 0 {
            return;
        }
        let builds = std::mem::take(&mut self.builds[table]);
        self.builds_left[table] = builds.len();
        if builds.is_empty() {
            self.mark_built(table);
        }
        for entry in builds.into_iter().rev() {
            self.tasks.push_front(Task::Build {
                entry,
                table: Some(table),
            });
        }
    }

    fn build_done(&mut self, table: usize) {
        self.builds_left[table] -= 1;
        if self.builds_left[table] == 0 {
            self.mark_built(table);
        }
    }
}

impl Queue {
    /// The queue of a load: every table's copies in [`copy_order`] (a large
    /// table as its ranges), each table's index, constraint and trigger
    /// builds held until its data is in, foreign keys between two tables
    /// held until both are built; and what is left for after the queue.
    pub(crate) fn new(
        tables: &[Table],
        entries: &[Entry],
        rules: &BTreeMap<String, TableRule>,
        split_bytes: u64,
        source_major: u32,
    ) -> (Queue, Leftover) {
        // Which post-data entries follow which table's data.
        let index: BTreeMap<&str, usize> = tables
            .iter()
            .enumerate()
            .map(|(i, t)| (t.qualified.as_str(), i))
            .collect();
        let mut builds: Vec<Vec<usize>> = vec![Vec::new(); tables.len()];
        let mut early_foreign_keys: Vec<ForeignKey> = Vec::new();
        let mut leftover = Leftover::default();
        for (i, entry) in entries.iter().enumerate() {
            let table = entry.table.as_deref().and_then(|t| index.get(t)).copied();
            let references = entry
                .references
                .as_deref()
                .and_then(|t| index.get(t))
                .copied();
            match (&entry.kind, table, references) {
                (EntryKind::Index | EntryKind::Constraint | EntryKind::Trigger, Some(t), _) => {
                    builds[t].push(i)
                }
                (EntryKind::ForeignKey, Some(from), Some(to)) => {
                    early_foreign_keys.push(ForeignKey { entry: i, from, to })
                }
                (EntryKind::ForeignKey, _, _) => leftover.foreign_keys.push(i),
                // A comment may be on a foreign key added at the very end.
                (EntryKind::Other(kind), _, _) if kind == "COMMENT" => leftover.comments.push(i),
                _ => leftover.later.push(i),
            }
        }

        let mut tasks = VecDeque::new();
        let mut ranges_left = vec![0; tables.len()];
        for i in copy_order(tables, &builds, &early_foreign_keys) {
            let table = &tables[i];
            let truncate = rules.get(&table.qualified).is_some_and(|r| r.truncate);
            let ranges = if truncate {
                Vec::new()
            } else {
                ranges_for(table, split_bytes, source_major)
            };
            if ranges.is_empty() {
                ranges_left[i] = 1;
                tasks.push_back(Task::Copy {
                    table: i,
                    range: None,
                });
            } else {
                ranges_left[i] = ranges.len();
                for range in ranges {
                    tasks.push_back(Task::Copy {
                        table: i,
                        range: Some(range),
                    });
                }
            }
        }
        let queue = Queue {
            state: Mutex::new(QueueState {
                tasks,
                running: 0,
                ranges_left,
                builds,
                builds_left: vec![0; tables.len()],
                built: vec![false; tables.len()],
                foreign_keys: early_foreign_keys,
                copied: vec![None; tables.len()],
            }),
            notify: Notify::new(),
        };
        (queue, leftover)
    }

    /// The next task, waiting while others may still produce one; `None`
    /// when all work is done.
    /// `builds_only` workers (no source connection) take index builds and
    /// foreign keys, never copies.
    pub(crate) async fn next(&self, builds_only: bool) -> Option<Task> {
        loop {
            // Registered before looking, so a `done` between the look and
            // the await is not missed.
            let notified = self.notify.notified();
            {
                let mut state = self.state.lock().expect("queue lock");
                let takes = match state.tasks.front() {
                    Some(Task::Copy { .. }) => !builds_only,
                    Some(Task::Build { .. }) => true,
                    None => false,
                };
                if takes {
                    state.running += 1;
                    return state.tasks.pop_front();
                }
                if state.running == 0 && state.tasks.is_empty() {
                    return None;
                }
            }
            notified.await;
        }
    }

    /// Marks a task done (successfully when `copied` or `built` says so) and
    /// queues what it unblocks.
    pub(crate) fn done(&self, task: &Task, copied: Option<(u64, u64, Instant)>, ok: bool) {
        let mut state = self.state.lock().expect("queue lock");
        state.running -= 1;
        match (task, copied) {
            (Task::Copy { table, .. }, Some((rows, bytes, started))) if ok => {
                state.copy_done(*table, rows, bytes, started)
            }
            (
                Task::Build {
                    table: Some(table), ..
                },
                _,
            ) if ok => state.build_done(*table),
            _ => {}
        }
        drop(state);
        self.notify.notify_waiters();
    }

    /// Foreign keys that never became ready (their tables failed or are not
    /// plain tables of this clone).
    pub(crate) fn leftover_foreign_keys(&self) -> Vec<usize> {
        let state = self.state.lock().expect("queue lock");
        state.foreign_keys.iter().map(|fk| fk.entry).collect()
    }

    /// Per table: what its copy moved, when it was copied.
    pub(crate) fn copied(&self) -> Vec<Option<TableProgress>> {
        self.state.lock().expect("queue lock").copied.clone()
    }
}

/// The order tables are copied in: heaviest first, where a table's weight is
/// its own size plus the size of every table whose foreign keys wait for it
/// (so a small `users` table that big tables reference is not left to the
/// end, holding their foreign keys back).
pub(crate) fn copy_order(
    tables: &[Table],
    builds: &[Vec<usize>],
    foreign_keys: &[ForeignKey],
) -> Vec<usize> {
    // A table's own chain: copy, then its index builds, then validating its
    // foreign keys, each roughly proportional to its size.
    let mut weight: Vec<i64> = tables
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let fks = foreign_keys.iter().filter(|fk| fk.from == i).count();
            t.bytes.max(0) * (2 + builds[i].len() + fks) as i64
        })
        .collect();
    for fk in foreign_keys {
        if fk.from != fk.to {
            weight[fk.to] += tables[fk.from].bytes.max(0);
        }
    }
    let mut order: Vec<usize> = (0..tables.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(weight[i]));
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::catalog::qualified;

    const MB: i64 = 1024 * 1024;

    fn table(name: &str, bytes: i64) -> Table {
        Table {
            oid: 1,
            schema: "public".into(),
            name: name.into(),
            qualified: qualified("public", name),
            columns: Vec::new(),
            bytes,
            pages: bytes / 8192,
            rows_estimate: 0,
            primary_key: Vec::new(),
            binary_ok: true,
            partition_of: Vec::new(),
        }
    }

    fn entry(kind: EntryKind, name: &str, table: Option<&str>, references: Option<&str>) -> Entry {
        Entry {
            kind,
            schema: "public".into(),
            name: name.into(),
            table: table.map(|t| qualified("public", t)),
            references: references.map(|t| qualified("public", t)),
            sql: format!("-- {name}"),
        }
    }

    #[test]
    fn copies_go_largest_first() {
        let tables = [
            table("small", MB),
            table("big", 100 * MB),
            table("mid", 10 * MB),
        ];
        let none = vec![Vec::new(); 3];
        assert_eq!(copy_order(&tables, &none, &[]), [1, 2, 0]);
    }

    #[test]
    fn a_table_with_more_builds_weighs_more() {
        // Same size: the one with three indexes to build after its copy goes first.
        let tables = [table("plain", 10 * MB), table("indexed", 10 * MB)];
        let builds = vec![Vec::new(), vec![0, 1, 2]];
        assert_eq!(copy_order(&tables, &builds, &[]), [1, 0]);
    }

    #[test]
    fn a_small_table_that_big_ones_reference_is_not_left_to_the_end() {
        // `orders` (100 MB) references `users` (1 MB): its foreign key waits
        // for `users`, so `users` goes ahead of the 20 MB `logs`.
        let tables = [
            table("orders", 100 * MB),
            table("users", MB),
            table("logs", 20 * MB),
        ];
        let none = vec![Vec::new(); 3];
        let fks = [ForeignKey {
            entry: 0,
            from: 0,
            to: 1,
        }];
        assert_eq!(copy_order(&tables, &none, &fks), [0, 1, 2]);
        // Without the foreign key, `users` is last.
        assert_eq!(copy_order(&tables, &none, &[]), [0, 2, 1]);
    }

    #[test]
    fn a_self_reference_does_not_count_twice() {
        let tables = [table("tree", 10 * MB), table("flat", 12 * MB)];
        let none = vec![Vec::new(); 2];
        let fks = [ForeignKey {
            entry: 0,
            from: 0,
            to: 0,
        }];
        // tree: 10 × (2 + 1 fk) = 30 > flat: 12 × 2 = 24.
        assert_eq!(copy_order(&tables, &none, &fks), [0, 1]);
    }

    fn queued(queue: &Queue) -> Vec<Task> {
        queue.state.lock().unwrap().tasks.iter().cloned().collect()
    }

    #[test]
    fn post_data_is_sorted_into_builds_foreign_keys_and_what_comes_later() {
        let tables = [table("users", MB), table("orders", 2 * MB)];
        let entries = [
            entry(EntryKind::Index, "users_email", Some("users"), None),
            entry(EntryKind::Constraint, "orders_pkey", Some("orders"), None),
            entry(
                EntryKind::ForeignKey,
                "orders_user",
                Some("orders"),
                Some("users"),
            ),
            entry(
                EntryKind::ForeignKey,
                "orders_gone",
                Some("orders"),
                Some("gone"),
            ),
            entry(EntryKind::Other("COMMENT".into()), "on fk", None, None),
            entry(EntryKind::Other("POLICY".into()), "p", Some("users"), None),
        ];
        let (queue, leftover) = Queue::new(&tables, &entries, &BTreeMap::new(), 0, 16);
        assert_eq!(
            leftover,
            Leftover {
                later: vec![5],
                foreign_keys: vec![3],
                comments: vec![4],
            }
        );
        assert_eq!(
            queued(&queue),
            [
                Task::Copy {
                    table: 1,
                    range: None
                },
                Task::Copy {
                    table: 0,
                    range: None
                },
            ]
        );
        assert_eq!(queue.leftover_foreign_keys(), [2]);
    }

    #[test]
    fn a_large_table_is_queued_as_its_ranges_and_an_emptied_one_whole() {
        let tables = [table("big", 40 * MB), table("sessions", 80 * MB)];
        let rules = BTreeMap::from([(
            qualified("public", "sessions"),
            TableRule {
                truncate: true,
                ..Default::default()
            },
        )]);
        let (queue, _) = Queue::new(&tables, &[], &rules, 16 * MB as u64, 16);
        let tasks = queued(&queue);
        assert_eq!(
            tasks[0],
            Task::Copy {
                table: 1,
                range: None
            }
        );
        let ranges: Vec<Option<BlockRange>> = tasks[1..]
            .iter()
            .map(|t| match t {
                Task::Copy { table: 0, range } => *range,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(
            ranges,
            ranges_for(&tables[0], 16 * MB as u64, 16)
                .into_iter()
                .map(Some)
                .collect::<Vec<_>>()
        );
        assert_eq!(ranges.len(), 3);
    }

    #[tokio::test]
    async fn builds_jump_the_queue_and_foreign_keys_wait_for_both_tables() {
        let tables = [table("orders", 2 * MB), table("users", MB)];
        let entries = [
            entry(EntryKind::Index, "orders_idx", Some("orders"), None),
            entry(
                EntryKind::ForeignKey,
                "orders_user",
                Some("orders"),
                Some("users"),
            ),
        ];
        let (queue, _) = Queue::new(&tables, &entries, &BTreeMap::new(), 0, 16);
        let now = Instant::now();

        let orders = queue.next(false).await.unwrap();
        assert_eq!(
            orders,
            Task::Copy {
                table: 0,
                range: None
            }
        );
        queue.done(&orders, Some((10, 100, now)), true);
        // The index of `orders` is ahead of the copy of `users`.
        let build = queue.next(true).await.unwrap();
        assert_eq!(
            build,
            Task::Build {
                entry: 0,
                table: Some(0)
            }
        );
        let users = queue.next(false).await.unwrap();
        assert_eq!(
            users,
            Task::Copy {
                table: 1,
                range: None
            }
        );
        queue.done(&build, None, true);
        // `orders` is built, `users` is not: the foreign key still waits.
        assert!(queued(&queue).is_empty());
        queue.done(&users, Some((5, 50, now)), true);
        assert_eq!(
            queue.next(true).await.unwrap(),
            Task::Build {
                entry: 1,
                table: None
            }
        );
        assert!(queue.leftover_foreign_keys().is_empty());
        let copied = queue.copied();
        assert_eq!(
            copied[0].as_ref().map(|p| (p.rows, p.bytes)),
            Some((10, 100))
        );
        assert_eq!(copied[1].as_ref().map(|p| (p.rows, p.bytes)), Some((5, 50)));
    }

    #[tokio::test]
    async fn the_queue_ends_when_nothing_runs_and_nothing_waits() {
        let tables = [table("only", MB)];
        let (queue, _) = Queue::new(&tables, &[], &BTreeMap::new(), 0, 16);
        let task = queue.next(false).await.unwrap();
        // A failed copy unblocks nothing, and the queue still ends.
        queue.done(&task, None, false);
        assert_eq!(queue.next(false).await, None);
        assert!(queue.copied()[0].is_none());
    }
}
