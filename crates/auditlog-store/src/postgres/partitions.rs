//! Time partitions of PostgreSQL's `audit_events`: one partition per calendar
//! month (UTC) of the event's own `timestamp`, plus a DEFAULT partition.
//!
//! Why the event's `timestamp` and not `received_at`: every query shape filters
//! and orders by `timestamp` (first page by actor or target newest first, a time
//! range), so only that key lets PostgreSQL prune partitions for a time range and
//! read each partition's `(…, timestamp DESC, id DESC)` index in order.
//!
//! Which months get a partition: the current month and [`MONTHS_AHEAD`] after it
//! are created ahead (when the store opens, and whenever a batch arrives in a new
//! month); any month within [`MONTHS_BACK`] before the current one gets its
//! partition on demand, before the first batch holding an event of that month is
//! inserted. Everything else (a producer's clock years off, ancient back-fills)
//! goes to the DEFAULT partition, so no insert ever fails for want of a partition,
//! and a wrong timestamp cannot make the store create partitions without bound.
//!
//! A partition is created as a plain table and then attached, which takes only a
//! SHARE UPDATE EXCLUSIVE lock on `audit_events` (inserts and queries go on) and
//! an ACCESS EXCLUSIVE lock on the DEFAULT partition, under a short
//! `lock_timeout`. Rows of that month already in the DEFAULT partition (an event
//! dated beyond the months created ahead, stored before its month came into the
//! window) are moved into the new partition in the same transaction, with their
//! `seq`, so the Merkle tree, which is built from rows by `seq`, is unchanged.
//! When creating fails (the lock not granted in time), the batch is inserted all
//! the same, into the DEFAULT partition, and the next try moves those rows.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Row};

use crate::StoreError;
use crate::sql::store_error;

/// Months after the current one whose partitions exist ahead of time, so that
/// the insert path almost never has to create one.
pub(crate) const MONTHS_AHEAD: i64 = 3;

/// How many months before the current one still get a partition of their own on
/// demand; events older than that go to the DEFAULT partition.
pub(crate) const MONTHS_BACK: i64 = 60;

/// The DEFAULT partition: events of months outside the window.
pub(crate) const DEFAULT_PARTITION: &str = "audit_events_default";

/// Advisory lock key (transaction-scoped) under which partitions are created, so
/// that two auditors creating the same month take turns.
const PARTITION_LOCK: i64 = 0x6175_6469_746c_0005;

/// How long creating a partition waits for its locks before giving up (and
/// leaving the batch to the DEFAULT partition): a queue of readers behind a
/// waiting ACCESS EXCLUSIVE lock must stay short.
const LOCK_TIMEOUT: &str = "SET LOCAL lock_timeout = '2s'";

/// After a failed creation, how long the insert path leaves it alone before
/// trying again (milliseconds), so that a lasting cause (no right to create
/// tables) costs one warning a minute, not one per batch.
const RETRY_AFTER_MS: i64 = 60_000;

const MS_PER_DAY: i64 = 86_400_000;

/// A calendar month in UTC, counted as `year * 12 + (month - 1)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Month(i64);

impl Month {
    /// The month a timestamp (milliseconds since the Unix epoch) falls in.
    pub(crate) fn of_ms(ms: i64) -> Month {
        let (year, month) = civil_from_days(ms.div_euclid(MS_PER_DAY));
        Month(year * 12 + month - 1)
    }

    fn year(self) -> i64 {
        self.0.div_euclid(12)
    }

    fn month(self) -> i64 {
        self.0.rem_euclid(12) + 1
    }

    /// The month `n` months later (earlier for a negative `n`).
    pub(crate) fn plus(self, n: i64) -> Month {
        Month(self.0 + n)
    }

    /// Its first millisecond: the partition's lower bound (inclusive).
    pub(crate) fn start_ms(self) -> i64 {
        days_from_civil(self.year(), self.month()) * MS_PER_DAY
    }

