//! `auditlog verify`: checks the verifiable log.
//!
//! - **Local** (`--data-dir`, `--store-url`): recomputes every leaf from its row (all
//!   columns: the leaf hash from the body, `seq` and `received_at`, and each indexed
//!   column from the body), names every event altered, removed, inserted or
//!   reordered behind the auditor's back, checks the stored tree's nodes against its
//!   leaves, and checks every checkpoint — those in the store and those in the
//!   journal kept beside the key — for its signature (with the data directory's log
//!   keys) and its root (against the tree recomputed from the rows). A rewrite that
//!   recomputed the whole tree is caught there: the first checkpoint that no longer
//!   matches names the events signed since the one before. A sealed event whose
//!   row retention pruned (recorded in `audit_pruned`) counts as pruned, not
//!   removed: its stored leaf hash stands for it.
//! - **Witness** (`--url … --checkpoint FILE`, in `witness.rs`): fetches the latest
//!   checkpoint, checks its signature against a pinned key and its consistency with
//!   the checkpoint saved in FILE, then saves it.
//!
//! Rows and leaves are read page by page and merged as two streams sorted by `seq`,
//! so memory stays flat however large the store; only the findings are kept.

pub(crate) mod witness;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use auditlog_auditor::log::identity::{journal_entries, trusted_keys};
use auditlog_store::{AuditStore, EventRow, LeafEntry, Read, column_mismatches};
use auditlog_tlog::{Checkpoint, Frontier, Hash, Node, SignedNote, Verifier, base64, leaf_hash};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use uuid::Uuid;

use crate::VerifyArgs;

/// Rows and leaves read per statement.
const PAGE: u32 = 1_000;

/// Findings kept in memory at most; beyond that they are only counted.
const MAX_FINDINGS: usize = 1_000_000;

/// Events named at most when a checkpoint no longer matches.
const NAMED_PER_CHECKPOINT: usize = 100;

pub async fn run(args: VerifyArgs) -> Result<()> {
    if let Some(url) = &args.url {
        return witness::run(url, &args).await;
    }
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("auditlog-data"));
    let url = match &args.store_url {
        Some(url) => url.clone(),
        None => {
            let file = data_dir.join("audit.db");
            if !file.exists() {
                bail!(
                    "there is no audit store at {}; pass --data-dir, --store-url or --url",
                    file.display()
                );
            }
            format!("sqlite://{}", file.display())
        }
    };
    let store = auditlog_store::open(&url).await.with_context(|| {
        format!(
            "while opening the audit store {}",
            auditlog_store::redact(&url)
        )
    })?;
    let keys = trusted_keys(&data_dir)
        .with_context(|| format!("while reading the log keys in {}", data_dir.display()))?;
    let journal = journal_entries(&data_dir).with_context(|| {
        format!(
            "while reading the checkpoint journal in {}",
            data_dir.display()
        )
    })?;

    let total = store
        .tree_size()
        .await
        .context("while reading the tree's size")?;
    let bar = if args.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(total)
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} verifying {bar:40} {pos}/{len} leaves [{elapsed}, {per_sec}]",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let report = verify(&*store, &keys, &journal, &bar).await?;
    bar.finish_and_clear();

    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", report.text());
    }
    if report.problems > 0 {
        bail!(
            "the audit log fails verification: {} problem(s) found",
            report.problems
        );
    }
    Ok(())
}

