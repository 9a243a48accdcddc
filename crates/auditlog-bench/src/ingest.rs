//! `auditlog bench ingest`: N events from P emitters through the configured
//! transport into the auditor and its store, measured end to end, checked for lost
//! events (by id) and duplicated ones (by producer and sequence number), and
//! compared with the store's own bulk-load ceiling measured in the same run.

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use auditlog_amqp::{AmqpConfig, AmqpPublisher};
use auditlog_emit::{Emitter, EmitterConfig, Transport};
use auditlog_store::{AuditStore, EventQuery};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::ceiling;
use crate::stats::{Percentiles, own_peak_rss_kib, peak_rss_kib, percentiles};
use crate::workload::Workload;

/// What to run.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    pub events: u64,
    pub producers: usize,
    /// Most events per transport batch.
    pub batch: usize,
    /// Share of `changed` events (with two fields); the rest are `viewed`.
    pub changed_ratio: f64,
    /// The store; a fresh SQLite file when absent. The run adds N events to it.
    pub store_url: Option<String>,
    /// RabbitMQ; the embedded transport when absent.
    pub amqp_url: Option<String>,
    /// Show a progress bar (off for `--json`).
    pub progress: bool,
}

/// What a run measured. Field names are stable across commits (`--json`).
#[derive(Debug, Clone, Serialize)]
pub struct IngestReport {
    pub events: u64,
    pub producers: usize,
    pub transport: String,
    pub store: String,
    pub lost: u64,
    pub duplicated: u64,
    pub dropped_by_emitters: u64,
    pub spilled_by_emitters: u64,
    pub emitted_per_sec: f64,
    pub stored_per_sec: f64,
    pub ceiling_per_sec: f64,
    pub fraction_of_ceiling: f64,
    pub emit_p50_ns: u64,
    pub emit_p99_ns: u64,
    pub freshness_p50_ms: f64,
    pub freshness_p99_ms: f64,
    pub freshness_samples: usize,
    pub bench_peak_rss_kib: u64,
    pub auditor_peak_rss_kib: Option<u64>,
    pub seconds: f64,
}

/// Every 1 000th event is watched until it can be queried.
const FRESHNESS_SAMPLE_EVERY: u64 = 1_000;
/// How often the freshness watcher looks at least, and at most.
const FRESHNESS_POLL: Duration = Duration::from_millis(5);
const FRESHNESS_POLL_MAX: Duration = Duration::from_millis(50);
/// How often the wait for the last events looks for them, at most.
const STORED_POLL_MAX: Duration = Duration::from_millis(20);
/// How long the store may store nothing while the bench waits for the last
/// events: events still missing then are reported as lost rather than waited for.
const STALL_PATIENCE: Duration = Duration::from_secs(30);
/// How often the wait for the last events looks whether the store still moves.
const PROGRESS_POLL: Duration = Duration::from_millis(100);

