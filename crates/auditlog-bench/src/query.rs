//! `auditlog bench query`: loads events spread over many actors and targets (a few
//! hot, most cold) and measures query latency through the store — first page and a
//! deep page, by actor, by target and by actor within a time range — at growing
//! store sizes, so that the growth curve is visible in one run.
//!
//! After each step's load the auditor's real [`Sealer`] seals everything loaded
//! (the catch-up rate of a sealer behind a large backlog) and signs it; the log's
//! proofs are then timed at that size as the auditor's routes make them from the
//! store, and each proof is checked against the signed checkpoint.
//!
//! With `--http` ([`crate::query_http`]) the same shapes are then asked over HTTP,
//! of the auditor and through the primary API's proxy, at the largest size only:
//! every read adds its `audit.read` event, so a store measured over HTTP is no
//! longer the size the next step would load to.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use auditlog_auditor::log::{LogIdentity, Sealer, SealerStatus, plan_hashes, root_at};
use auditlog_event::{Action, Change, Changes, DataEvent, ObjectRef, ObjectType};
use auditlog_store::{AuditStore, EventQuery, ObjectKey};
use auditlog_tlog::{
    Checkpoint, Hash, Plan, SignedNote, Verifier, leaf_hash, verify_consistency, verify_inclusion,
};
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
    /// The shapes over HTTP too, at the largest size.
    pub http: Option<crate::query_http::HttpOptions>,
}

/// Latency of one query shape, in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct ShapeLatency {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub samples: usize,
    /// The page timed (1 is the first). For the deep shapes, the shallowest page
    /// any sample reached: below [`QueryReport::deep_page`] when some actor or
    /// target had fewer pages than that. None (and absent from `--json`) for the
    /// proofs, which have no pages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page: Option<usize>,
}

/// Measurements at one store size.
#[derive(Debug, Clone, Serialize)]
pub struct QueryStep {
    pub events: u64,
    /// Events loaded in this step (from the previous size up to `events`).
    pub loaded: u64,
    /// Seconds this step's loading took.
    pub load_seconds: f64,
    /// `loaded / load_seconds`: this step's rows only, not the store's total.
    pub load_per_sec: f64,
    /// Leaves the sealer appended after this step's load (its rows), the seconds
    /// that took including the checkpoints it signed, and `sealed / seal_seconds`.
    pub sealed: u64,
    pub seal_seconds: f64,
    pub seal_per_sec: f64,
    /// By shape: `actor_first_page`, `actor_deep_page`, `target_first_page`,
    /// `target_deep_page`, `actor_range_first_page`, `tenant_first_page` (a
    /// tenant with one event in a thousand), `new_tenant_first_page` (a tenant
    /// with none), and the log's
    /// `inclusion_proof` (of a random sealed event, by id, in the tree of the
    /// latest checkpoint) and `consistency_proof` (from a random older size to
    /// that checkpoint's).
    pub shapes: BTreeMap<String, ShapeLatency>,
}