/// What went wrong with one event, the tree or a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Kind {
    /// The row of a sealed event is not what was sealed (body, `seq`, receive
    /// time), or a column disagrees with its body.
    Altered,
    /// A sealed event has no row any more.
    Removed,
    /// A row at or below the last sealed `seq` that was never sealed.
    Inserted,
    /// A sealed `seq` now holds another event, or the leaves are out of order.
    Reordered,
    /// The stored tree does not hold together (nodes that are not their leaves'
    /// hash, a gap in the leaf indexes).
    Tree,
    /// A checkpoint that does not verify, or whose root the rows no longer give.
    Checkpoint,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Altered => "altered",
            Kind::Removed => "removed",
            Kind::Inserted => "inserted",
            Kind::Reordered => "reordered",
            Kind::Tree => "tree",
            Kind::Checkpoint => "checkpoint",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    pub kind: Kind,
    /// The event concerned, when one can be named.
    pub id: Option<Uuid>,
    /// The event's `seq`, when it has one.
    pub seq: Option<i64>,
    /// The event's leaf index, when it has one.
    pub leaf: Option<u64>,
    pub detail: String,
}

/// One checkpoint and what became of checking it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointReport {
    pub size: u64,
    pub root: String,
    /// `store`, `journal` or `store+journal`.
    pub kept_in: String,
    /// Whether a key of the data directory signed it (`None`: no key to check with).
    pub signature_valid: Option<bool>,
    /// Whether the tree recomputed from the rows has this root at this size.
    pub matches_rows: bool,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Rows of `audit_events` read.
    pub rows: u64,
    /// Leaves in the tree when verification started.
    pub sealed: u64,
    /// Rows after the last sealed one: not yet sealed, not an error.
    pub unsealed: u64,
    /// Sealed events whose rows retention pruned: their leaves stay in the tree
    /// (and every checkpoint still covers them), their payload is gone on
    /// purpose. Not an error.
    pub pruned: u64,
    /// Keys the signatures were checked with.
    pub keys: Vec<String>,
    pub checkpoints: Vec<CheckpointReport>,
    /// Every problem, including those beyond [`MAX_FINDINGS`].
    pub problems: u64,
    pub findings: Vec<Finding>,
    pub ok: bool,
}

impl Report {
    fn text(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        for f in &self.findings {
            let id = f.id.map_or_else(|| "-".repeat(36), |id| id.to_string());
            let place = match (f.seq, f.leaf) {
                (_, Some(leaf)) => format!("leaf {leaf}"),
                (Some(seq), None) => format!("seq {seq}"),
                (None, None) => String::new(),
            };
            let _ = writeln!(out, "{:<10} {id}  {place:<12} {}", f.kind.label(), f.detail);
        }
        if self.problems > self.findings.len() as u64 {
            let _ = writeln!(
                out,
                "… and {} more problems not listed",
                self.problems - self.findings.len() as u64
            );
        }
        let _ = writeln!(
            out,
            "{} rows checked; {} sealed in the tree; {} not yet sealed; {} pruned by retention \
             (leaves kept)",
            self.rows, self.sealed, self.unsealed, self.pruned
        );
        let valid = self
            .checkpoints
            .iter()
            .filter(|c| c.signature_valid == Some(true) && c.matches_rows)
            .count();
        match self.checkpoints.last() {
            None => {
                let _ = writeln!(out, "no checkpoint signed yet");
            }
            Some(latest) => {
                let _ = writeln!(
                    out,
                    "{} checkpoints, {valid} verified; latest: size {} root {}",
                    self.checkpoints.len(),
                    latest.size,
                    latest.root
                );
            }
        }
        if self.keys.is_empty() {
            let _ = writeln!(
                out,
                "signatures NOT checked: no log key in the data directory (pass --data-dir)"
            );
        }
        let _ = writeln!(
            out,
            "{}",
            if self.ok {
                "OK: no event was altered, removed, reordered or inserted".to_owned()
            } else {
                format!("FAILED: {} problem(s)", self.problems)
            }
        );
        out
    }
}

/// A signed checkpoint from the store or the journal.
#[derive(Debug, Clone)]
struct Known {
    checkpoint: Checkpoint,
    kept_in: &'static str,
    signature_valid: Option<bool>,
}