    /// Its partition's name, `audit_events_pYYYYMM`.
    pub(crate) fn table(self) -> String {
        format!("audit_events_p{:04}{:02}", self.year(), self.month())
    }

    /// The month a partition name made by [`Month::table`] stands for.
    fn from_table(name: &str) -> Option<Month> {
        let digits = name.strip_prefix("audit_events_p")?;
        if digits.len() != 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let year: i64 = digits[..4].parse().ok()?;
        let month: i64 = digits[4..].parse().ok()?;
        (1..=12)
            .contains(&month)
            .then_some(Month(year * 12 + month - 1))
    }
}

/// The first day of `month` (1–12) of `year`, in days since 1970-01-01
/// (H. Hinnant's `days_from_civil`, proleptic Gregorian).
fn days_from_civil(year: i64, month: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The year and month (1–12) of a day counted since 1970-01-01 (the inverse of
/// [`days_from_civil`]).
fn civil_from_days(days: i64) -> (i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month)
}

/// The months that get a partition of their own when `now_ms` is now: from
/// [`MONTHS_BACK`] before the current month to [`MONTHS_AHEAD`] after it.
pub(crate) fn window(now_ms: i64) -> (Month, Month) {
    let current = Month::of_ms(now_ms);
    (current.plus(-MONTHS_BACK), current.plus(MONTHS_AHEAD))
}

/// What this process knows of the partitions: the months known to have one, and
/// when the insert path may try to create one again after a failure.
#[derive(Debug, Default)]
pub(crate) struct Partitions {
    known: Mutex<BTreeSet<Month>>,
    retry_at: AtomicI64,
}

impl Partitions {
    /// The months that need a partition before events with these timestamps are
    /// inserted at `now_ms` (the current month and those ahead, and the months of
    /// the timestamps within the window) and that this process does not know to
    /// have one. Empty while a failed creation's back-off lasts.
    pub(crate) fn missing(&self, timestamps: impl Iterator<Item = i64>, now_ms: i64) -> Vec<Month> {
        if now_ms < self.retry_at.load(Ordering::Relaxed) {
            return Vec::new();
        }
        let (first, last) = window(now_ms);
        let mut wanted: BTreeSet<Month> = (Month::of_ms(now_ms).0..=last.0).map(Month).collect();
        // Events of a batch mostly share a month: skip the arithmetic for a
        // timestamp in the month just seen.
        let mut seen: Option<(i64, i64)> = None;
        for ms in timestamps {
            if seen.is_some_and(|(from, to)| (from..to).contains(&ms)) {
                continue;
            }
            let month = Month::of_ms(ms);
            if (first..=last).contains(&month) {
                seen = Some((month.start_ms(), month.plus(1).start_ms()));
                wanted.insert(month);
            }
        }
        let known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        wanted.retain(|month| !known.contains(month));
        wanted.into_iter().collect()
    }

    /// Notes a failed creation: the insert path leaves it for [`RETRY_AFTER_MS`].
    pub(crate) fn failed(&self, now_ms: i64) {
        self.retry_at
            .store(now_ms.saturating_add(RETRY_AFTER_MS), Ordering::Relaxed);
    }

    /// Creates the partitions of `months` that do not exist yet, inside the
    /// transaction `tx` (the caller commits), moving any of their rows out of the
    /// DEFAULT partition; then remembers every partition the table has.
    pub(crate) async fn create(
        &self,
        tx: &mut PgConnection,
        months: &[Month],
    ) -> Result<(), StoreError> {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(PARTITION_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        sqlx::raw_sql(LOCK_TIMEOUT)
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        let mut existing = existing(tx).await?;
        for month in months {
            if existing.contains(month) {
                continue;
            }
            let (name, from, to) = (month.table(), month.start_ms(), month.plus(1).start_ms());
            // Identifiers and bounds cannot be bound as parameters; every piece of
            // this text is made here from integers.
            let statements = format!(
                "CREATE TABLE {name} (LIKE audit_events);
                INSERT INTO {name} SELECT * FROM {DEFAULT_PARTITION}
                    WHERE timestamp >= {from} AND timestamp < {to};
                DELETE FROM {DEFAULT_PARTITION} WHERE timestamp >= {from} AND timestamp < {to};
                ALTER TABLE audit_events ATTACH PARTITION {name} FOR VALUES FROM ({from}) TO ({to})"
            );
            sqlx::raw_sql(AssertSqlSafe(statements))
                .execute(&mut *tx)
                .await
                .map_err(store_error)?;
            existing.insert(*month);
        }
        self.known
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(existing);
        Ok(())
    }
}

impl Partitions {
    /// Forgets that `month` has a partition (it was dropped), so that an event
    /// of that month arriving later gets one again.
    pub(crate) fn forget(&self, month: Month) {
        self.known
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&month);
    }
}

/// Rows read per statement while judging a whole partition.
const PARTITION_PAGE: i64 = 1_000;

/// The month partitions whose whole range is before `cutoff`, oldest first.
pub(crate) async fn ended_before(
    conn: &mut PgConnection,
    cutoff: i64,
) -> Result<Vec<Month>, StoreError> {
    Ok(existing(conn)
        .await?
        .into_iter()
        .filter(|month| month.plus(1).start_ms() <= cutoff)
        .collect())
}

/// Drops `month`'s partition in `tx` if every row of it is prunable under
/// `rule`, the holds and what the sinks have `delivered` (see
/// [`crate::AuditStore::prune_partitions`]), recording each of its
/// leaves as pruned first; answers how many events it held, or `None` (and
/// changes nothing the caller would commit) when one of them must stay. The
/// partition is locked against writers (`SHARE`) before it is read, so that no
/// row can arrive between the judgement and the drop; readers go on until
/// the drop.
pub(crate) async fn drop_if_prunable(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    sql: &crate::sql::GenericStore<'_, sqlx::Postgres>,
    dialect: &crate::sql::Dialect<sqlx::Postgres>,
    month: Month,
    rule: &crate::PruneRule,
    holds: &[crate::LegalHold],
    delivered: Option<i64>,
) -> Result<Option<u64>, StoreError> {
    use crate::retention::Verdict;
    let name = month.table();
    sqlx::raw_sql(LOCK_TIMEOUT)
        .execute(&mut **tx)
        .await
        .map_err(store_error)?;
    // Identifiers cannot be bound; the name is made here from integers.
    sqlx::raw_sql(AssertSqlSafe(format!("LOCK TABLE {name} IN SHARE MODE")))
        .execute(&mut **tx)
        .await
        .map_err(store_error)?;
    let unsealed: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM {name} e \
         WHERE NOT EXISTS (SELECT 1 FROM audit_leaves l WHERE l.seq = e.seq)"
    )))
    .fetch_one(&mut **tx)
    .await
    .map_err(store_error)?;
    if unsealed > 0 {
        return Ok(None);
    }
    let now = auditlog_event::now_ms();
    let (mut after, mut events) = (i64::MIN, 0_u64);
    loop {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {} FROM {name} e JOIN audit_leaves l ON l.seq = e.seq \
             WHERE e.seq > $1 ORDER BY e.seq LIMIT {PARTITION_PAGE}",
            crate::sql::candidate_columns(dialect)
        )))
        .bind(after)
        .fetch_all(&mut **tx)
        .await
        .map_err(store_error)?;
        let candidates = rows
            .iter()
            .map(|row| sql.prune_candidate(row))
            .collect::<Result<Vec<_>, _>>()?;
        let Some(last) = candidates.last() else {
            break;
        };
        after = last.seq;
        if candidates
            .iter()
            .any(|candidate| candidate.verdict(rule, holds, delivered) != Verdict::Prune)
        {
            return Ok(None);
        }
        let all: Vec<_> = candidates.iter().collect();
        crate::sql::pruned_insert(dialect, &all, now)
            .build()
            .persistent(false)
            .execute(&mut **tx)
            .await
            .map_err(store_error)?;
        events += candidates.len() as u64;
    }
    sqlx::raw_sql(AssertSqlSafe(format!("DROP TABLE {name}")))
        .execute(&mut **tx)
        .await
        .map_err(store_error)?;
    Ok(Some(events))
}

