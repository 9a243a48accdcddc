//! Store backends: batch insert and first-page queries (DESIGN §8: first page by
//! actor or target ≤ 5 ms p99).
//!
//! Per backend (SQLite in a temporary directory; PostgreSQL and MariaDB in fresh
//! private databases from `auditlog_store::testing`):
//!
//! - `store_insert/{backend}`: `insert_batch` of 1 000 new `viewed` events (fresh
//!   ids each time, built outside the timed region) into a store of its own that
//!   grows as the bench runs. Throughput in events.
//! - `store_seal/{backend}`: `seal` of the 1 000 events just inserted (the insert
//!   is not timed), in a store of its own that grows as the bench runs: what
//!   appending them to the Merkle tree costs (leaf and tile-node inserts, and the
//!   commit of one seal per 1 000) beside storing the same events. Throughput in
//!   leaves sealed.
//! - `store_query/{backend}/{by_actor,by_target}`: the first page (50 events) for
//!   one actor or one target, on a store preloaded with 100 000 events spread evenly
//!   over 1 000 actors (100 events each, so the page is full) and 10 000 targets
//!   (10 events each, so the page holds 10). Each iteration asks for the next
//!   actor/target in a fixed scramble, so one hot page is not measured. The preload
//!   (`insert_batch` in batches of 5 000) happens once per backend, when its first
//!   query bench runs, and its rate is printed.
//!
//! Databases are only created for benches selected by the filter. Backends:
//! `AUDITLOG_BENCH_BACKENDS=sqlite,postgres,mysql` (default: all three). The servers
//! are those of the test helper: `AUDITLOG_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`) and `AUDITLOG_TEST_MYSQL_URL` (default
//! `mysql://root@127.0.0.1:3306/test`); an unreachable server is an error that says
//! how to start it. Under `cargo test --benches` the preload is 10 000 events.
//!
//! Run: `cargo bench -p auditlog-store --bench store`
//! (quicker: `AUDITLOG_BENCH_BACKENDS=sqlite cargo bench -p auditlog-store --bench store -- --warm-up-time 1 --measurement-time 3`).
#![allow(clippy::unwrap_used)]

use std::cell::OnceCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use auditlog_event::{Action, DataEvent, ObjectRef, ObjectType};
use auditlog_store::testing::{self, TestDatabase};
use auditlog_store::{AuditStore, EventQuery, ObjectKey};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use tokio::runtime::Runtime;

const ACTORS: u64 = 1_000;
const TARGETS: u64 = 10_000;
const PRELOAD: u64 = 100_000;
const PRELOAD_BATCH: u64 = 5_000;
const INSERT_BATCH: u64 = 1_000;
const PAGE: u32 = 50;
const START_MS: i64 = 1_700_000_000_000;

#[derive(Clone, Copy, Debug)]
enum Backend {
    Sqlite,
    Postgres,
    MySql,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
            Backend::MySql => "mysql",
        }
    }

    /// The backends named by `AUDITLOG_BENCH_BACKENDS`, default all.
    fn selected() -> Vec<Backend> {
        let Ok(list) = std::env::var("AUDITLOG_BENCH_BACKENDS") else {
            return vec![Backend::Sqlite, Backend::Postgres, Backend::MySql];
        };
        list.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| match s {
                "sqlite" => Backend::Sqlite,
                "postgres" | "postgresql" => Backend::Postgres,
                "mysql" | "mariadb" => Backend::MySql,
                other => panic!(
                    "AUDITLOG_BENCH_BACKENDS: unknown backend `{other}` (sqlite, postgres, mysql)"
                ),
            })
            .collect()
    }

    async fn fresh(self) -> TestDatabase {
        match self {
            Backend::Sqlite => testing::fresh_sqlite_url(),
            Backend::Postgres => testing::fresh_postgres_url().await,
            Backend::MySql => testing::fresh_mysql_url().await,
        }
    }
}

/// A store on its own database. The store is declared first so that it (and its
/// pool) goes before the database is dropped.
struct Bench {
    store: Arc<dyn AuditStore>,
    _db: TestDatabase,
}

impl Bench {
    async fn open(backend: Backend) -> Bench {
        let db = backend.fresh().await;
        let store = auditlog_store::open(db.url()).await.unwrap();
        Bench { store, _db: db }
    }
}

/// A preloaded store and the queries asked of it.
struct Loaded {
    bench: Bench,
    by_actor: Vec<EventQuery>,
    by_target: Vec<EventQuery>,
}

fn users() -> ObjectType {
    ObjectType::parse("actorType", "users").unwrap()
}

fn notes() -> ObjectType {
    ObjectType::parse("targetType", "notes").unwrap()
}

/// Event number `i`: a user viewing a note, actors and targets round-robin, one
/// millisecond apart.
fn event(i: u64) -> DataEvent {
    let mut event = DataEvent::new(
        Action::Viewed,
        ObjectRef::new(users(), (i % ACTORS) as i64),
        ObjectRef::new(notes(), (i % TARGETS) as i64),
        START_MS + i as i64,
    );
    event.source = Some("api".to_owned());
    event
}

/// The `count` keys 0..count in a fixed scramble (a stride coprime with `count`).
fn scrambled(count: u64) -> impl Iterator<Item = u64> {
    (0..count).map(move |k| (k * 7_919) % count)
}