/// Walks the rows, the leaves and the checkpoints of `store`, with the log keys
/// `keys` and the checkpoints of the key's `journal`.
pub async fn verify(
    store: &dyn AuditStore,
    keys: &[Verifier],
    journal: &[(Checkpoint, String)],
    bar: &ProgressBar,
) -> Result<Report> {
    // Fixed first: what is sealed while this runs is left for the next run.
    let size = store.tree_size().await?;
    let mut walk = Walk::new(size);
    for checkpoint in checkpoints(store, keys, journal, &mut walk).await? {
        walk.expect(checkpoint);
    }
    let mut rows: VecDeque<EventRow> = VecDeque::new();
    let mut rows_done = false;
    let mut row_after = 0;
    let mut next_leaf = 0_u64;
    loop {
        let leaves = if next_leaf < size {
            let limit = PAGE.min(u32::try_from(size - next_leaf).unwrap_or(PAGE));
            store.leaf_entries(next_leaf, limit).await?
        } else {
            Vec::new()
        };
        if let Some(last) = leaves.last() {
            next_leaf = last.index + 1;
        }
        let leaves_done = leaves.is_empty();
        let pruned: BTreeSet<u64> = match (leaves.first(), leaves.last()) {
            (Some(first), Some(last)) => store
                .pruned_leaves(first.index, last.index + 1)
                .await?
                .into_iter()
                .collect(),
            _ => BTreeSet::new(),
        };
        for leaf in leaves {
            // Rows up to this leaf's seq.
            while !rows_done && rows.back().is_none_or(|row| row.seq < leaf.seq) {
                let page = store.rows_after(row_after, PAGE).await?;
                match page.last() {
                    Some(last) => row_after = last.seq,
                    None => rows_done = true,
                }
                rows.extend(page);
            }
            while rows.front().is_some_and(|row| row.seq < leaf.seq) {
                if let Some(row) = rows.pop_front() {
                    walk.row_alone(&row, true);
                }
            }
            let row = rows.front().filter(|row| row.seq == leaf.seq).cloned();
            if row.is_some() {
                rows.pop_front();
            }
            walk.leaf(&leaf, row.as_ref(), pruned.contains(&leaf.index));
            bar.set_position(walk.leaves_seen);
        }
        if leaves_done {
            break;
        }
    }
    walk.check_nodes(store).await?;
    // Rows after the last leaf: unsealed.
    loop {
        for row in rows.drain(..) {
            walk.row_alone(&row, false);
        }
        if rows_done {
            break;
        }
        let page = store.rows_after(row_after, PAGE).await?;
        match page.last() {
            Some(last) => row_after = last.seq,
            None => rows_done = true,
        }
        rows.extend(page);
    }
    Ok(walk.finish(keys))
}

