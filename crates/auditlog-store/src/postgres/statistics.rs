//! Planner statistics when autovacuum falls behind: the sealer analyzes the
//! store's tables that have changed a lot since they were last analyzed.
//!
//! PostgreSQL plans from statistics that autovacuum gathers, and after a bulk
//! load its workers may spend many minutes vacuuming the new rows (throttled,
//! one table each) before they analyze anything. Meanwhile a new partition,
//! `audit_leaves` or `audit_event_ids` has no statistics, and the planner
//! guesses: measured at 10 000 000 events, the join of leaves to their rows
//! behind a proof ran as a parallel hash join over every partition, 1 809 ms,
//! and 1.5 ms once analyzed; the sealer's page query sorted the whole backlog.
//!
//! So at its first sealing after it opens (a restored or bulk-loaded database
//! may have no statistics at all, and then nothing new to seal for a while),
//! and after that every [`CHECK_EVERY_LEAVES`] leaves it seals (and at most every
//! [`CHECK_EVERY`]), the store looks at `pg_stat_user_tables` and runs
//! `ANALYZE` on each of its tables whose changes since the last analysis are
//! both at least [`STALE_ROWS`] and at least [`STALE_SHARE`] of its rows: twice
//! what autovacuum itself waits for (a tenth), so a table that autovacuum keeps
//! up with is left to it. It runs in a task of its own, one at a time, so
//! sealing never waits for it; a failure is logged and the next check tries
//! again. The partitioned `audit_events` itself is not analyzed: that would
//! sample every partition again, and queries are planned per partition.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use sqlx::postgres::PgPool;
use sqlx::{AssertSqlSafe, Executor};

use crate::StoreError;
use crate::sql::store_error;

/// Sealed leaves between two checks.
pub(crate) const CHECK_EVERY_LEAVES: u64 = 20_000;

/// The least time between two checks.
pub(crate) const CHECK_EVERY: Duration = Duration::from_secs(5);

/// Changes since the last analysis below which a table is left to autovacuum.
pub(crate) const STALE_ROWS: i64 = 10_000;

/// The share of a table's rows that must have changed since its last analysis.
pub(crate) const STALE_SHARE: f64 = 0.2;

/// The store's tables that grow with the log, as `pg_stat_user_tables` names
/// them: the partitions of `audit_events` (`audit_events_p…`, the DEFAULT one),
/// the ids claimed and the tree's leaves.
const STALE_TABLES: &str = "SELECT quote_ident(relname) FROM pg_stat_user_tables
    WHERE schemaname = current_schema()
      AND (relname LIKE 'audit\\_events\\_%' OR relname IN ('audit_event_ids', 'audit_leaves'))
      AND n_mod_since_analyze >= $1
      AND n_mod_since_analyze >= $2 * GREATEST(n_live_tup, 0)
    ORDER BY relname";

/// When the store last checked, how much it has sealed since, and whether a
/// check is running now.
#[derive(Debug, Default)]
pub(crate) struct Statistics(Mutex<Checks>);

#[derive(Debug, Default)]
struct Checks {
    leaves: u64,
    last: Option<Instant>,
    running: bool,
}

impl Statistics {
    /// Counts `leaves` just sealed (none, at times); true when a check is due
    /// now, and then the caller must run it and call [`Statistics::done`] after.
    pub(crate) fn sealed(&self, leaves: u64) -> bool {
        let Ok(mut checks) = self.0.lock() else {
            return false;
        };
        checks.leaves += leaves;
        let due = match checks.last {
            None => true,
            Some(at) => at.elapsed() >= CHECK_EVERY && checks.leaves >= CHECK_EVERY_LEAVES,
        };
        if checks.running || !due {
            return false;
        }
        *checks = Checks {
            leaves: 0,
            last: Some(Instant::now()),
            running: true,
        };
        true
    }

    /// Ends the check [`Statistics::sealed`] asked for.
    pub(crate) fn done(&self) {
        if let Ok(mut checks) = self.0.lock() {
            checks.running = false;
        }
    }
}

/// Analyzes the store's tables whose statistics are stale (see the module doc)
/// and returns their names.
pub(crate) async fn analyze_stale(pool: &PgPool) -> Result<Vec<String>, StoreError> {
    let stale: Vec<String> = sqlx::query_scalar(STALE_TABLES)
        .bind(STALE_ROWS)
        .bind(STALE_SHARE)
        .fetch_all(pool)
        .await
        .map_err(store_error)?;
    for table in &stale {
        // The name is the catalog's own, quoted by the server.
        pool.execute(AssertSqlSafe(format!("ANALYZE {table}")))
            .await
            .map_err(store_error)?;
    }
    Ok(stale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_check_is_due_at_the_first_sealing_then_after_enough_leaves_and_one_at_a_time() {
        let statistics = Statistics::default();
        assert!(
            statistics.sealed(0),
            "the first sealing after opening checks"
        );
        statistics.done();
        // The next is due after CHECK_EVERY; pretend it has passed.
        if let (Ok(mut checks), Some(earlier)) =
            (statistics.0.lock(), Instant::now().checked_sub(CHECK_EVERY))
        {
            checks.last = Some(earlier);
        }
        assert!(!statistics.sealed(CHECK_EVERY_LEAVES - 1));
        assert!(statistics.sealed(1), "the leaves add up");
        assert!(
            !statistics.sealed(CHECK_EVERY_LEAVES),
            "not again so soon, nor while one runs"
        );
        statistics.done();
        assert!(
            !statistics.sealed(CHECK_EVERY_LEAVES),
            "not before CHECK_EVERY"
        );
    }
}