/// The months whose partitions `audit_events` has now.
async fn existing(tx: &mut PgConnection) -> Result<BTreeSet<Month>, StoreError> {
    let rows = sqlx::query(
        "SELECT c.relname::text AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'audit_events'::regclass",
    )
    .fetch_all(&mut *tx)
    .await
    .map_err(store_error)?;
    let mut months = BTreeSet::new();
    for row in &rows {
        let name: String = row.try_get("name").map_err(store_error)?;
        months.extend(Month::from_table(&name));
    }
    Ok(months)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_month_starts_at_its_first_millisecond_utc() {
        // 2026-12-01T00:00:00Z and 2024-02-29T23:59:59.999Z.
        let december = Month::of_ms(1_796_083_200_000);
        assert_eq!(december.table(), "audit_events_p202612");
        assert_eq!(december.start_ms(), 1_796_083_200_000);
        assert_eq!(
            Month::of_ms(1_796_083_200_000 - 1).table(),
            "audit_events_p202611"
        );
        assert_eq!(
            Month::of_ms(1_709_251_199_999).table(),
            "audit_events_p202402"
        );
        assert_eq!(december.plus(1).table(), "audit_events_p202701");
        assert_eq!(Month::of_ms(0).start_ms(), 0);
    }

    #[test]
    fn every_month_of_four_centuries_round_trips_through_its_start_and_name() {
        let mut month = Month::of_ms(0).plus(-12 * 200);
        for _ in 0..12 * 400 {
            assert_eq!(Month::of_ms(month.start_ms()), month);
            assert_eq!(Month::of_ms(month.plus(1).start_ms() - 1), month);
            if month.year() >= 0 {
                assert_eq!(Month::from_table(&month.table()), Some(month));
            }
            month = month.plus(1);
        }
    }

    #[test]
    fn the_largest_timestamp_has_a_month_without_overflow() {
        let month = Month::of_ms(i64::MAX);
        assert!(month.start_ms() > 0);
        assert_eq!(Month::of_ms(month.start_ms()), month);
    }

    #[test]
    fn only_months_in_the_window_and_not_known_are_missing() {
        let partitions = Partitions::default();
        let now = 1_796_083_200_000; // December 2026
        let ancient = 1_000; // 1970: the DEFAULT partition's
        let last_year = Month::of_ms(now).plus(-12).start_ms() + 5;

        let missing = partitions.missing([now, ancient, last_year, last_year + 1].into_iter(), now);

        let names: Vec<String> = missing.iter().map(|m| m.table()).collect();
        assert_eq!(
            names,
            [
                "audit_events_p202512",
                "audit_events_p202612",
                "audit_events_p202701",
                "audit_events_p202702",
                "audit_events_p202703"
            ]
        );
        partitions.known.lock().unwrap().extend(missing);
        assert!(partitions.missing([now].into_iter(), now).is_empty());
    }

    #[test]
    fn after_a_failure_nothing_is_missing_until_the_back_off_ends() {
        let partitions = Partitions::default();
        let now = 1_796_083_200_000;

        partitions.failed(now);

        assert!(partitions.missing([now].into_iter(), now + 1).is_empty());
        assert!(
            !partitions
                .missing([now].into_iter(), now + RETRY_AFTER_MS)
                .is_empty()
        );
    }

    #[test]
    fn names_that_are_not_month_partitions_are_ignored() {
        assert_eq!(Month::from_table(DEFAULT_PARTITION), None);
        assert_eq!(Month::from_table("audit_events_p202613"), None);
        assert_eq!(Month::from_table("audit_events_p20261"), None);
    }
}
