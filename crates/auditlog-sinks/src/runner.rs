//! Running the sinks: [`Sinks`] is the auditor's handle (cheap to clone) to a
//! supervisor that reads the sinks' definitions from the store every
//! [`RELOAD_EVERY`] (or at once after a change through this handle) and keeps
//! one delivery task per sink running with its current definition.
//!
//! A delivery task takes the sink's lease ([`AuditStore::lease_sink`]) so that,
//! among the auditors sharing a store, one at a time delivers it; reads events
//! after the sink's cursor in `seq` order; sends the ones its filter takes as one
//! batch, again and again with capped exponential backoff and jitter until the
//! receiver accepts it; and only then moves the cursor past the whole batch read.
//! Nothing is skipped: a sink failing for longer than its `failingAfterSecs` is
//! marked failing (status, metric, `/readyz` detail) and keeps trying from the
//! same place. A batch delivered just before a crash is delivered again after
//! the restart (at least once; receivers de-duplicate by event id).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use auditlog_store::{AuditStore, EventQuery, SinkRecord};
use auditlog_transport::Backoff;
use serde::Serialize;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::SinkError;
use crate::definition::SinkDefinition;
use crate::destination::{Answer, DeliveryError, Destination};
use crate::format::Outgoing;

/// How often the supervisor reads the sinks' definitions from the store (an
/// auditor sees changes made through another one this late at most).
pub const RELOAD_EVERY: Duration = Duration::from_secs(2);

/// How often a caught-up sink asks the store for new events.
pub const POLL_EVERY: Duration = Duration::from_millis(200);

/// How long a sink's lease lasts unless renewed. A holder renews it at least
/// every 5 s while it waits, and between attempts, so the longest
/// gap (a delivery timing out after a backoff pause) stays well inside it.
pub const LEASE: Duration = Duration::from_secs(45);

/// A held lease is renewed once it is this old (see [`LEASE`]).
const RENEW_AFTER: Duration = Duration::from_secs(5);

/// The first and the longest pause between attempts to deliver one batch.
const FIRST_RETRY: Duration = Duration::from_millis(200);
const MAX_RETRY: Duration = Duration::from_secs(10);

/// What one sink is doing, as this auditor sees it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SinkStatus {
    /// Whether this auditor holds the sink's lease and delivers it.
    pub delivering: bool,
    /// The `seq` delivered up to, as this auditor last saw it.
    pub cursor: i64,
    /// The log's settled `seq` when last looked.
    pub last_seq: i64,
    /// Positions in the log between the cursor and the log's end (the events
    /// not yet delivered or passed over, where `seq` has no holes).
    pub lag_events: i64,
    /// How long ago the oldest event not yet delivered was stored, seconds; 0 when
    /// caught up.
    pub lag_seconds: f64,
    /// Events delivered by this auditor since it started.
    pub delivered: u64,
    /// Failed attempts by this auditor since it started.
    pub failed_attempts: u64,
    /// The last failure, if any.
    pub last_error: Option<String>,
    /// When it happened, ms since the Unix epoch.
    pub last_error_at: Option<i64>,
    /// When a batch was last delivered, ms since the Unix epoch.
    pub last_delivered_at: Option<i64>,
    /// Since when the current batch has been failing, ms since the Unix epoch.
    pub failing_since: Option<i64>,
    /// Whether it has been failing for longer than its `failingAfterSecs`.
    pub failing: bool,
}

/// The auditor's handle to its sinks.
#[derive(Clone)]
pub struct Sinks {
    shared: Arc<Shared>,
}

struct Shared {
    store: Arc<dyn AuditStore>,
    /// Who this auditor is, in the sinks' leases.
    holder: String,
    http: crate::tls::HttpClient,
    statuses: Mutex<HashMap<String, SinkStatus>>,
    /// Rings when a definition changed through this handle.
    changed: Notify,
}

