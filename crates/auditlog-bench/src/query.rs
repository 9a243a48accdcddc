//! `auditlog bench query`: loads events spread over many actors and targets (a few
//! hot, most cold) and measures query latency through the store — first page and a
//! deep page, by actor, by target and by actor within a time range — at growing
//! store sizes, so that the growth curve is visible in one run.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use auditlog_event::{Action, Change, Changes, DataEvent, ObjectRef, ObjectType};
use auditlog_store::{AuditStore, EventQuery, ObjectKey};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use serde_json::json;

use crate::stats::percentiles;

/// What to run.
#[derive(Debug, Clone)]
pub struct QueryOptions {
    /// Store sizes to measure at, ascending; the store grows from one to the next.
    pub sizes: Vec<u64>,
    /// The store; a fresh SQLite file when absent. The run adds events to it.
    pub store_url: Option<String>,
    /// Queries per shape and size.
    pub samples: usize,
    pub progress: bool,
}

/// Latency of one query shape, in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct ShapeLatency {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub samples: usize,
}

/// Measurements at one store size.
#[derive(Debug, Clone, Serialize)]
pub struct QueryStep {
    pub events: u64,
    pub load_per_sec: f64,
    /// By shape: `actor_first_page`, `actor_deep_page`, `target_first_page`,
    /// `target_deep_page`, `actor_range_first_page`.
    pub shapes: BTreeMap<String, ShapeLatency>,
}

/// The whole run. Field names are stable across commits (`--json`).
#[derive(Debug, Clone, Serialize)]
pub struct QueryReport {
    pub store: String,
    pub page_size: u32,
    pub deep_page: usize,
    pub steps: Vec<QueryStep>,
}

const ACTORS: u64 = 10_000;
const HOT_ACTORS: u64 = 10;
const TARGETS: u64 = 1_000_000;
const HOT_TARGETS: u64 = 100;
/// Share of events done by (and to) the hot few, in percent.
const HOT_PERCENT: u64 = 30;
/// Events are spread over this many milliseconds (90 days).
const SPAN_MS: i64 = 90 * 24 * 3_600 * 1_000;
const BASE_MS: i64 = 1_700_000_000_000;
const PAGE_SIZE: u32 = 50;
/// The deep page measured is this many pages in.
const DEEP_PAGE: usize = 20;
const LOAD_BATCH: u64 = 10_000;

pub async fn run(options: QueryOptions) -> Result<QueryReport> {
    let mut sizes = options.sizes.clone();
    sizes.sort_unstable();
    sizes.dedup();
    let Some(&largest) = sizes.last() else {
        bail!("give at least one size with --events");
    };
    let scratch = tempfile::tempdir()?;
    let store_url = options
        .store_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", scratch.path().join("audit.db").display()));
    let store = auditlog_store::open(&store_url)
        .await
        .with_context(|| format!("while opening {}", auditlog_store::redact(&store_url)))?;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut loaded = 0;
    let mut steps = Vec::new();
    for size in sizes {
        let bar = bar(
            size - loaded,
            options.progress,
            &format!("loading to {size}"),
        );
        let started = Instant::now();
        while loaded < size {
            let count = LOAD_BATCH.min(size - loaded);
            let batch: Vec<DataEvent> = (loaded..loaded + count)
                .map(|n| event(&mut rng, n, largest))
                .collect();
            store.insert_batch(&batch).await?;
            loaded += count;
            bar.inc(count);
        }
        bar.finish_and_clear();
        let load_per_sec = size as f64 / started.elapsed().as_secs_f64().max(1e-9);
        let shapes = measure(&*store, &mut rng, options.samples, largest).await?;
        steps.push(QueryStep {
            events: size,
            load_per_sec,
            shapes,
        });
    }
    Ok(QueryReport {
        store: store_url
            .split_once(':')
            .map(|(scheme, _)| scheme.to_owned())
            .unwrap_or_default(),
        page_size: PAGE_SIZE,
        deep_page: DEEP_PAGE,
        steps,
    })
}

/// A small deterministic generator (xorshift), so every run loads the same data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A hot id (one of `hot`) `hot_percent` of the time, else any of `all`.
    fn skewed(&mut self, hot: u64, all: u64) -> u64 {
        if self.next() % 100 < HOT_PERCENT {
            self.next() % hot
        } else {
            self.next() % all
        }
    }
}

fn kind(name: &str) -> ObjectType {
    ObjectType::parse("actorType", name).unwrap_or_else(|_| unreachable!())
}

fn event(rng: &mut Rng, n: u64, largest: u64) -> DataEvent {
    let actor = rng.skewed(HOT_ACTORS, ACTORS) as i64;
    let target = rng.skewed(HOT_TARGETS, TARGETS) as i64;
    let timestamp = BASE_MS + (n as i128 * SPAN_MS as i128 / largest.max(1) as i128) as i64;
    let action = if n.is_multiple_of(3) {
        Action::Changed
    } else {
        Action::Viewed
    };
    let mut event = DataEvent::new(
        action,
        ObjectRef::new(kind("users"), actor),
        ObjectRef::new(kind("documents"), target),
        timestamp,
    );
    if action == Action::Changed {
        let mut changes = Changes::new();
        changes.insert(
            "status".into(),
            Change::new(json!("draft"), json!("published")),
        );
        event.changes = Some(changes);
    }
    event
}