/// Every checkpoint of the store and the journal, by size; signature problems and
/// disagreements between the two copies are reported on `walk`.
async fn checkpoints(
    store: &dyn AuditStore,
    keys: &[Verifier],
    journal: &[(Checkpoint, String)],
    walk: &mut Walk,
) -> Result<Vec<Known>> {
    let signed = |note: &str| -> (Option<Checkpoint>, Option<bool>) {
        let Ok(parsed) = SignedNote::parse(note) else {
            return (None, Some(false));
        };
        let valid = (!keys.is_empty()).then(|| keys.iter().any(|key| parsed.verified_by(key)));
        (Checkpoint::parse(&parsed.text).ok(), valid)
    };
    let mut by_size: BTreeMap<u64, Known> = BTreeMap::new();
    let mut after = 0;
    loop {
        let page = store.checkpoints_after(after, PAGE).await?;
        let Some(last) = page.last() else {
            break;
        };
        after = last.size;
        for stored in page {
            match signed(&stored.note) {
                (Some(checkpoint), valid) if checkpoint.size == stored.size => {
                    if valid == Some(false) {
                        walk.report(
                            Kind::Checkpoint,
                            None,
                            format!(
                                "the store's checkpoint of size {} does not verify with the log's \
                                 keys: altered or forged",
                                stored.size
                            ),
                        );
                    }
                    by_size.insert(
                        stored.size,
                        Known {
                            checkpoint,
                            kept_in: "store",
                            signature_valid: valid,
                        },
                    );
                }
                _ => walk.report(
                    Kind::Checkpoint,
                    None,
                    format!(
                        "the store's checkpoint of size {} is not a valid note",
                        stored.size
                    ),
                ),
            }
        }
    }
    for (checkpoint, note) in journal {
        let (_, valid) = signed(note);
        if valid == Some(false) {
            walk.report(
                Kind::Checkpoint,
                None,
                format!(
                    "the journal's checkpoint of size {} does not verify with the log's keys",
                    checkpoint.size
                ),
            );
        }
        match by_size.get_mut(&checkpoint.size) {
            Some(stored) if stored.checkpoint == *checkpoint => stored.kept_in = "store+journal",
            Some(stored) => {
                walk.report(
                    Kind::Checkpoint,
                    None,
                    format!(
                        "the store's checkpoint of size {} has root {}, the journal beside the key \
                         has {}",
                        checkpoint.size,
                        base64(&stored.checkpoint.root),
                        base64(&checkpoint.root)
                    ),
                );
                // The journal is the copy an attacker of the database cannot touch.
                *stored = Known {
                    checkpoint: checkpoint.clone(),
                    kept_in: "journal",
                    signature_valid: valid,
                };
            }
            None => {
                by_size.insert(
                    checkpoint.size,
                    Known {
                        checkpoint: checkpoint.clone(),
                        kept_in: "journal",
                        signature_valid: valid,
                    },
                );
            }
        }
    }
    Ok(by_size.into_values().collect())
}

/// The state of the merge: findings, the tree rebuilt from the rows, and what
/// each checkpoint expects of it.
struct Walk {
    size: u64,
    rows: u64,
    unsealed: u64,
    pruned: u64,
    leaves_seen: u64,
    last_sealed_seq: i64,
    /// The tree of the leaves as the rows give them now.
    rebuilt: Frontier,
    /// The tree of the stored leaf hashes, whose completed nodes must be stored.
    stored: Frontier,
    completed: Vec<(Node, Hash)>,
    /// Checkpoints not reached yet, by size.
    expected: VecDeque<Known>,
    reports: Vec<CheckpointReport>,
    /// The leaves since the last checkpoint that matched: the suspects when the
    /// next one does not.
    since_match: Vec<(u64, Uuid)>,
    /// Whether a checkpoint has already failed to match (later ones then do too).
    mismatched: bool,
    problems: u64,
    findings: Vec<Finding>,
}

impl Walk {
    fn new(size: u64) -> Self {
        Walk {
            size,
            rows: 0,
            unsealed: 0,
            pruned: 0,
            leaves_seen: 0,
            last_sealed_seq: 0,
            rebuilt: Frontier::default(),
            stored: Frontier::default(),
            completed: Vec::new(),
            expected: VecDeque::new(),
            reports: Vec::new(),
            since_match: Vec::new(),
            mismatched: false,
            problems: 0,
            findings: Vec::new(),
        }
    }

    fn expect(&mut self, known: Known) {
        self.expected.push_back(known);
    }

    fn report(&mut self, kind: Kind, id: Option<Uuid>, detail: String) {
        self.report_at(kind, id, None, None, detail);
    }

    fn report_at(
        &mut self,
        kind: Kind,
        id: Option<Uuid>,
        seq: Option<i64>,
        leaf: Option<u64>,
        detail: String,
    ) {
        self.problems += 1;
        if self.findings.len() < MAX_FINDINGS {
            self.findings.push(Finding {
                kind,
                id,
                seq,
                leaf,
                detail,
            });
        }
    }

