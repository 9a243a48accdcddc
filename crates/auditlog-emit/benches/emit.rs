//! Cost of [`Emitter::emit`] on the request path (DESIGN §8: ≤ 1 µs p99 per event,
//! never blocks).
//!
//! The emitter runs on a multi-thread Tokio runtime with the default
//! [`EmitterConfig`] (queue of 65 536, batches of 1 000, no spill) and an in-process
//! transport that confirms every batch at once, so what is measured is the handle's
//! own work: counters, optional sequence stamping and the `try_send` onto the queue,
//! with the background task draining concurrently on the runtime's workers.
//!
//! - `event/build_viewed`, `event/clone_viewed`: building a typical `viewed` event
//!   and cloning one, to subtract from the `clone_emit` figures.
//! - `emit/{plain,producer_id}/emit`: `emit(event)` of pre-built events (clones are
//!   made outside the timed region).
//! - `emit/{plain,producer_id}/clone_emit`: `emit(event.clone())` as a caller
//!   holding a template would do it.
//!   `producer_id` stamps every event with a producer id and the next sequence number.
//!   Calls are timed in runs of at most 10 000 and the queue is left to drain between
//!   runs (untimed), so the queue never fills: a full queue would measure the drop path.
//! - `emit_latency/instant_overhead`: the first time it runs (in a `cargo bench` run
//!   with no filter, or a filter matching it) it first times 1 000 000 individual
//!   `emit()` calls per configuration with `std::time::Instant` and prints
//!   p50/p90/p99/p99.9/max, since criterion reports means; then criterion measures
//!   the `Instant::now()` + `elapsed()` pair that is included in each of those samples.
//!
//! Run: `cargo bench -p auditlog-emit --bench emit`
//! (quicker: `cargo bench -p auditlog-emit --bench emit -- --warm-up-time 1 --measurement-time 3`).
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use auditlog_emit::{Emitter, EmitterConfig, EmitterTask, Transport, TransportError};
use auditlog_event::{Action, DataEvent, ObjectRef, ObjectType};
use criterion::{Criterion, criterion_group, criterion_main};
use tokio::runtime::Runtime;

/// Fixed timestamp: reading the clock is the caller's business, not `emit`'s.
const TIMESTAMP_MS: i64 = 1_700_000_000_000;
/// Most calls timed before the queue is left to drain.
const RUN: u64 = 10_000;

/// A transport that confirms every batch at once.
struct Confirming;

#[async_trait::async_trait]
impl Transport for Confirming {
    async fn publish(&self, _batch: &[DataEvent]) -> Result<(), TransportError> {
        Ok(())
    }
}

/// A typical `viewed` event: user 1 viewed user `n`.
fn viewed_event(n: i64) -> DataEvent {
    DataEvent::new(
        Action::Viewed,
        ObjectRef::new(ObjectType::parse("actorType", "users").unwrap(), 1),
        ObjectRef::new(ObjectType::parse("targetType", "users").unwrap(), n),
        TIMESTAMP_MS,
    )
}

/// Whether this is a measuring run (`cargo bench`), not `cargo test --benches` or
/// `cargo bench -- --test`, which run each bench once.
fn measuring() -> bool {
    let args: Vec<String> = std::env::args().collect();
    args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test")
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The two configurations measured: plain, and stamping a producer sequence.
fn configs() -> [(&'static str, EmitterConfig); 2] {
    [
        ("plain", EmitterConfig::default()),
        (
            "producer_id",
            EmitterConfig {
                producer_id: Some(auditlog_emit::new_producer_id("bench")),
                ..EmitterConfig::default()
            },
        ),
    ]
}

fn start(rt: &Runtime, config: EmitterConfig) -> (Emitter, EmitterTask) {
    let _entered = rt.enter();
    Emitter::start(Arc::new(Confirming), config).unwrap()
}

/// Waits (untimed) until the background task has taken and confirmed everything.
fn drain(emitter: &Emitter) {
    while emitter.stats().pending() > 0 {
        std::thread::sleep(Duration::from_micros(50));
    }
}

/// Shuts the emitter down and checks that nothing was dropped, which would mean
/// the drop path was measured instead of the enqueue.
fn finish(rt: &Runtime, name: &str, emitter: Emitter, task: EmitterTask) {
    drop(emitter);
    let stats = rt.block_on(task.shutdown());
    assert_eq!(
        stats.dropped(),
        0,
        "{name}: {} events dropped",
        stats.dropped()
    );
}

fn event_cost(c: &mut Criterion) {
    let mut group = c.benchmark_group("event");
    group.bench_function("build_viewed", |b| {
        b.iter(|| viewed_event(black_box(42)));
    });
    let template = viewed_event(42);
    group.bench_function("clone_viewed", |b| b.iter(|| black_box(&template).clone()));
    group.finish();
}

fn emit_cost(c: &mut Criterion) {
    let rt = runtime();
    let template = viewed_event(42);
    let mut group = c.benchmark_group("emit");
    for (name, config) in configs() {
        let (emitter, task) = start(&rt, config);
        // Pre-built events: only `emit` is inside the timed region.
        group.bench_function(format!("{name}/emit"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let n = left.min(RUN);
                    left -= n;
                    let events: Vec<DataEvent> = (0..n).map(|_| template.clone()).collect();
                    let started = Instant::now();
                    for event in events {
                        emitter.emit(event);
                    }
                    total += started.elapsed();
                    drain(&emitter);
                }
                total
            });
        });
        // What a caller holding a template does.
        group.bench_function(format!("{name}/clone_emit"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let n = left.min(RUN);
                    left -= n;
                    let started = Instant::now();
                    for _ in 0..n {
                        emitter.emit(black_box(&template).clone());
                    }
                    total += started.elapsed();
                    drain(&emitter);
                }
                total
            });
        });
        finish(&rt, name, emitter, task);
    }
    group.finish();
}

/// Times `calls` individual `emit()` calls of pre-built events and prints the
/// distribution.
fn percentiles(rt: &Runtime, name: &str, config: EmitterConfig, calls: usize) {
    let (emitter, task) = start(rt, config);
    let template = viewed_event(42);
    let mut samples: Vec<u64> = Vec::with_capacity(calls);
    while samples.len() < calls {
        let n = (calls - samples.len()).min(RUN as usize);
        let events: Vec<DataEvent> = (0..n).map(|_| template.clone()).collect();
        for event in events {
            let started = Instant::now();
            emitter.emit(event);
            samples.push(started.elapsed().as_nanos() as u64);
        }
        drain(&emitter);
    }
    finish(rt, name, emitter, task);
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    let mean = samples.iter().sum::<u64>() as f64 / samples.len() as f64;
    println!(
        "emit_latency/{name}: {calls} calls, mean {mean:.0} ns, p50 {} ns, p90 {} ns, \
         p99 {} ns, p99.9 {} ns, max {} ns (each includes one Instant pair)",
        at(0.50),
        at(0.90),
        at(0.99),
        at(0.999),
        samples[samples.len() - 1],
    );
}

fn emit_latency(c: &mut Criterion) {
    // `cargo test --benches` runs every bench once: keep that quick.
    let calls = if measuring() { 1_000_000 } else { 10_000 };
    let mut printed = false;
    c.bench_function("emit_latency/instant_overhead", |b| {
        if !printed {
            printed = true;
            let rt = runtime();
            for (name, config) in configs() {
                percentiles(&rt, name, config, calls);
            }
        }
        b.iter(|| Instant::now().elapsed());
    });
}

criterion_group!(benches, event_cost, emit_cost, emit_latency);
criterion_main!(benches);