/// One running delivery task.
struct Running {
    /// The definition it runs with, as stored: a changed text restarts it.
    definition: String,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Sinks {
    /// Sinks of `store`, delivered (once [`Sinks::run`] runs) by this auditor under
    /// the lease holder name `holder`. The same holder name after a restart takes
    /// its leases back at once instead of waiting for them to expire.
    pub fn new(store: Arc<dyn AuditStore>, holder: String) -> Result<Sinks, SinkError> {
        let http = crate::tls::HttpClient::new(None)?;
        Ok(Sinks {
            shared: Arc::new(Shared {
                store,
                holder,
                http,
                statuses: Mutex::new(HashMap::new()),
                changed: Notify::new(),
            }),
        })
    }

    /// The store the sinks are kept in.
    pub fn store(&self) -> &Arc<dyn AuditStore> {
        &self.shared.store
    }

    /// What sink `name` is doing here, if it runs here.
    pub fn status(&self, name: &str) -> Option<SinkStatus> {
        self.shared.statuses().get(name).cloned()
    }

    /// Names of the sinks marked failing here, with their last error.
    pub fn failing(&self) -> Vec<(String, String)> {
        let mut failing: Vec<_> = self
            .shared
            .statuses()
            .iter()
            .filter(|(_, status)| status.failing)
            .map(|(name, status)| (name.clone(), status.last_error.clone().unwrap_or_default()))
            .collect();
        failing.sort();
        failing
    }

    /// Reads the definitions again now (after a change through the API).
    pub fn changed(&self) {
        self.shared.changed.notify_one();
    }

    /// Sends one test event (not in the log) to sink `name`'s receiver once, and
    /// answers what it said.
    pub async fn test(&self, record: &SinkRecord) -> Result<Answer, DeliveryError> {
        let definition = parse_record(record).map_err(|e| DeliveryError::Encode(e.to_string()))?;
        let now = auditlog_event::now_ms();
        let id = uuid::Uuid::now_v7();
        let json = serde_json::json!({
            "id": id,
            "action": "viewed",
            "timestamp": now,
            "actorType": "auditlog",
            "actorId": "sinks-test",
            "targetType": "sinks",
            "targetId": record.name,
            "eventName": "auditlog.sink_test",
            "seq": 0,
            "receivedAt": now,
        });
        let event = Outgoing {
            id,
            seq: 0,
            timestamp: now,
            received_at: now,
            json: json.to_string(),
        };
        let mut destination = Destination::new(definition, self.shared.http.clone()).for_tests();
        let answer = destination.deliver(&[event]).await;
        destination.close().await;
        answer
    }

    /// The supervisor: keeps one delivery task per stored sink until `stopping`
    /// resolves, then stops them (each gives its lease up) and returns.
    pub async fn run(self, stopping: impl Future<Output = ()>) {
        let mut running: HashMap<String, Running> = HashMap::new();
        tokio::pin!(stopping);
        loop {
            match self.shared.store.sinks().await {
                Ok(records) => self.reconcile(&mut running, records).await,
                Err(error) => tracing::warn!(%error, "could not read the sinks"),
            }
            tokio::select! {
                () = &mut stopping => break,
                () = tokio::time::sleep(RELOAD_EVERY) => {}
                () = self.shared.changed.notified() => {}
            }
        }
        for (_, task) in running.drain() {
            stop(task).await;
        }
    }

    /// Starts, restarts and stops tasks so that each record runs with its
    /// definition.
    async fn reconcile(&self, running: &mut HashMap<String, Running>, records: Vec<SinkRecord>) {
        let names: Vec<&str> = records.iter().map(|r| r.name.as_str()).collect();
        let gone: Vec<String> = running
            .keys()
            .filter(|name| !names.contains(&name.as_str()))
            .cloned()
            .collect();
        for name in gone {
            if let Some(task) = running.remove(&name) {
                stop(task).await;
            }
            self.shared.statuses().remove(&name);
        }
        for record in records {
            if running.get(&record.name).is_some_and(|task| {
                task.definition == record.definition && !task.task.is_finished()
            }) {
                continue;
            }
            if let Some(task) = running.remove(&record.name) {
                stop(task).await;
            }
            let definition = match parse_record(&record) {
                Ok(definition) => definition,
                Err(error) => {
                    tracing::error!(sink = %record.name, %error, "a stored sink cannot run");
                    self.shared.update(&record.name, |status| {
                        status.last_error = Some(error.to_string());
                    });
                    continue;
                }
            };
            let (stop_sender, stop_receiver) = watch::channel(false);
            let task = tokio::spawn(
                Delivery {
                    shared: self.shared.clone(),
                    name: record.name.clone(),
                    definition,
                    stop: stop_receiver,
                    lease_taken: None,
                }
                .run(),
            );
            running.insert(
                record.name.clone(),
                Running {
                    definition: record.definition,
                    stop: stop_sender,
                    task,
                },
            );
        }
    }
}

/// Stops a delivery task and waits for it (it gives its lease up).
async fn stop(task: Running) {
    let _ = task.stop.send(true);
    if let Err(error) = task.task.await {
        tracing::error!(%error, "a sink's delivery task failed");
    }
}

/// A stored record's definition.
fn parse_record(record: &SinkRecord) -> Result<SinkDefinition, SinkError> {
    let json: serde_json::Value = serde_json::from_str(&record.definition)
        .map_err(|e| SinkError::Invalid(format!("the stored definition is not JSON: {e}")))?;
    SinkDefinition::parse(&json)
}

impl Shared {
    fn statuses(&self) -> std::sync::MutexGuard<'_, HashMap<String, SinkStatus>> {
        // A status map is plain data: a panic elsewhere leaves it usable.
        self.statuses.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn update(&self, name: &str, change: impl FnOnce(&mut SinkStatus)) {
        let mut statuses = self.statuses();
        change(statuses.entry(name.to_owned()).or_default());
    }
}

/// Why a delivery task stops going on with what it does.
enum Interrupted {
    /// The service is stopping.
    Stopping,
    /// Another auditor holds the lease now (or the sink is gone).
    LeaseLost,
}

/// One sink's delivery task.
struct Delivery {
    shared: Arc<Shared>,
    name: String,
    definition: SinkDefinition,
    stop: watch::Receiver<bool>,
    /// When this task last took or renewed the lease; `None` while it does not
    /// hold it.
    lease_taken: Option<tokio::time::Instant>,
}

impl Delivery {
    async fn run(mut self) {
        let mut destination = Destination::new(self.definition.clone(), self.shared.http.clone());
        let mut cursor = 0;
        loop {
            if *self.stop.borrow() {
                break;
            }
            let was_holding = self.lease_taken.is_some();
            match self.renew_lease().await {
                Ok(true) => {}
                Ok(false) => {
                    if self.sleep(RENEW_AFTER).await.is_err() {
                        break;
                    }
                    continue;
                }
                Err(error) => {
                    self.failed(&error);
                    if self.sleep(RENEW_AFTER).await.is_err() {
                        break;
                    }
                    continue;
                }
            }
            if !was_holding {
                // Another auditor may have moved it while this one did not hold it.
                match self.stored_cursor().await {
                    Ok(Some(stored)) => cursor = stored,
                    Ok(None) => break,
                    Err(error) => {
                        self.failed(&error);
                        self.lease_taken = None;
                        if self.sleep(RENEW_AFTER).await.is_err() {
                            break;
                        }
                        continue;
                    }
                }
            }
            if self.definition.paused {
                if self.sleep(RENEW_AFTER).await.is_err() {
                    break;
                }
                continue;
            }
            match self.one_batch(&mut destination, cursor).await {
                Ok(Some(next)) => cursor = next,
                Ok(None) => {
                    if self.sleep(POLL_EVERY).await.is_err() {
                        break;
                    }
                }
                Err(Interrupted::Stopping) => break,
                Err(Interrupted::LeaseLost) => self.lease_taken = None,
            }
        }
        destination.close().await;
        if self.lease_taken.is_some()
            && let Err(error) = self
                .shared
                .store
                .release_sink(&self.name, &self.shared.holder)
                .await
        {
            tracing::warn!(sink = %self.name, %error, "could not give the sink's lease up");
        }
        self.shared
            .update(&self.name, |status| status.delivering = false);
    }