    /// A row with no leaf at its `seq`: inserted behind the auditor's back when the
    /// tree has sealed past it, else simply not sealed yet.
    fn row_alone(&mut self, row: &EventRow, sealed_past: bool) {
        self.rows += 1;
        if sealed_past || row.seq <= self.last_sealed_seq {
            self.report_at(
                Kind::Inserted,
                Some(row.id),
                Some(row.seq),
                None,
                "a row the tree does not hold, below its last sealed seq".into(),
            );
        } else {
            self.unsealed += 1;
        }
    }

    /// A leaf, the row now at its `seq` if there is one, and whether the store
    /// records its row as pruned by retention.
    fn leaf(&mut self, leaf: &LeafEntry, row: Option<&EventRow>, pruned: bool) {
        let index = leaf.index;
        if index != self.leaves_seen {
            self.report_at(
                Kind::Tree,
                None,
                None,
                Some(self.leaves_seen),
                format!(
                    "leaves {} to {} are missing from the tree",
                    self.leaves_seen,
                    index - 1
                ),
            );
            // Keep the rebuilt trees aligned: a missing leaf cannot be recomputed.
            while self.leaves_seen < index {
                self.push(self.leaves_seen, Uuid::nil(), [0; 32], [0; 32]);
            }
        }
        if leaf.seq <= self.last_sealed_seq {
            self.report_at(
                Kind::Reordered,
                Some(leaf.id),
                Some(leaf.seq),
                Some(index),
                format!(
                    "leaf {index} has seq {} after seq {}",
                    leaf.seq, self.last_sealed_seq
                ),
            );
        }
        self.last_sealed_seq = self.last_sealed_seq.max(leaf.seq);
        let now = match row {
            // Gone on purpose: the stored hash stands for it, as in every
            // checkpoint signed before.
            None if pruned => {
                self.pruned += 1;
                leaf.hash
            }
            None => {
                self.report_at(
                    Kind::Removed,
                    Some(leaf.id),
                    Some(leaf.seq),
                    Some(index),
                    "the sealed event has no row any more".into(),
                );
                leaf.hash
            }
            Some(row) => {
                self.rows += 1;
                self.check_row(leaf, row)
            }
        };
        self.push(index, leaf.id, leaf.hash, now);
    }

    /// The row's leaf hash as it is now, after naming what differs from the leaf.
    fn check_row(&mut self, leaf: &LeafEntry, row: &EventRow) -> Hash {
        let place = (Some(row.seq), Some(leaf.index));
        if row.id != leaf.id {
            self.report_at(
                Kind::Reordered,
                Some(leaf.id),
                place.0,
                place.1,
                format!("its seq now holds event {}", row.id),
            );
        }
        let now = leaf_hash(row.leaf().as_bytes());
        if now != leaf.hash {
            self.report_at(
                Kind::Altered,
                Some(row.id),
                place.0,
                place.1,
                "the row (body, seq or received_at) no longer hashes to its sealed leaf".into(),
            );
        }
        match column_mismatches(row) {
            Ok(columns) => {
                for (column, stored, from_leaf) in columns {
                    self.report_at(
                        Kind::Altered,
                        Some(row.id),
                        place.0,
                        place.1,
                        format!("column {column} is {stored}, its leaf says {from_leaf}"),
                    );
                }
            }
            Err(reason) => self.report_at(
                Kind::Altered,
                Some(row.id),
                place.0,
                place.1,
                format!("the stored body is not an event: {reason}"),
            ),
        }
        now
    }

    /// Appends one leaf to both rebuilt trees and checks the checkpoints reached.
    fn push(&mut self, index: u64, id: Uuid, stored: Hash, now: Hash) {
        self.stored.append(stored, &mut self.completed);
        let mut ignored = Vec::new();
        self.rebuilt.append(now, &mut ignored);
        self.leaves_seen = index + 1;
        if self.since_match.len() <= NAMED_PER_CHECKPOINT {
            self.since_match.push((index, id));
        }
        while self
            .expected
            .front()
            .is_some_and(|known| known.checkpoint.size == self.leaves_seen)
        {
            if let Some(known) = self.expected.pop_front() {
                self.check_checkpoint(known);
            }
        }
    }

