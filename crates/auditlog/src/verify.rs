//! `auditlog verify`: recomputes the store's integrity chain from the rows of
//! `audit_events`, in `seq` order, and names every event that was altered, removed,
//! reordered or inserted behind the auditor's back; then checks the signed head
//! against the chain and the data directory's key.
//!
//! Rows and chain entries are read page by page (keyset by `seq`) and merged as two
//! sorted streams, so memory stays flat however large the store; only the findings
//! are kept.

use std::collections::{HashSet, VecDeque};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use auditlog_auth::KeyPair;
use auditlog_store::{
    AuditStore, ChainEntry, ChainHead, EventQuery, SignedHead, StoredEvent, ZERO_HASH, chain_hash,
    from_hex, head_message, leaf_hash, to_hex,
};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use uuid::Uuid;

use crate::VerifyArgs;

/// Rows and chain entries read per statement.
const PAGE: u32 = 1_000;

/// Findings kept in memory at most; beyond that they are only counted.
const MAX_FINDINGS: usize = 1_000_000;

pub async fn run(args: VerifyArgs) -> Result<()> {
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
                    "there is no audit store at {}; pass --data-dir or --store-url",
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
    let keys = KeyPair::load(&data_dir)
        .with_context(|| format!("while reading the signing key in {}", data_dir.display()))?;

    let total = store
        .count(&EventQuery::default())
        .await
        .context("while counting the stored events")?;
    let bar = if args.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(total)
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} verifying {bar:40} {pos}/{len} events [{elapsed}, {per_sec}]",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let report = verify(&*store, keys.as_ref(), &bar).await?;
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

/// What went wrong with one event or chain entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Kind {
    /// The row at a sealed `seq` is not what was sealed (body, timestamp or id).
    Altered,
    /// A sealed event has no row any more.
    Removed,
    /// A row at or below the sealed head that was never sealed.
    Inserted,
    /// A sealed event whose row now sits at another `seq`.
    Reordered,
    /// The chain table itself does not hold together (entries edited or removed).
    Chain,
    /// The signed head does not match the chain, or its signature is not valid.
    Head,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Altered => "altered",
            Kind::Removed => "removed",
            Kind::Inserted => "inserted",
            Kind::Reordered => "reordered",
            Kind::Chain => "chain",
            Kind::Head => "head",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    pub kind: Kind,
    /// The event concerned, when one can be named.
    pub id: Option<Uuid>,
    pub seq: i64,
    pub detail: String,
}