    /// Reads the events after `cursor`, delivers those the filter takes, and
    /// moves the cursor past all of them: the new cursor, or `None` when there
    /// was nothing to read.
    async fn one_batch(
        &mut self,
        destination: &mut Destination,
        cursor: i64,
    ) -> Result<Option<i64>, Interrupted> {
        let store = self.shared.store.clone();
        let read = store
            .stored_after(&EventQuery::default(), cursor, self.definition.batch_size)
            .await;
        let last_seq = store.last_seq().await;
        let (batch, last_seq) = match (read, last_seq) {
            (Ok(batch), Ok(last_seq)) => (batch, last_seq),
            (Err(error), _) | (_, Err(error)) => {
                self.failed(&error);
                return self.sleep(RENEW_AFTER).await.map(|()| None);
            }
        };
        let oldest = batch.first().map(|first| first.received_at);
        self.show_lag(cursor, last_seq, oldest);
        let Some(read_up_to) = batch.last().map(|e| e.seq) else {
            return Ok(None);
        };
        let matching: Vec<Outgoing> = batch
            .iter()
            .filter(|stored| self.definition.filter.matches(&stored.body))
            .map(Outgoing::from_stored)
            .collect();
        if !matching.is_empty() {
            self.deliver_until_accepted(destination, &matching, cursor, oldest)
                .await?;
        }
        match store
            .advance_sink(&self.name, &self.shared.holder, read_up_to)
            .await
        {
            Ok(true) => {
                self.shared
                    .update(&self.name, |status| status.cursor = read_up_to);
                Ok(Some(read_up_to))
            }
            Ok(false) => Err(Interrupted::LeaseLost),
            Err(error) => {
                // The batch went out; it goes out again once the store answers.
                self.failed(&error);
                self.sleep(RENEW_AFTER).await?;
                Err(Interrupted::LeaseLost)
            }
        }
    }