    fn check_checkpoint(&mut self, known: Known) {
        let matches = self.rebuilt.root() == known.checkpoint.root;
        let size = known.checkpoint.size;
        if !matches && !self.mismatched {
            self.mismatched = true;
            let first = self.since_match.first().map_or(size, |(index, _)| *index);
            let suspects = std::mem::take(&mut self.since_match);
            if suspects.len() > NAMED_PER_CHECKPOINT {
                self.report(
                    Kind::Checkpoint,
                    None,
                    format!(
                        "the checkpoint of size {size} no longer matches the rows: one or more of \
                         leaves {first} to {} were rewritten (with the tree recomputed to hide it)",
                        size - 1
                    ),
                );
            }
            for (index, id) in suspects.into_iter().take(NAMED_PER_CHECKPOINT) {
                self.report_at(
                    Kind::Altered,
                    Some(id),
                    None,
                    Some(index),
                    format!(
                        "the checkpoint of size {size} no longer matches the rows, and this is \
                         one of the events signed since the checkpoint before"
                    ),
                );
            }
        } else if !matches {
            self.report(
                Kind::Checkpoint,
                None,
                format!("the checkpoint of size {size} does not match the rows either"),
            );
        }
        if matches {
            self.since_match.clear();
        }
        self.reports.push(CheckpointReport {
            size,
            root: base64(&known.checkpoint.root),
            kept_in: known.kept_in.to_owned(),
            signature_valid: known.signature_valid,
            matches_rows: matches,
        });
    }

    /// Compares the nodes the stored leaves complete with the stored nodes.
    async fn check_nodes(&mut self, store: &dyn AuditStore) -> Result<()> {
        let completed = std::mem::take(&mut self.completed);
        for chunk in completed.chunks(PAGE as usize) {
            let mut reads: Vec<Read> = Vec::new();
            for (node, _) in chunk {
                match reads.last_mut() {
                    Some(read) if read.level == node.level && read.end == node.index => {
                        read.end += 1;
                    }
                    _ => reads.push(Read {
                        level: node.level,
                        start: node.index,
                        end: node.index + 1,
                    }),
                }
            }
            let stored = store.tree_hashes(&reads).await?;
            for (node, hash) in chunk {
                let found = stored.iter().find_map(|(read, hashes)| {
                    (read.level == node.level && read.start <= node.index && node.index < read.end)
                        .then(|| hashes.get((node.index - read.start) as usize))
                        .flatten()
                });
                if found != Some(hash) {
                    self.report(
                        Kind::Tree,
                        None,
                        format!(
                            "the stored node at level {} index {} is not the hash of its leaves",
                            node.level, node.index
                        ),
                    );
                }
            }
        }
        Ok(())
    }

    fn finish(mut self, keys: &[Verifier]) -> Report {
        if self.leaves_seen < self.size {
            let (from, to) = (self.leaves_seen, self.size - 1);
            self.report(
                Kind::Tree,
                None,
                format!("leaves {from} to {to} are missing from the tree"),
            );
        }
        for known in std::mem::take(&mut self.expected) {
            self.report(
                Kind::Checkpoint,
                None,
                format!(
                    "a checkpoint signed a tree of {} leaves; the store holds {}: the end of the \
                     log was removed",
                    known.checkpoint.size, self.leaves_seen
                ),
            );
            self.reports.push(CheckpointReport {
                size: known.checkpoint.size,
                root: base64(&known.checkpoint.root),
                kept_in: known.kept_in.to_owned(),
                signature_valid: known.signature_valid,
                matches_rows: false,
            });
        }
        Report {
            rows: self.rows,
            sealed: self.size,
            unsealed: self.unsealed,
            pruned: self.pruned,
            keys: keys.iter().map(ToString::to_string).collect(),
            checkpoints: self.reports,
            ok: self.problems == 0,
            problems: self.problems,
            findings: self.findings,
        }
    }
}
