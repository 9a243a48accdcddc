//! The tests of `verify.rs`.

use super::*;

fn row(seq: i64, id: Uuid, body: &str) -> StoredEvent {
    StoredEvent {
        id,
        seq,
        timestamp: seq * 10,
        body: body.into(),
    }
}

/// The chain as a sealer would have built it for `rows`.
fn sealed(rows: &[StoredEvent]) -> Vec<ChainEntry> {
    let mut prev = ZERO_HASH;
    rows.iter()
        .enumerate()
        .map(|(n, r)| {
            let leaf = leaf_hash(r.id, r.seq, r.timestamp, &r.body);
            prev = chain_hash(&prev, &leaf);
            ChainEntry {
                seq: r.seq,
                position: n as i64 + 1,
                id: r.id,
                leaf_hash: leaf,
                chain_hash: prev,
            }
        })
        .collect()
}

/// Runs the merge of `verify` over in-memory rows and entries.
fn walk(rows: &[StoredEvent], chain: &[ChainEntry]) -> Report {
    let head = chain.last().map_or(ChainHead::default(), |e| ChainHead {
        seq: e.seq,
        size: e.position,
        chain_hash: e.chain_hash,
    });
    let mut walk = Walk::new(head, None);
    let (mut r, mut c) = (rows.iter().peekable(), chain.iter().peekable());
    loop {
        match (r.peek(), c.peek()) {
            (None, None) => break,
            (Some(row), entry) if entry.is_none_or(|e| row.seq < e.seq) => {
                walk.row_alone(row);
                r.next();
            }
            (Some(row), Some(entry)) if row.seq == entry.seq => {
                walk.both(row, entry);
                r.next();
                c.next();
            }
            (_, Some(entry)) => {
                walk.entry_alone(entry);
                c.next();
            }
            (Some(_), None) => unreachable!(),
        }
    }
    walk.finish(None)
}

fn kinds(report: &Report) -> Vec<(Kind, Uuid)> {
    report
        .findings
        .iter()
        .map(|f| (f.kind, f.id.unwrap()))
        .collect()
}

#[test]
fn an_untouched_chain_with_gaps_and_unsealed_rows_is_ok() {
    let rows: Vec<_> = [1, 2, 5, 9]
        .map(|seq| row(seq, Uuid::now_v7(), "{}"))
        .to_vec();
    let chain = sealed(&rows[..3]);

    let report = walk(&rows, &chain);

    assert!(report.ok, "{report:?}");
    assert_eq!((report.rows, report.sealed, report.unsealed), (4, 3, 1));
}

#[test]
fn alterations_removals_and_insertions_are_named() {
    let ids: Vec<_> = (0..5).map(|_| Uuid::now_v7()).collect();
    let mut rows: Vec<_> = [1, 2, 4, 5, 6]
        .iter()
        .zip(&ids)
        .map(|(&seq, &id)| row(seq, id, "{}"))
        .collect();
    let chain = sealed(&rows);
    rows[1].body = "{\"x\":1}".into();
    rows.remove(3);
    let forged = Uuid::now_v7();
    rows.insert(2, row(3, forged, "{}"));

    let report = walk(&rows, &chain);

    assert_eq!(
        kinds(&report),
        [
            (Kind::Altered, ids[1]),
            (Kind::Inserted, forged),
            (Kind::Removed, ids[3])
        ]
    );
}

#[test]
fn swapped_rows_are_reported_as_reordered() {
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    let rows = vec![row(1, a, "{}"), row(2, b, "{}")];
    let chain = sealed(&rows);
    let swapped = vec![row(1, b, "{}"), row(2, a, "{}")];

    let report = walk(&swapped, &chain);

    assert_eq!(kinds(&report), [(Kind::Reordered, b), (Kind::Reordered, a)]);
}

#[test]
fn an_edited_chain_entry_breaks_the_chain() {
    let rows: Vec<_> = (1..=3).map(|seq| row(seq, Uuid::now_v7(), "{}")).collect();
    let mut chain = sealed(&rows);
    chain[1].leaf_hash = [0; 32];

    let report = walk(&rows, &chain);

    assert!(!report.ok);
    assert!(report.findings.iter().any(|f| f.kind == Kind::Chain));
}