    /// Shows how far behind the sink is: the log positions between `cursor` and
    /// `last_seq`, and the age of `oldest`, the oldest event not delivered (`None`
    /// when caught up).
    fn show_lag(&self, cursor: i64, last_seq: i64, oldest: Option<i64>) {
        let lag_events = (last_seq - cursor).max(0);
        let lag_seconds = oldest.map_or(0.0, |received_at| {
            (auditlog_event::now_ms() - received_at).max(0) as f64 / 1000.0
        });
        self.shared.update(&self.name, |status| {
            status.cursor = cursor;
            status.last_seq = last_seq;
            status.lag_events = lag_events;
            status.lag_seconds = lag_seconds;
        });
        metrics::gauge!("auditlog_sink_lag_events", "sink" => self.name.clone())
            .set(lag_events as f64);
        metrics::gauge!("auditlog_sink_lag_seconds", "sink" => self.name.clone()).set(lag_seconds);
    }

    /// Sends `events` (read after `cursor`, the oldest stored at `oldest`) until
    /// the receiver accepts them, backing off between attempts, renewing the
    /// lease, and keeping the lag shown current while it fails.
    async fn deliver_until_accepted(
        &mut self,
        destination: &mut Destination,
        events: &[Outgoing],
        cursor: i64,
        oldest: Option<i64>,
    ) -> Result<(), Interrupted> {
        let mut backoff = Backoff::new(FIRST_RETRY, MAX_RETRY);
        loop {
            match destination.deliver(events).await {
                Ok(_) => {
                    let now = auditlog_event::now_ms();
                    self.shared.update(&self.name, |status| {
                        status.delivered += events.len() as u64;
                        status.last_delivered_at = Some(now);
                        status.failing_since = None;
                        status.failing = false;
                    });
                    metrics::counter!("auditlog_sink_delivered_events_total", "sink" => self.name.clone())
                        .increment(events.len() as u64);
                    metrics::gauge!("auditlog_sink_failing", "sink" => self.name.clone()).set(0.0);
                    return Ok(());
                }
                Err(error) => {
                    tracing::warn!(sink = %self.name, %error, "delivery failed; retrying");
                    self.failed(&error);
                    if let Ok(last_seq) = self.shared.store.last_seq().await {
                        self.show_lag(cursor, last_seq, oldest);
                    }
                    self.sleep(jittered(backoff.next_pause())).await?;
                    match self.renew_lease().await {
                        Ok(true) => {}
                        Ok(false) => return Err(Interrupted::LeaseLost),
                        // The store is down: keep the batch and try again; the
                        // cursor cannot move without the store anyway.
                        Err(error) => self.failed(&error),
                    }
                }
            }
        }
    }