fn key(object_type: &str, id: u64) -> ObjectKey {
    ObjectKey {
        object_type: kind(object_type),
        id: id.to_string(),
    }
}

async fn measure(
    store: &dyn AuditStore,
    rng: &mut Rng,
    samples: usize,
    largest: u64,
) -> Result<BTreeMap<String, ShapeLatency>> {
    let mut shapes = BTreeMap::new();
    let shape_queries: [(&str, MakeQuery, bool); 5] = [
        ("actor_first_page", |rng, _| by_actor(rng), false),
        ("actor_deep_page", |rng, _| hot_actor(rng), true),
        ("target_first_page", |rng, _| on_target(rng), false),
        ("target_deep_page", |rng, _| hot_target(rng), true),
        ("actor_range_first_page", actor_in_range, false),
    ];
    for (name, make, deep) in shape_queries {
        let mut micros = Vec::with_capacity(samples);
        for _ in 0..samples {
            let mut query = make(rng, largest);
            if deep {
                // Walk to the deep page untimed; time fetching it.
                for _ in 0..DEEP_PAGE {
                    match store.query(&query).await?.next {
                        Some(cursor) => query.after = Some(cursor),
                        None => break,
                    }
                }
            }
            let started = Instant::now();
            store.query(&query).await?;
            micros.push(started.elapsed().as_micros() as u64);
        }
        let p = percentiles(micros);
        shapes.insert(
            name.to_owned(),
            ShapeLatency {
                p50_ms: p.p50 as f64 / 1_000.0,
                p99_ms: p.p99 as f64 / 1_000.0,
                max_ms: p.max as f64 / 1_000.0,
                samples: p.count,
            },
        );
    }
    Ok(shapes)
}

/// Builds one sample query of a shape.
type MakeQuery = fn(&mut Rng, u64) -> EventQuery;

fn page() -> EventQuery {
    EventQuery {
        page_size: PAGE_SIZE,
        ..EventQuery::default()
    }
}

/// Half hot, half cold actors.
fn by_actor(rng: &mut Rng) -> EventQuery {
    let actor = if rng.next().is_multiple_of(2) {
        rng.next() % HOT_ACTORS
    } else {
        rng.next() % ACTORS
    };
    EventQuery {
        actor: Some(key("users", actor)),
        ..page()
    }
}

fn hot_actor(rng: &mut Rng) -> EventQuery {
    EventQuery {
        actor: Some(key("users", rng.next() % HOT_ACTORS)),
        ..page()
    }
}

fn on_target(rng: &mut Rng) -> EventQuery {
    let target = if rng.next().is_multiple_of(2) {
        rng.next() % HOT_TARGETS
    } else {
        rng.next() % TARGETS
    };
    EventQuery {
        target: Some(key("documents", target)),
        ..page()
    }
}

fn hot_target(rng: &mut Rng) -> EventQuery {
    EventQuery {
        target: Some(key("documents", rng.next() % HOT_TARGETS)),
        ..page()
    }
}

/// An actor's events within one day somewhere in the loaded span.
fn actor_in_range(rng: &mut Rng, _largest: u64) -> EventQuery {
    let day = 24 * 3_600 * 1_000;
    let since = BASE_MS + (rng.next() % 89) as i64 * day;
    EventQuery {
        since: Some(since),
        until: Some(since + day),
        ..by_actor(rng)
    }
}

fn bar(total: u64, visible: bool, what: &str) -> ProgressBar {
    if !visible {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{spinner}} {what} {{bar:40}} {{pos}}/{{len}} [{{elapsed}}, {{per_sec}}]"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

impl QueryReport {
    /// The human-readable table: one row per size, one column pair per shape.
    pub fn table(&self) -> String {
        let mut out = format!(
            "query latency ({} store, pages of {}, deep page = page {}), p50 / p99 ms\n",
            self.store, self.page_size, self.deep_page
        );
        let names: Vec<String> = self
            .steps
            .first()
            .map(|step| step.shapes.keys().cloned().collect())
            .unwrap_or_default();
        out.push_str(&format!("{:>12}", "events"));
        for name in &names {
            out.push_str(&format!("  {name:>24}"));
        }
        out.push('\n');
        for step in &self.steps {
            out.push_str(&format!("{:>12}", step.events));
            for name in &names {
                let cell = step
                    .shapes
                    .get(name)
                    .map(|s| format!("{:.2} / {:.2}", s.p50_ms, s.p99_ms))
                    .unwrap_or_default();
                out.push_str(&format!("  {cell:>24}"));
            }
            out.push('\n');
        }
        out
    }
}