pub async fn run(options: IngestOptions) -> Result<IngestReport> {
    if options.producers == 0 || options.events == 0 {
        bail!("--events and --producers must be at least 1");
    }
    let scratch = tempfile::tempdir().context("while creating a scratch directory")?;
    let store_url = options
        .store_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", scratch.path().join("audit.db").display()));
    let store = auditlog_store::open(&store_url)
        .await
        .with_context(|| format!("while opening {}", auditlog_store::redact(&store_url)))?;

    let run_tag = Uuid::now_v7().simple().to_string();
    // The run's own RabbitMQ names, deleted when it is over.
    let mut topology: Option<AmqpConfig> = None;
    let (seal_now, stop_sealing) = tokio::sync::oneshot::channel::<()>();
    let (transport, auditor, in_process): (Arc<dyn Transport>, Option<Child>, _) =
        match &options.amqp_url {
            None => {
                let (transport, receiver) = auditlog_emit::embedded::channel(64);
                let consumer = tokio::spawn(auditlog_auditor::consumer::run(
                    receiver,
                    store.clone(),
                    std::future::pending(),
                ));
                // The in-process auditor seals what it stores, as `auditlog up`
                // does (the RabbitMQ configurations' `auditlog auditor` does too):
                // the store's sealing work is part of what is measured.
                let keys = auditlog_auth::KeyPair::load_or_generate(scratch.path())
                    .context("while creating the run's signing key")?;
                let sealer = tokio::spawn(auditlog_auditor::integrity::run_sealer(
                    store.clone(),
                    keys,
                    auditlog_auditor::integrity::SEAL_EVERY,
                    async move {
                        let _ = stop_sealing.await;
                    },
                ));
                (Arc::new(transport), None, Some((consumer, sealer)))
            }
            Some(url) => {
                let config = AmqpConfig {
                    exchange: format!("api-stream-bench-{run_tag}"),
                    queue: format!("data-mutation-audits-bench-{run_tag}"),
                    dead_letter_queue: format!("data-mutation-audits-bench-{run_tag}.dead-letter"),
                    ..AmqpConfig::new(url.clone())
                };
                let auditor = spawn_auditor(&config, &store_url, scratch.path())?;
                topology = Some(config.clone());
                let publisher = AmqpPublisher::new(config, "bench");
                publisher
                    .connect()
                    .await
                    .context("while connecting to RabbitMQ")?;
                // The publisher declared the queue; the clock starts once the
                // auditor consumes from it, so that its start-up is not counted.
                wait_for_consumer(url, &format!("data-mutation-audits-bench-{run_tag}")).await?;
                (Arc::new(publisher), Some(auditor), None)
            }
        };

    let progress = progress_bar(options.events, options.progress);
    let emitted_count = Arc::new(AtomicU64::new(0));
    let ticker = {
        let (progress, emitted_count) = (progress.clone(), emitted_count.clone());
        tokio::spawn(async move {
            loop {
                progress.set_position(emitted_count.load(Ordering::Relaxed));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    // Rows already in the store (`--store-url`): what the run adds is counted
    // against this.
    let rows_before = store
        .count(&EventQuery::default())
        .await
        .context("while counting the store's rows")?;
    let watcher = Freshness::default();
    let started = Instant::now();
    let mut producer_ids = Vec::with_capacity(options.producers);
    let per_producer = options.events.div_ceil(options.producers as u64);
    let mut producers = Vec::new();
    for producer in 0..options.producers {
        let first = producer as u64 * per_producer;
        let last = ((producer as u64 + 1) * per_producer).min(options.events);
        let producer_id = auditlog_emit::new_producer_id("bench");
        producer_ids.push(producer_id.clone());
        let config = EmitterConfig {
            max_batch: options.batch.max(1),
            spill_dir: Some(scratch.path().join(format!("spill-{producer}"))),
            producer_id: Some(producer_id),
            shutdown_grace: Duration::from_secs(600),
            ..EmitterConfig::default()
        };
        let (emitter, task) = Emitter::start(transport.clone(), config)?;
        let watcher = watcher.clone();
        let ratio = options.changed_ratio;
        let counter = emitted_count.clone();
        producers.push(tokio::spawn(async move {
            emit_range(emitter, task, first..last, ratio, watcher, counter).await
        }));
    }
    let watch = tokio::spawn(watcher.clone().watch(store.clone()));
    let mut emit_ns = Vec::with_capacity(options.events as usize);
    let mut ids = Vec::with_capacity(options.events as usize);
    let mut emitted_at = started;
    let mut dropped = 0;
    let mut spilled = 0;
    for producer in producers {
        let outcome = producer.await.context("a producer task failed")?;
        emit_ns.extend(outcome.emit_ns);
        ids.extend(outcome.ids);
        emitted_at = emitted_at.max(outcome.emitted_at);
        dropped += outcome.dropped;
        spilled += outcome.spilled;
    }
    progress.set_message("stored");
    let emit_seconds = (emitted_at - started).as_secs_f64();

    // Every producer's last event stored means all of its events are: each
    // producer's events travel in order through one queue and one consumer. An
    // event that never comes (dropped by its emitter, or lost) ends the wait once
    // the store stops moving; the check below then counts it as lost.
    let last_ids = watcher.last_ids().await;
    let stored_at = wait_stored(&*store, &last_ids, STALL_PATIENCE, started).await?;
    let stored_seconds = (stored_at - started).as_secs_f64();
    watcher.stop();
    let freshness = watch.await.context("the freshness watcher failed")?;
    ticker.abort();
    progress.finish_and_clear();

    let (lost, duplicated) = check_ids(&*store, &ids, &producer_ids, rows_before).await?;
    let auditor_rss = auditor.map(|mut child| {
        let rss = peak_rss_kib(child.id());
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let _ = child.wait();
        rss
    });
    if let Some((consumer, sealer)) = in_process {
        drop(transport);
        consumer.await.context("the consumer failed")?;
        let _ = seal_now.send(());
        sealer.await.context("the sealer failed")?;
    }
    if let Some(config) = &topology
        && let Err(err) = auditlog_amqp::delete_topology(config).await
    {
        tracing::warn!(%err, "the run's RabbitMQ queues could not be deleted");
    }

    let ceiling_seconds = ceiling::measure(
        &store_url,
        scratch.path(),
        options.events,
        options.changed_ratio,
    )
    .await
    .context("while measuring the store's bulk-load ceiling")?;
    let emit = percentiles(emit_ns);
    // Only what arrived: a run that gave up waiting does not count its lost events.
    let stored_per_sec = options.events.saturating_sub(lost) as f64 / stored_seconds;
    let ceiling_per_sec = options.events as f64 / ceiling_seconds;
    Ok(IngestReport {
        events: options.events,
        producers: options.producers,
        transport: if options.amqp_url.is_some() {
            "rabbitmq".into()
        } else {
            "embedded".into()
        },
        store: store_url
            .split_once(':')
            .map(|(scheme, _)| scheme.to_owned())
            .unwrap_or_default(),
        lost,
        duplicated,
        dropped_by_emitters: dropped,
        spilled_by_emitters: spilled,
        emitted_per_sec: options.events as f64 / emit_seconds.max(1e-9),
        stored_per_sec,
        ceiling_per_sec,
        fraction_of_ceiling: stored_per_sec / ceiling_per_sec,
        emit_p50_ns: emit.p50,
        emit_p99_ns: emit.p99,
        freshness_p50_ms: freshness.p50 as f64 / 1_000.0,
        freshness_p99_ms: freshness.p99 as f64 / 1_000.0,
        freshness_samples: freshness.count,
        bench_peak_rss_kib: own_peak_rss_kib(),
        auditor_peak_rss_kib: auditor_rss,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// What one producer did.
struct ProducerOutcome {
    ids: Vec<Uuid>,
    emit_ns: Vec<u64>,
    emitted_at: Instant,
    dropped: u64,
    spilled: u64,
}

async fn emit_range(
    emitter: Emitter,
    task: auditlog_emit::EmitterTask,
    range: std::ops::Range<u64>,
    changed_ratio: f64,
    watcher: Freshness,
    emitted_count: Arc<AtomicU64>,
) -> ProducerOutcome {
    let workload = Workload::new(changed_ratio);
    let count = range.end - range.start;
    let mut ids = Vec::with_capacity(count as usize);
    let mut emit_ns = Vec::with_capacity(count as usize);
    let mut last = None;
    for n in range {
        let event = workload.event(n, auditlog_event::now_ms());
        let id = event.id;
        ids.push(id);
        let sampled = n % FRESHNESS_SAMPLE_EVERY == 0;
        let before = Instant::now();
        emitter.emit(event);
        let after = Instant::now();
        emit_ns.push((after - before).as_nanos() as u64);
        if sampled {
            watcher.sample(id, before).await;
        }
        last = Some(id);
        if n % 4_096 == 4_095 {
            emitted_count.fetch_add(4_096, Ordering::Relaxed);
            // Let the batching task and the consumer run on a busy runtime.
            tokio::task::yield_now().await;
        }
    }
    let emitted_at = Instant::now();
    if let Some(last) = last {
        watcher.last(last).await;
    }
    let stats = task.shutdown().await;
    ProducerOutcome {
        ids,
        emit_ns,
        emitted_at,
        dropped: stats.dropped(),
        spilled: stats.spilled(),
    }
}

/// Watches sampled events until they can be queried, for emit → queryable times.
#[derive(Clone, Default)]
struct Freshness {
    pending: Arc<Mutex<Vec<(Uuid, Instant)>>>,
    seen_us: Arc<Mutex<Vec<u64>>>,
    last: Arc<Mutex<Vec<Uuid>>>,
    stopped: Arc<AtomicBool>,
}

impl Freshness {
    async fn sample(&self, id: Uuid, at: Instant) {
        self.pending.lock().await.push((id, at));
    }

    async fn last(&self, id: Uuid) {
        self.last.lock().await.push(id);
    }

    async fn last_ids(&self) -> Vec<Uuid> {
        self.last.lock().await.clone()
    }

    fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
    }

    async fn watch(self, store: Arc<dyn AuditStore>) -> Percentiles {
        loop {
            let stopping = self.stopped.load(Ordering::SeqCst);
            // The oldest samples are the ones due next: events are stored about in
            // order, and asking for a few keeps the watcher's load on the store small.
            let pending: Vec<(Uuid, Instant)> = self
                .pending
                .lock()
                .await
                .iter()
                .take(100)
                .copied()
                .collect();
            if !pending.is_empty() {
                let ids: Vec<Uuid> = pending.iter().map(|(id, _)| *id).collect();
                if let Ok(found) = store.stored_ids(&ids).await {
                    let now = Instant::now();
                    let found: HashSet<Uuid> = found.into_iter().collect();
                    let mut seen = self.seen_us.lock().await;
                    for (id, at) in &pending {
                        if found.contains(id) {
                            seen.push((now - *at).as_micros() as u64);
                        }
                    }
                    self.pending
                        .lock()
                        .await
                        .retain(|(id, _)| !found.contains(id));
                }
            }
            if stopping {
                break;
            }
            // Looking costs the store work, which the measured system then lacks:
            // look about as often as the oldest sample's age needs for a 1 % error.
            let oldest = pending
                .first()
                .map_or(Duration::ZERO, |(_, at)| at.elapsed());
            tokio::time::sleep((oldest / 100).clamp(FRESHNESS_POLL, FRESHNESS_POLL_MAX)).await;
        }
        percentiles(self.seen_us.lock().await.clone())
    }
}

/// Waits until every id is stored and returns when (within 0.1 % of the time since
/// `started`, polling no more often than that needs). If the store stops making
/// progress first (its highest `seq` unchanged for `patience`), some of them will
/// never come: returns when the store last moved, leaving the missing ones to be
/// counted as lost. Progress is the store's, not a count of this run's rows, so a
/// store that already held events (`--store-url`) is no different.
async fn wait_stored(
    store: &dyn AuditStore,
    ids: &[Uuid],
    patience: Duration,
    started: Instant,
) -> Result<Instant> {
    let mut progress = Progress::new(store.last_seq().await?, Instant::now());
    let mut looked = Instant::now();
    loop {
        let found = store.stored_ids(ids).await?;
        let found: HashSet<Uuid> = found.into_iter().collect();
        if ids.iter().all(|id| found.contains(id)) {
            return Ok(Instant::now());
        }
        if looked.elapsed() >= PROGRESS_POLL {
            looked = Instant::now();
            if progress.stalled(store.last_seq().await?, looked, patience) {
                tracing::warn!(
                    "the store stored nothing for {} s; counting the events still missing as lost",
                    patience.as_secs()
                );
                return Ok(progress.since);
            }
        }
        let wanted = started.elapsed() / 1_000;
        tokio::time::sleep(wanted.clamp(Duration::from_millis(1), STORED_POLL_MAX)).await;
    }
}

/// A value that should keep moving (the store's highest `seq`), and since when it
/// has been what it is.
#[derive(Debug, Clone, Copy)]
struct Progress {
    value: i64,
    since: Instant,
}

impl Progress {
    fn new(value: i64, now: Instant) -> Self {
        Progress { value, since: now }
    }

    /// Records `value` read at `now`; true once it has not changed for `patience`.
    fn stalled(&mut self, value: i64, now: Instant, patience: Duration) -> bool {
        if value != self.value {
            *self = Progress::new(value, now);
            return false;
        }
        now.duration_since(self.since) >= patience
    }
}

/// Lost: emitted ids not stored. Duplicated: rows the run added beyond one per
/// sequence number of its `producers` (`rows_before` is the store's count before
/// the run). The store keeps each id once, so counting rows per emitted id can
/// never see a repeat; an event stored again under another id (re-sent without
/// its id, or given a new one on the way) keeps its producer and number, and
/// shows here. Other writers to the store during the run would count too.
async fn check_ids(
    store: &dyn AuditStore,
    ids: &[Uuid],
    producers: &[String],
    rows_before: u64,
) -> Result<(u64, u64)> {
    let mut lost = 0;
    for chunk in ids.chunks(10_000) {
        let stored: HashSet<Uuid> = store.stored_ids(chunk).await?.into_iter().collect();
        lost += chunk.iter().filter(|id| !stored.contains(id)).count() as u64;
    }
    let rows_added = store
        .count(&EventQuery::default())
        .await?
        .saturating_sub(rows_before);
    let numbered: u64 = store
        .producers()
        .await?
        .iter()
        .filter(|progress| producers.contains(&progress.producer_id))
        .map(|progress| progress.events)
        .sum();
    Ok((lost, rows_added.saturating_sub(numbered)))
}

/// Starts `auditlog auditor` consuming the bench's queue into the store.
fn spawn_auditor(config: &AmqpConfig, store_url: &str, scratch: &std::path::Path) -> Result<Child> {
    let exe = std::env::current_exe().context("while locating the auditlog binary")?;
    Command::new(exe)
        .args([
            "auditor",
            "--auditor-addr",
            "127.0.0.1:0",
            "--store-url",
            store_url,
            "--amqp-url",
            &config.url,
            "--amqp-exchange",
            &config.exchange,
            "--amqp-queue",
            &config.queue,
            "--amqp-dead-letter-queue",
            &config.dead_letter_queue,
        ])
        .env("AUDITLOG_DATA_DIR", scratch.join("auditor"))
        .env("AUDITLOG_LOG", "warn,lapin::channel=off")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("while starting the auditor")
}

/// Waits until the auditor consumes from its queue.
async fn wait_for_consumer(url: &str, queue: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if auditlog_amqp::queue_consumers(url, queue)
            .await
            .unwrap_or(0)
            > 0
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the auditor did not start consuming from {queue} within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn progress_bar(total: u64, visible: bool) -> ProgressBar {
    if !visible {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {bar:40} {pos}/{len} events emitted {msg} [{elapsed}]",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

#[cfg(test)]
mod tests {
    use super::*;
    use auditlog_event::DataEvent;

    /// Event `n` of the run, numbered `seq` by the producer `bench/a`.
    fn numbered(n: u64, seq: u64) -> DataEvent {
        let mut event = Workload::new(0.0).event(n, 1_700_000_000_000 + n as i64);
        event.producer_id = Some("bench/a".into());
        event.producer_seq = Some(seq);
        event
    }

    #[tokio::test]
    async fn an_event_stored_again_under_another_id_counts_as_duplicated() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("audit.db").display());
        let store = auditlog_store::open(&url).await.unwrap();
        let (first, second) = (numbered(1, 1), numbered(2, 2));
        // The second event again, as a transport that re-sent it with a new id would.
        let mut again = second.clone();
        again.id = Uuid::now_v7();
        store
            .insert_batch(&[first.clone(), second.clone(), again])
            .await
            .unwrap();

        let counted = check_ids(&*store, &[first.id, second.id], &["bench/a".into()], 0).await;

        assert_eq!(counted.unwrap(), (0, 1), "(lost, duplicated)");
    }

    #[test]
    fn progress_stalls_only_after_patience_without_a_change() {
        let patience = Duration::from_secs(30);
        let start = Instant::now();
        let at = |secs| start + Duration::from_secs(secs);
        let mut progress = Progress::new(10, start);
        assert!(!progress.stalled(10, at(29), patience));
        // A change restarts the clock, and `since` is when it was seen.
        assert!(!progress.stalled(11, at(29), patience));
        assert_eq!(progress.since, at(29));
        assert!(!progress.stalled(11, at(58), patience));
        assert!(progress.stalled(11, at(59), patience));
        assert_eq!(progress.since, at(29));
    }
}