/// The whole run. Field names are stable across commits (`--json`).
#[derive(Debug, Clone, Serialize)]
pub struct QueryReport {
    pub store: String,
    pub page_size: u32,
    /// The page the deep shapes ask for (1 is the first), reached by following
    /// cursors; each shape's [`ShapeLatency::page`] says which page it reached.
    pub deep_page: usize,
    pub steps: Vec<QueryStep>,
    /// The shapes over HTTP at the largest size (`--http`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<crate::query_http::HttpReport>,
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
/// The one tenant besides the default, with one event in [`SMALL_TENANT_EVERY`]:
/// a small customer in a large shared store.
const SMALL_TENANT: &str = "acme";
const SMALL_TENANT_EVERY: u64 = 1_000;
/// A tenant with no events yet.
const NEW_TENANT: &str = "new";
/// The deep page measured: page 21 (1 is the first), 20 cursors in.
const DEEP_PAGE: usize = 21;
const LOAD_BATCH: u64 = 10_000;
/// The shapes that time the log's proofs, not a query.
const PROOF_SHAPES: [&str; 2] = ["inclusion_proof", "consistency_proof"];

pub async fn run(options: QueryOptions) -> Result<QueryReport> {
    let mut sizes = options.sizes.clone();
    sizes.sort_unstable();
    sizes.dedup();
    let Some(&largest) = sizes.last() else {
        bail!("give at least one size with --events");
    };
    let scratch = tempfile::tempdir()?;
    let (store_url, store) =
        crate::open_store(options.store_url.as_deref(), scratch.path()).await?;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    // The proofs draw from their own generator, so that the data loaded and the
    // queries asked are the same as in runs without them.
    let mut proof_rng = Rng(0x2545_f491_4f6c_dd1d);
    let identity = LogIdentity::open(scratch.path(), None, None)
        .context("while creating the run's checkpoint key")?;
    let verifier = identity.verifier().clone();
    let mut sealer = Sealer::new(store.clone(), identity, SealerStatus::default());
    let mut loaded = 0;
    let mut steps = Vec::new();
    for size in sizes {
        let bar = bar(
            size - loaded,
            options.progress,
            &format!("loading to {size}"),
        );
        let from = loaded;
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
        let load_seconds = started.elapsed().as_secs_f64().max(1e-9);
        let sealing = Instant::now();
        let sealed = seal_all(&mut sealer, &*store).await?;
        let seal_seconds = sealing.elapsed().as_secs_f64().max(1e-9);
        let mut shapes = measure(&*store, &mut rng, options.samples, largest).await?;
        shapes.extend(measure_proofs(&*store, &verifier, &mut proof_rng, options.samples).await?);
        steps.push(QueryStep {
            events: size,
            loaded: loaded - from,
            load_seconds,
            load_per_sec: (loaded - from) as f64 / load_seconds,
            sealed,
            seal_seconds,
            seal_per_sec: sealed as f64 / seal_seconds,
            shapes,
        });
    }
    let http = match &options.http {
        Some(http) => {
            // A generator of its own, so the store-only figures stay those of runs
            // without --http.
            let shapes = http_shapes(&*store, &mut Rng(0x6a09_e667_f3bc_c908), largest).await?;
            Some(
                crate::query_http::run(
                    http,
                    &store,
                    scratch.path(),
                    &store_url,
                    &shapes,
                    options.progress,
                )
                .await?,
            )
        }
        None => None,
    };
    Ok(QueryReport {
        http,
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
    if n % SMALL_TENANT_EVERY == 7 {
        event.set_tenant(SMALL_TENANT);
    }
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
    for (name, make, deep) in SHAPES.into_iter().chain(TENANT_SHAPES) {
        let mut micros = Vec::with_capacity(samples);
        let mut page = if deep { DEEP_PAGE } else { 1 };
        for _ in 0..samples {
            let mut query = make(rng, largest);
            if deep {
                // Walk to the deep page untimed; time fetching it.
                let reached;
                (query, reached) = walk_to(store, query, DEEP_PAGE).await?;
                page = page.min(reached);
            }
            let started = Instant::now();
            store.query(&query).await?;
            micros.push(started.elapsed().as_micros() as u64);
        }
        shapes.insert(name.to_owned(), latency(micros, Some(page)));
    }
    Ok(shapes)
}

/// The queries of every shape, made as [`measure`] makes them (the deep pages'
/// cursors found by walking the store), and the paths they are asked by.
async fn http_shapes(
    store: &dyn AuditStore,
    rng: &mut Rng,
    largest: u64,
) -> Result<Vec<crate::query_http::ShapePaths>> {
    let mut shapes = Vec::new();
    for (name, make, deep) in SHAPES {
        let mut queries = Vec::with_capacity(crate::query_http::PATHS_PER_SHAPE);
        let mut paths = Vec::with_capacity(crate::query_http::PATHS_PER_SHAPE);
        for _ in 0..crate::query_http::PATHS_PER_SHAPE {
            let mut query = make(rng, largest);
            if deep {
                (query, _) = walk_to(store, query, DEEP_PAGE).await?;
            }
            paths.push(crate::query_http::path_of(&query)?);
            queries.push(query);
        }
        shapes.push(crate::query_http::ShapePaths {
            name,
            queries,
            paths,
        });
    }
    Ok(shapes)
}

fn latency(micros: Vec<u64>, page: Option<usize>) -> ShapeLatency {
    let p = percentiles(micros);
    ShapeLatency {
        p50_ms: p.p50 as f64 / 1_000.0,
        p99_ms: p.p99 as f64 / 1_000.0,
        max_ms: p.max as f64 / 1_000.0,
        samples: p.count,
        page,
    }
}

/// Seals everything stored with the auditor's sealer, round after round (each
/// signs a checkpoint), until a round finds nothing new; the leaves it added.
async fn seal_all(sealer: &mut Sealer, store: &dyn AuditStore) -> Result<u64> {
    let before = store.tree_size().await?;
    let mut size = before;
    loop {
        let now = sealer
            .round()
            .await
            .context("while sealing the loaded events")?;
        if now == size {
            return Ok(size - before);
        }
        size = now;
    }
}

/// The log's proofs at the latest checkpoint, each timed as its route makes it
/// from the store and checked, untimed, against the checkpoint's signed root: a
/// proof that does not verify fails the run.
///
/// - `inclusion_proof`: a random sealed event, by id: `leaf_of(id)`,
///   `Plan::inclusion(index, size)` and `plan_hashes`.
/// - `consistency_proof`: from a random size up to the checkpoint's:
///   `Plan::consistency(from, size)` and `plan_hashes`.
async fn measure_proofs(
    store: &dyn AuditStore,
    verifier: &Verifier,
    rng: &mut Rng,
    samples: usize,
) -> Result<BTreeMap<String, ShapeLatency>> {
    let checkpoint = store
        .latest_checkpoint()
        .await?
        .context("no checkpoint was signed over the loaded events")?;
    let (size, root) = signed(&checkpoint.note, verifier)?;
    if size == 0 {
        bail!("the latest checkpoint signs an empty tree");
    }
    let mut inclusion = Vec::with_capacity(samples);
    for _ in 0..samples {
        let index = rng.next() % size;
        let id = store
            .leaves(index, index + 1)
            .await?
            .first()
            .map(|leaf| leaf.entry.id)
            .with_context(|| format!("leaf {index} has no event"))?;
        let started = Instant::now();
        let leaf = store
            .leaf_of(id)
            .await?
            .with_context(|| format!("event {id} of leaf {index} is not sealed"))?;
        let plan = Plan::inclusion(leaf.entry.index, size)?;
        let proof = plan_hashes(store, &plan).await?;
        inclusion.push(started.elapsed().as_micros() as u64);
        let hash = leaf_hash(leaf.bytes.as_bytes());
        if !verify_inclusion(leaf.entry.index, size, &hash, &proof, &root) {
            bail!(
                "the inclusion proof of event {id} (leaf {}) in the signed tree of {size} \
                 leaves does not verify",
                leaf.entry.index
            );
        }
    }
    let mut consistency = Vec::with_capacity(samples);
    for _ in 0..samples {
        let from = 1 + rng.next() % size;
        let from_root = root_at(store, from).await?;
        let started = Instant::now();
        let plan = Plan::consistency(from, size)?;
        let proof = plan_hashes(store, &plan).await?;
        consistency.push(started.elapsed().as_micros() as u64);
        if !verify_consistency(from, size, &from_root, &root, &proof) {
            bail!(
                "the consistency proof from {from} to the signed tree of {size} leaves does \
                 not verify"
            );
        }
    }
    Ok(BTreeMap::from([
        (PROOF_SHAPES[0].to_owned(), latency(inclusion, None)),
        (PROOF_SHAPES[1].to_owned(), latency(consistency, None)),
    ]))
}

/// The size and root of a checkpoint note, once its signature is `verifier`'s.
fn signed(note: &str, verifier: &Verifier) -> Result<(u64, Hash)> {
    let note = SignedNote::parse(note)?;
    if !note.verified_by(verifier) {
        bail!("the latest checkpoint is not signed by the run's key");
    }
    let checkpoint = Checkpoint::parse(&note.text)?;
    Ok((checkpoint.size, checkpoint.root))
}

/// `query` moved on to its page `page` (1 is the first) by following cursors,
/// untimed, and the page it got to: an earlier one when the results end before.
async fn walk_to(
    store: &dyn AuditStore,
    mut query: EventQuery,
    page: usize,
) -> Result<(EventQuery, usize)> {
    let mut reached = 1;
    while reached < page {
        match store.query(&query).await?.next {
            Some(cursor) => {
                query.after = Some(cursor);
                reached += 1;
            }
            None => break,
        }
    }
    Ok((query, reached))
}

/// Builds one sample query of a shape.
type MakeQuery = fn(&mut Rng, u64) -> EventQuery;

/// The query shapes: name, how a sample is made, and whether it is timed at
/// [`DEEP_PAGE`] rather than on the first page.
const SHAPES: [(&str, MakeQuery, bool); 5] = [
    ("actor_first_page", |rng, _| by_actor(rng), false),
    ("actor_deep_page", |rng, _| hot_actor(rng), true),
    ("target_first_page", |rng, _| on_target(rng), false),
    ("target_deep_page", |rng, _| hot_target(rng), true),
    ("actor_range_first_page", actor_in_range, false),
];

/// Shapes timed on the store only (`--http` asks the shapes above): a small
/// tenant's first page, and a new tenant's, which has no events.
const TENANT_SHAPES: [(&str, MakeQuery, bool); 2] = [
    ("tenant_first_page", |_, _| in_tenant(SMALL_TENANT), false),
    ("new_tenant_first_page", |_, _| in_tenant(NEW_TENANT), false),
];

fn in_tenant(tenant: &str) -> EventQuery {
    EventQuery {
        tenant: Some(tenant.to_owned()),
        ..page()
    }
}

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
            .map(|step| {
                step.shapes
                    .keys()
                    .filter(|name| !PROOF_SHAPES.contains(&name.as_str()))
                    .cloned()
                    .collect()
            })
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
                    .map(|s| {
                        // A deep shape that ran out of pages says which it timed.
                        let reached = match s.page {
                            Some(page) if name.contains("deep") && page < self.deep_page => {
                                format!(" (page {page})")
                            }
                            _ => String::new(),
                        };
                        format!("{:.2} / {:.2}{reached}", s.p50_ms, s.p99_ms)
                    })
                    .unwrap_or_default();
                out.push_str(&format!("  {cell:>24}"));
            }
            out.push('\n');
        }
        out.push_str(&format!(
            "\nthe verifiable log (sealed after each load), proofs p50 / p99 ms\n{:>12}  {:>16}  {:>24}  {:>24}\n",
            "events", "sealed/s", PROOF_SHAPES[0], PROOF_SHAPES[1]
        ));
        for step in &self.steps {
            let cell = |name: &str| {
                step.shapes
                    .get(name)
                    .map(|s| format!("{:.2} / {:.2}", s.p50_ms, s.p99_ms))
                    .unwrap_or_default()
            };
            out.push_str(&format!(
                "{:>12}  {:>16}  {:>24}  {:>24}\n",
                step.events,
                crate::per_sec(step.seal_per_sec),
                cell(PROOF_SHAPES[0]),
                cell(PROOF_SHAPES[1])
            ));
        }
        if let Some(http) = &self.http {
            let last = self.steps.last();
            out.push_str(&http.table(&|shape| {
                last.and_then(|step| step.shapes.get(shape))
                    .map(|s| format!("{:.2} / {:.2}", s.p50_ms, s.p99_ms))
                    .unwrap_or_default()
            }));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(sizes: Vec<u64>) -> QueryOptions {
        QueryOptions {
            sizes,
            store_url: None,
            samples: 3,
            progress: false,
            http: None,
        }
    }

    #[tokio::test]
    async fn each_steps_load_rate_counts_only_the_rows_that_step_loaded() {
        let report = run(options(vec![300, 1_000])).await.unwrap();

        let loaded: Vec<u64> = report.steps.iter().map(|s| s.loaded).collect();
        assert_eq!(loaded, [300, 700]);
        for step in &report.steps {
            let rows = step.load_per_sec * step.load_seconds;
            assert!(
                (rows - step.loaded as f64).abs() < 0.5,
                "{} events: {} /s over {} s is {rows} rows, not {}",
                step.events,
                step.load_per_sec,
                step.load_seconds,
                step.loaded
            );
        }
    }

    #[tokio::test]
    async fn each_step_seals_what_it_loaded_and_times_the_proofs_at_its_size() {
        let report = run(options(vec![300, 1_000])).await.unwrap();

        let sealed: Vec<u64> = report.steps.iter().map(|s| s.sealed).collect();
        assert_eq!(sealed, [300, 700]);
        for step in &report.steps {
            assert!(step.seal_per_sec > 0.0 && step.seal_seconds > 0.0);
            for name in PROOF_SHAPES {
                let shape = &step.shapes[name];
                assert_eq!(shape.samples, 3, "{name} at {}", step.events);
                assert!(shape.p50_ms <= shape.p99_ms && shape.p99_ms <= shape.max_ms);
                assert_eq!(shape.page, None, "a proof has no page");
            }
        }
        let json = serde_json::to_value(&report).unwrap();
        let shapes = &json["steps"][1]["shapes"];
        assert!(shapes["inclusion_proof"].get("page").is_none());
        assert_eq!(shapes["actor_first_page"]["page"], 1);
        assert!(report.table().contains("inclusion_proof"));
    }

    #[tokio::test]
    async fn a_proof_that_does_not_verify_fails_the_run() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("audit.db").display());
        let store = auditlog_store::open(&url).await.unwrap();
        let mut rng = Rng(7);
        let events: Vec<DataEvent> = (0..40).map(|n| event(&mut rng, n, 40)).collect();
        store.insert_batch(&events).await.unwrap();
        let identity = LogIdentity::open(dir.path(), None, None).unwrap();
        let verifier = identity.verifier().clone();
        let mut sealer = Sealer::new(store.clone(), identity, SealerStatus::default());
        assert_eq!(seal_all(&mut sealer, &*store).await.unwrap(), 40);
        // The row of every leaf changed behind the sealer's back: its leaf's bytes
        // no longer hash to the stored leaf hash the proofs are made of.
        rewrite_every_row(dir.path());