/// The signed head and what became of checking it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HeadReport {
    pub seq: i64,
    pub size: i64,
    pub chain_hash: String,
    pub signed_at: i64,
    pub key_id: String,
    /// Whether the signature is valid for the key it was checked with.
    pub signature_valid: bool,
    /// Whether that key is the data directory's (pinned) rather than the one stored
    /// next to the head (which anyone able to edit the store could replace).
    pub key_pinned: bool,
    /// Whether the chain, recomputed, reaches exactly this head.
    pub matches_chain: bool,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Rows of `audit_events` read.
    pub rows: u64,
    /// Chain entries read (up to the sealed head).
    pub sealed: u64,
    /// The last sealed `seq` when verification started.
    pub sealed_seq: i64,
    /// Rows after the sealed head: not yet sealed, not an error.
    pub unsealed: u64,
    pub head: Option<HeadReport>,
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
            let _ = writeln!(
                out,
                "{:<10} {id}  seq {:<8} {}",
                f.kind.label(),
                f.seq,
                f.detail
            );
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
            "{} rows checked; {} sealed up to seq {}; {} not yet sealed",
            self.rows, self.sealed, self.sealed_seq, self.unsealed
        );
        match &self.head {
            None => {
                let _ = writeln!(out, "no signed head yet");
            }
            Some(head) => {
                let _ = writeln!(
                    out,
                    "signed head: seq {} size {} key {}: signature {}{}, {}",
                    head.seq,
                    head.size,
                    head.key_id,
                    if head.signature_valid {
                        "valid"
                    } else {
                        "INVALID"
                    },
                    if head.key_pinned {
                        " (data directory's key)"
                    } else {
                        " (for the key stored with it; pass --data-dir to pin the key)"
                    },
                    if head.matches_chain {
                        "matches the chain"
                    } else {
                        "DOES NOT match the chain"
                    },
                );
            }
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

/// Walks the store and the chain and checks the signed head (with `keys`, the data
/// directory's key, when there is one).
pub async fn verify(
    store: &dyn AuditStore,
    keys: Option<&KeyPair>,
    bar: &ProgressBar,
) -> Result<Report> {
    // Fixed first: what is sealed while this runs is left for the next run.
    let sealed_head = store.chain_head().await?;
    let signed = store.latest_head().await?;
    let mut walk = Walk::new(sealed_head, signed.as_ref().map(|s| s.head));
    let mut rows = Pager::new();
    let mut chain = Pager::new();
    loop {
        let row = rows
            .peek(|after| async move {
                Ok(store
                    .stored_after(&EventQuery::default(), after, PAGE)
                    .await?)
            })
            .await?;
        let entry = chain
            .peek(|after| async move {
                let mut page = store.chain_after(after, PAGE).await?;
                page.retain(|e: &ChainEntry| e.seq <= sealed_head.seq);
                Ok(page)
            })
            .await?;
        match (row, entry) {
            (None, None) => break,
            (Some(row), entry) if entry.is_none_or(|e| row.seq < e.seq) => {
                walk.row_alone(row);
                rows.pop();
                bar.inc(1);
            }
            (Some(row), Some(entry)) if row.seq == entry.seq => {
                walk.both(row, entry);
                rows.pop();
                chain.pop();
                bar.inc(1);
            }
            (_, Some(entry)) => {
                walk.entry_alone(entry);
                chain.pop();
            }
            (Some(_), None) => unreachable!("handled by the first arm"),
        }
    }
    let head = signed.map(|signed| walk.check_signature(&signed, keys));
    Ok(walk.finish(head))
}

/// One ordered stream read in pages by `seq`.
struct Pager<T> {
    buffer: VecDeque<T>,
    after: i64,
    done: bool,
}

trait Seq {
    fn seq(&self) -> i64;
}

impl Seq for StoredEvent {
    fn seq(&self) -> i64 {
        self.seq
    }
}

impl Seq for ChainEntry {
    fn seq(&self) -> i64 {
        self.seq
    }
}

impl<T: Seq> Pager<T> {
    fn new() -> Self {
        Pager {
            buffer: VecDeque::new(),
            after: 0,
            done: false,
        }
    }

    async fn peek<F, Fut>(&mut self, fetch: F) -> Result<Option<&T>>
    where
        F: FnOnce(i64) -> Fut,
        Fut: Future<Output = Result<Vec<T>>>,
    {
        if self.buffer.is_empty() && !self.done {
            let page = fetch(self.after).await?;
            match page.last() {
                Some(last) => self.after = last.seq(),
                None => self.done = true,
            }
            self.buffer.extend(page);
        }
        Ok(self.buffer.front())
    }

    fn pop(&mut self) {
        self.buffer.pop_front();
    }
}

/// The checks, fed rows and chain entries in `seq` order.
struct Walk {
    sealed_head: ChainHead,
    signed: Option<ChainHead>,
    signed_matched: Option<bool>,
    prev_hash: [u8; 32],
    prev_position: i64,
    rows: u64,
    sealed: u64,
    unsealed: u64,
    problems: u64,
    findings: Vec<Finding>,
}

impl Walk {
    fn new(sealed_head: ChainHead, signed: Option<ChainHead>) -> Self {
        // A head of the empty chain is a prefix of every chain.
        let signed_matched = signed
            .filter(|head| head.size == 0)
            .map(|head| head.chain_hash == ZERO_HASH);
        Walk {
            sealed_head,
            signed,
            signed_matched,
            prev_hash: ZERO_HASH,
            prev_position: 0,
            rows: 0,
            sealed: 0,
            unsealed: 0,
            problems: 0,
            findings: Vec::new(),
        }
    }

    fn report(&mut self, kind: Kind, id: Option<Uuid>, seq: i64, detail: String) {
        self.problems += 1;
        if self.findings.len() < MAX_FINDINGS {
            self.findings.push(Finding {
                kind,
                id,
                seq,
                detail,
            });
        }
    }

    /// A row with no chain entry at its `seq`.
    fn row_alone(&mut self, row: &StoredEvent) {
        self.rows += 1;
        if row.seq > self.sealed_head.seq {
            self.unsealed += 1;
        } else {
            let detail = format!(
                "not in the chain, though at or below the sealed head (seq {})",
                self.sealed_head.seq
            );
            self.report(Kind::Inserted, Some(row.id), row.seq, detail);
        }
    }

    /// A chain entry with no row at its `seq`.
    fn entry_alone(&mut self, entry: &ChainEntry) {
        self.link(entry);
        self.report(
            Kind::Removed,
            Some(entry.id),
            entry.seq,
            "sealed, but its row is gone".into(),
        );
    }

    fn both(&mut self, row: &StoredEvent, entry: &ChainEntry) {
        self.rows += 1;
        self.link(entry);
        if row.id != entry.id {
            // Another event sits where this one was sealed: the sealed one is gone
            // from here, the row here was never sealed here. `finish` turns an id
            // found both gone and out of place into "reordered".
            self.report(
                Kind::Removed,
                Some(entry.id),
                entry.seq,
                format!("sealed here, but the row at this seq is now {}", row.id),
            );
            let detail = format!("sits where {} was sealed", entry.id);
            self.report(Kind::Inserted, Some(row.id), row.seq, detail);
        } else if leaf_hash(row.id, row.seq, row.timestamp, &row.body) != entry.leaf_hash {
            self.report(
                Kind::Altered,
                Some(row.id),
                row.seq,
                "the row differs from what was sealed".into(),
            );
        }
    }

    /// Checks that `entry` follows the entry before it, and the signed head.
    fn link(&mut self, entry: &ChainEntry) {
        self.sealed += 1;
        if entry.position != self.prev_position + 1 {
            let detail = format!(
                "chain position {} follows {}: chain entries were removed or edited",
                entry.position, self.prev_position
            );
            self.report(Kind::Chain, None, entry.seq, detail);
        }
        if chain_hash(&self.prev_hash, &entry.leaf_hash) != entry.chain_hash {
            self.report(
                Kind::Chain,
                Some(entry.id),
                entry.seq,
                "the chain entry does not follow from the one before: the chain was edited".into(),
            );
        }
        self.prev_hash = entry.chain_hash;
        self.prev_position = entry.position;
        if let Some(head) = self.signed
            && head.size > 0
            && head.seq == entry.seq
        {
            self.signed_matched =
                Some(head.chain_hash == entry.chain_hash && head.size == entry.position);
        }
    }

    fn check_signature(&mut self, signed: &SignedHead, keys: Option<&KeyPair>) -> HeadReport {
        let pinned = keys.and_then(|keys| keys.public_key_hex().ok());
        let key_pinned = pinned.is_some();
        let public = pinned.as_deref().unwrap_or(&signed.public_key);
        let message = head_message(&signed.head, signed.signed_at);
        let signature_valid = from_hex(public).is_some_and(|public| {
            auditlog_auth::keys::verify_signature(&public, message.as_bytes(), &signed.signature)
        });
        if !signature_valid {
            let detail = if key_pinned && signed.public_key != public {
                format!(
                    "the head is signed by key {}, not by this data directory's key",
                    signed.key_id
                )
            } else {
                "the head's signature is not valid".into()
            };
            self.report(Kind::Head, None, signed.head.seq, detail);
        }
        let matches_chain = self.signed_matched == Some(true);
        if !matches_chain {
            self.report(
                Kind::Head,
                None,
                signed.head.seq,
                format!(
                    "the chain does not reach the signed head (size {}, hash {}): \
                     it was rewritten or truncated",
                    signed.head.size,
                    to_hex(&signed.head.chain_hash)
                ),
            );
        }
        HeadReport {
            seq: signed.head.seq,
            size: signed.head.size,
            chain_hash: to_hex(&signed.head.chain_hash),
            signed_at: signed.signed_at,
            key_id: signed.key_id.clone(),
            signature_valid,
            key_pinned,
            matches_chain,
        }
    }

    fn finish(mut self, head: Option<HeadReport>) -> Report {
        // An event both missing from its sealed place and found elsewhere moved.
        let removed: HashSet<Uuid> = self
            .findings
            .iter()
            .filter(|f| f.kind == Kind::Removed)
            .filter_map(|f| f.id)
            .collect();
        let moved: HashSet<Uuid> = self
            .findings
            .iter()
            .filter(|f| f.kind == Kind::Inserted)
            .filter_map(|f| f.id)
            .filter(|id| removed.contains(id))
            .collect();
        let before = self.findings.len();
        let mut sealed_at = std::collections::HashMap::new();
        self.findings.retain(|f| match f.id {
            Some(id) if moved.contains(&id) && f.kind == Kind::Removed => {
                sealed_at.insert(id, f.seq);
                false
            }
            _ => true,
        });
        self.problems -= (before - self.findings.len()) as u64;
        for f in &mut self.findings {
            if let Some(id) = f.id
                && f.kind == Kind::Inserted
                && let Some(seq) = sealed_at.get(&id)
            {
                f.kind = Kind::Reordered;
                f.detail = format!("sealed at seq {seq}, now at seq {}", f.seq);
            }
        }
        self.findings.sort_by_key(|f| f.seq);
        Report {
            rows: self.rows,
            sealed: self.sealed,
            sealed_seq: self.sealed_head.seq,
            unsealed: self.unsealed,
            head,
            ok: self.problems == 0,
            problems: self.problems,
            findings: self.findings,
        }
    }
}

#[cfg(test)]
mod tests;