fn page_query(actor: Option<ObjectKey>, target: Option<ObjectKey>) -> EventQuery {
    EventQuery {
        actor,
        target,
        page_size: PAGE,
        ..EventQuery::default()
    }
}

async fn preload(backend: Backend, events: u64) -> Loaded {
    let bench = Bench::open(backend).await;
    let started = Instant::now();
    let mut next = 0;
    while next < events {
        let end = (next + PRELOAD_BATCH).min(events);
        let batch: Vec<DataEvent> = (next..end).map(event).collect();
        let outcome = bench.store.insert_batch(&batch).await.unwrap();
        assert_eq!(outcome.inserted, end - next);
        next = end;
    }
    let took = started.elapsed();
    println!(
        "store/{}: preloaded {events} events in {:.1} s ({:.0} events/s)",
        backend.name(),
        took.as_secs_f64(),
        events as f64 / took.as_secs_f64()
    );
    let key = |object_type: ObjectType, id: u64| ObjectKey {
        object_type,
        id: id.to_string(),
    };
    Loaded {
        by_actor: scrambled(ACTORS)
            .map(|a| page_query(Some(key(users(), a)), None))
            .collect(),
        by_target: scrambled(TARGETS)
            .map(|t| page_query(None, Some(key(notes(), t))))
            .collect(),
        bench,
    }
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

fn insert(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("store_insert");
    group.throughput(Throughput::Elements(INSERT_BATCH));
    group.sample_size(10);
    for backend in Backend::selected() {
        let bench: OnceCell<Bench> = OnceCell::new();
        let mut next = 0u64;
        group.bench_function(backend.name(), |b| {
            let store = &bench
                .get_or_init(|| rt.block_on(Bench::open(backend)))
                .store;
            b.to_async(&rt).iter_batched(
                || {
                    let batch: Vec<DataEvent> = (next..next + INSERT_BATCH).map(event).collect();
                    next += INSERT_BATCH;
                    batch
                },
                |batch| async move {
                    let outcome = store.insert_batch(&batch).await.unwrap();
                    assert_eq!(outcome.inserted, INSERT_BATCH);
                },
                BatchSize::PerIteration,
            );
        });
        // Pools are closed inside the runtime.
        let _entered = rt.enter();
        drop(bench);
    }
    group.finish();
}

fn seal(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("store_seal");
    group.throughput(Throughput::Elements(INSERT_BATCH));
    group.sample_size(10);
    for backend in Backend::selected() {
        let bench: OnceCell<Bench> = OnceCell::new();
        let next = AtomicU64::new(0);
        group.bench_function(backend.name(), |b| {
            let store = &bench
                .get_or_init(|| rt.block_on(Bench::open(backend)))
                .store;
            let next = &next;
            b.to_async(&rt).iter_custom(|iters| async move {
                let mut sealing = Duration::ZERO;
                for _ in 0..iters {
                    let first = next.fetch_add(INSERT_BATCH, Ordering::Relaxed);
                    let batch: Vec<DataEvent> = (first..first + INSERT_BATCH).map(event).collect();
                    store.insert_batch(&batch).await.unwrap();
                    let started = Instant::now();
                    let outcome = store.seal(INSERT_BATCH as u32).await.unwrap();
                    sealing += started.elapsed();
                    assert_eq!(outcome.sealed, INSERT_BATCH);
                }
                sealing
            });
        });
        let _entered = rt.enter();
        drop(bench);
    }
    group.finish();
}

fn query(c: &mut Criterion) {
    let rt = runtime();
    let events = if measuring() { PRELOAD } else { 10_000 };
    let mut group = c.benchmark_group("store_query");
    for backend in Backend::selected() {
        let loaded: OnceCell<Loaded> = OnceCell::new();
        let load = || rt.block_on(preload(backend, events));
        for (name, by_target) in [("by_actor", false), ("by_target", true)] {
            group.bench_function(format!("{}/{name}", backend.name()), |b| {
                let loaded = loaded.get_or_init(load);
                let store = &loaded.bench.store;
                let queries = if by_target {
                    &loaded.by_target
                } else {
                    &loaded.by_actor
                };
                let mut i = 0;
                b.to_async(&rt).iter(|| {
                    let query = &queries[i % queries.len()];
                    i += 1;
                    async move { store.query(query).await.unwrap() }
                });
            });
            if let Some(loaded) = loaded.get() {
                report_page_sizes(&rt, backend, name, loaded, by_target);
            }
        }
        let _entered = rt.enter();
        drop(loaded);
    }
    group.finish();
}

/// Prints how many events a first page holds, so the figures can be read right.
fn report_page_sizes(rt: &Runtime, backend: Backend, name: &str, loaded: &Loaded, by_target: bool) {
    let query = if by_target {
        &loaded.by_target[0]
    } else {
        &loaded.by_actor[0]
    };
    let page = rt.block_on(loaded.bench.store.query(query)).unwrap();
    println!(
        "store_query/{}/{name}: first page holds {} events",
        backend.name(),
        page.events.len()
    );
}

criterion_group!(benches, insert, seal, query);
criterion_main!(benches);