        let outcome = measure_proofs(&*store, &verifier, &mut Rng(3), 5).await;

        let err = outcome.unwrap_err().to_string();
        assert!(err.contains("does not verify"), "{err}");
    }

    /// Rewrites every event's body with the `sqlite3` tool, as someone editing the
    /// database directly would.
    fn rewrite_every_row(dir: &std::path::Path) {
        let status = std::process::Command::new("sqlite3")
            .arg(dir.join("audit.db"))
            .arg(r#"UPDATE audit_events SET body = replace(body, '"id":', '"id" :')"#)
            .status()
            .unwrap();
        assert!(status.success());
    }

    #[tokio::test]
    async fn a_deep_page_is_the_page_it_says_or_the_last_one_reached() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("audit.db").display());
        let store = auditlog_store::open(&url).await.unwrap();
        let mut rng = Rng(7);
        // One actor, 1 200 events, newest first: pages of 50, 24 of them.
        let events: Vec<DataEvent> = (0..1_200)
            .map(|n| {
                let mut e = event(&mut rng, n, 1_200);
                e.actor_id = 1.into();
                e
            })
            .collect();
        store.insert_batch(&events).await.unwrap();
        let query = EventQuery {
            actor: Some(key("users", 1)),
            ..page()
        };

        let (deep, reached) = walk_to(&*store, query.clone(), DEEP_PAGE).await.unwrap();
        let (short, reached_short) = walk_to(&*store, query, 30).await.unwrap();

        assert_eq!(reached, DEEP_PAGE);
        // Newest first, page N starts after N - 1 pages of 50.
        let first = &store.query(&deep).await.unwrap().events[0];
        assert_eq!(first.id, events[1_199 - (DEEP_PAGE - 1) * 50].id);
        assert_eq!(reached_short, 24, "only 24 pages exist");
        assert_eq!(store.query(&short).await.unwrap().events.len(), 50);
    }
}