    /// Takes or renews the lease if it is due: whether this task holds it.
    async fn renew_lease(&mut self) -> Result<bool, auditlog_store::StoreError> {
        if self
            .lease_taken
            .is_some_and(|taken| taken.elapsed() < RENEW_AFTER)
        {
            return Ok(true);
        }
        let held = self
            .shared
            .store
            .lease_sink(
                &self.name,
                &self.shared.holder,
                auditlog_event::now_ms(),
                LEASE.as_millis() as i64,
            )
            .await;
        let held = match held {
            Ok(held) => held,
            Err(error) => {
                self.lease_taken = None;
                return Err(error);
            }
        };
        self.lease_taken = held.then(tokio::time::Instant::now);
        self.shared
            .update(&self.name, |status| status.delivering = held);
        Ok(held)
    }

    /// The sink's stored cursor; `None` when the sink is gone.
    async fn stored_cursor(&self) -> Result<Option<i64>, auditlog_store::StoreError> {
        Ok(self
            .shared
            .store
            .sinks()
            .await?
            .into_iter()
            .find(|record| record.name == self.name)
            .map(|record| record.cursor))
    }

    /// Records a failed attempt (and marks the sink failing once it has failed
    /// for longer than its `failingAfterSecs`).
    fn failed(&self, error: &dyn std::fmt::Display) {
        let now = auditlog_event::now_ms();
        let failing_after = self.definition.failing_after().as_millis() as i64;
        let mut failing = false;
        self.shared.update(&self.name, |status| {
            status.failed_attempts += 1;
            status.last_error = Some(error.to_string());
            status.last_error_at = Some(now);
            let since = *status.failing_since.get_or_insert(now);
            status.failing = now - since >= failing_after;
            failing = status.failing;
        });
        metrics::counter!("auditlog_sink_failed_attempts_total", "sink" => self.name.clone())
            .increment(1);
        metrics::gauge!("auditlog_sink_failing", "sink" => self.name.clone()).set(if failing {
            1.0
        } else {
            0.0
        });
    }

    /// Waits `pause`, or less if the task is told to stop (then `Err`).
    async fn sleep(&mut self, pause: Duration) -> Result<(), Interrupted> {
        tokio::select! {
            () = tokio::time::sleep(pause) => Ok(()),
            _ = self.stop.wait_for(|stop| *stop) => Err(Interrupted::Stopping),
        }
    }
}

/// `pause` shortened by up to half at random, so that sinks failing together
/// do not retry together.
fn jittered(pause: Duration) -> Duration {
    let mut random = [0u8; 2];
    let fraction = match getrandom::fill(&mut random) {
        Ok(()) => f64::from(u16::from_le_bytes(random)) / f64::from(u16::MAX),
        Err(_) => 0.5,
    };
    pause.mul_f64(1.0 - fraction / 2.0)
}

/// Gives the sinks' metrics their `# HELP` text: call it right after installing
/// a recorder.
pub fn describe_metrics() {
    metrics::describe_counter!(
        "auditlog_sink_delivered_events_total",
        "Events delivered to each sink's receiver by this auditor"
    );
    metrics::describe_counter!(
        "auditlog_sink_failed_attempts_total",
        "Failed attempts to deliver a batch (or to reach the store) per sink"
    );
    metrics::describe_gauge!(
        "auditlog_sink_lag_events",
        "Log positions between each sink's cursor and the log's end"
    );
    metrics::describe_gauge!(
        "auditlog_sink_lag_seconds",
        metrics::Unit::Seconds,
        "Age of the oldest event each sink has not delivered yet"
    );
    metrics::describe_gauge!(
        "auditlog_sink_failing",
        "1 while a sink has failed for longer than its failingAfterSecs"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_shortens_a_pause_by_at_most_half() {
        for _ in 0..100 {
            let pause = jittered(Duration::from_secs(10));
            assert!(pause >= Duration::from_secs(5) && pause <= Duration::from_secs(10));
        }
    }
}
