//! The crate's roots and proofs checked against RFC 9162 §2.1 as a client would
//! check a server: the reference below is written from the RFC's text alone
//! (MTH §2.1.1, PATH §2.1.3.1, PROOF §2.1.4.1, and the verification algorithms of
//! §2.1.3.2 and §2.1.4.2) with `sha2` directly. It never calls the crate's
//! hashing or verifying functions; the crate is used only as the server is: a
//! [`Plan`] says which stored hashes it needs, an in-memory store built by the
//! reference answers, and [`Plan::hashes`] makes the root or proof.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};

use auditlog_tlog::{Frontier, Node, Plan, Read};
use proptest::prelude::*;
use sha2::{Digest, Sha256};

type Hash = [u8; 32];

// ---------------------------------------------------------------------------
// The reference, from RFC 9162's text.
// ---------------------------------------------------------------------------

/// `SHA-256(0x00 || data)`, §2.1.1.
fn rfc_leaf_hash(data: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x00]);
    hasher.update(data);
    hasher.finalize().into()
}

/// `SHA-256(0x01 || left || right)`, §2.1.1.
fn rfc_node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x01]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// The largest power of two smaller than `n` (n > 1), the RFC's `k`.
fn rfc_k(n: u64) -> u64 {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

fn lsb(x: u64) -> bool {
    x & 1 == 1
}

/// A log's leaves as a reference store: `MTH(D[lo:hi])` by §2.1.1's recursion,
/// remembering the results for ranges of at least `memo_from` leaves (so that a
/// tree of a million synthetic leaves is hashed once, not once per question).
struct Reference<F: Fn(u64) -> Hash> {
    /// The hash of leaf `i`, `MTH({d(i)})`.
    leaf: F,
    memo_from: u64,
    memo: HashMap<(u64, u64), Hash>,
}

impl<F: Fn(u64) -> Hash> Reference<F> {
    fn new(leaf: F, memo_from: u64) -> Self {
        Reference {
            leaf,
            memo_from,
            memo: HashMap::new(),
        }
    }

    /// `MTH(D[lo:hi])`.
    fn mth(&mut self, lo: u64, hi: u64) -> Hash {
        let n = hi - lo;
        match n {
            0 => Sha256::digest([]).into(),
            1 => (self.leaf)(lo),
            _ => {
                if let Some(hash) = self.memo.get(&(lo, hi)) {
                    return *hash;
                }
                let k = rfc_k(n);
                let hash = rfc_node_hash(&self.mth(lo, lo + k), &self.mth(lo + k, hi));
                if n >= self.memo_from {
                    self.memo.insert((lo, hi), hash);
                }
                hash
            }
        }
    }

    /// §2.1.3.1 `PATH(m, D[lo:hi])`, `m` counted from 0.
    fn path(&mut self, m: u64, lo: u64, hi: u64) -> Vec<Hash> {
        let n = hi - lo;
        if n <= 1 {
            return Vec::new();
        }
        let k = rfc_k(n);
        if m - lo < k {
            let mut path = self.path(m, lo, lo + k);
            path.push(self.mth(lo + k, hi));
            path
        } else {
            let mut path = self.path(m, lo + k, hi);
            path.push(self.mth(lo, lo + k));
            path
        }
    }

    /// §2.1.4.1 `PROOF(m, D[0:n]) = SUBPROOF(m, D[0:n], true)`.
    fn proof(&mut self, m: u64, n: u64) -> Vec<Hash> {
        self.subproof(m, 0, n, true)
    }

    /// §2.1.4.1 `SUBPROOF(m, D[lo:hi], b)`, `m` counted from `lo`.
    fn subproof(&mut self, m: u64, lo: u64, hi: u64, b: bool) -> Vec<Hash> {
        let n = hi - lo;
        if m == n {
            return if b {
                Vec::new()
            } else {
                vec![self.mth(lo, hi)]
            };
        }
        let k = rfc_k(n);
        if m <= k {
            let mut proof = self.subproof(m, lo, lo + k, b);
            proof.push(self.mth(lo + k, hi));
            proof
        } else {
            let mut proof = self.subproof(m - k, lo + k, hi, false);
            proof.push(self.mth(lo, lo + k));
            proof
        }
    }

    /// What a store keeping levels 0, 8, 16, … answers for `reads`: for each
    /// `Read`, the hash of each complete subtree of `2^level` leaves. Panics if a
    /// plan for a tree of `size` leaves asks for what such a store cannot have, or
    /// for more than the two tiles per level the crate's docs promise.
    fn serve(&mut self, size: u64, reads: &[Read]) -> Vec<(Read, Vec<Hash>)> {
        let mut tiles: HashMap<u8, BTreeSet<u64>> = HashMap::new();
        for r in reads {
            assert!(r.start < r.end, "{r:?} is empty");
            let touched = tiles.entry(r.level).or_default();
            touched.extend(r.start / 256..=(r.end - 1) / 256);
            assert!(
                touched.len() <= 2,
                "{reads:?} touch more than two tiles at level {}",
                r.level
            );
        }
        reads
            .iter()
            .map(|r| {
                assert_eq!(r.level % 8, 0, "{r:?} is not a stored level");
                assert!(r.end << r.level <= size, "{r:?} is beyond a tree of {size}");
                let hashes = (r.start..r.end)
                    .map(|j| self.mth(j << r.level, (j + 1) << r.level))
                    .collect();
                (*r, hashes)
            })
            .collect()
    }
}

/// RFC 9162 §2.1.3.2, step by step.
fn rfc_verify_inclusion(
    leaf_index: u64,
    tree_size: u64,
    hash: &Hash,
    inclusion_path: &[Hash],
    root_hash: &Hash,
) -> bool {
    // 1.
    if leaf_index >= tree_size {
        return false;
    }
    // 2.
    let mut fnode = leaf_index;
    let mut snode = tree_size - 1;
    // 3.
    let mut r = *hash;
    // 4.
    for p in inclusion_path {
        // a.
        if snode == 0 {
            return false;
        }
        // b.
        if lsb(fnode) || fnode == snode {
            r = rfc_node_hash(p, &r);
            if !lsb(fnode) {
                while !(lsb(fnode) || fnode == 0) {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            r = rfc_node_hash(&r, p);
        }
        // c.
        fnode >>= 1;
        snode >>= 1;
    }
    // 5.
    snode == 0 && r == *root_hash
}

/// RFC 9162 §2.1.4.2, step by step, for `0 < first < second`. For
/// `first == second` the proof is empty (§2.1.4.1: `SUBPROOF(m, D[m], true) = {}`)
/// and the two roots must be the same.
fn rfc_verify_consistency(
    first: u64,
    second: u64,
    first_hash: &Hash,
    second_hash: &Hash,
    consistency_path: &[Hash],
) -> bool {
    if first == 0 || first > second {
        return false;
    }
    if first == second {
        return consistency_path.is_empty() && first_hash == second_hash;
    }
    // 1.
    if consistency_path.is_empty() {
        return false;
    }
    // 2.
    let mut path = Vec::with_capacity(consistency_path.len() + 1);
    if first.is_power_of_two() {
        path.push(*first_hash);
    }
    path.extend_from_slice(consistency_path);
    // 3.
    let mut fnode = first - 1;
    let mut snode = second - 1;
    // 4.
    while lsb(fnode) {
        fnode >>= 1;
        snode >>= 1;
    }
    // 5.
    let mut fr = path[0];
    let mut sr = path[0];
    // 6.
    for c in &path[1..] {
        // a.
        if snode == 0 {
            return false;
        }
        // b.
        if lsb(fnode) || fnode == snode {
            fr = rfc_node_hash(c, &fr);
            sr = rfc_node_hash(c, &sr);
            if !lsb(fnode) {
                while !(lsb(fnode) || fnode == 0) {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            sr = rfc_node_hash(&sr, c);
        }
        // c.
        fnode >>= 1;
        snode >>= 1;
    }
    // 7.
    fr == *first_hash && sr == *second_hash && snode == 0
}

fn flip_bit(hash: &Hash, bit: usize) -> Hash {
    let mut changed = *hash;
    changed[bit / 8 % 32] ^= 1 << (bit % 8);
    changed
}

// ---------------------------------------------------------------------------
// The checks, each a client's view of one answer of the crate.
// ---------------------------------------------------------------------------

/// `Plan::root(n)` is `MTH(D[0:n])`.
fn check_root<F: Fn(u64) -> Hash>(tree: &mut Reference<F>, n: u64) -> Hash {
    let plan = Plan::root(n);
    let root = plan.hashes(&tree.serve(n, &plan.reads())).unwrap();
    let expected = tree.mth(0, n);
    assert_eq!(root, vec![expected], "root of size {n}");
    expected
}

/// The crate's audit path of leaf `i` in a tree of `n` is RFC 9162's `PATH`; the
/// RFC's verifier accepts it, and rejects it once anything is changed: one bit of
/// one hash of the proof, of the leaf hash or of the root, a hash dropped or
/// added, or the proof offered for another leaf.
fn check_inclusion<F: Fn(u64) -> Hash>(
    tree: &mut Reference<F>,
    i: u64,
    n: u64,
    root: &Hash,
    other_indexes: &[u64],
) {
    let plan = Plan::inclusion(i, n).unwrap();
    let proof = plan.hashes(&tree.serve(n, &plan.reads())).unwrap();
    assert_eq!(proof, tree.path(i, 0, n), "PATH({i}, D[{n}])");
    let leaf = (tree.leaf)(i);
    assert!(
        rfc_verify_inclusion(i, n, &leaf, &proof, root),
        "leaf {i} of {n} does not verify"
    );

    for k in 0..proof.len() {
        let mut changed = proof.clone();
        changed[k] = flip_bit(&proof[k], k * 37 + 3);
        assert!(
            !rfc_verify_inclusion(i, n, &leaf, &changed, root),
            "leaf {i} of {n}, proof[{k}] changed"
        );
    }
    assert!(
        !rfc_verify_inclusion(i, n, &flip_bit(&leaf, 255), &proof, root),
        "leaf {i} of {n}, leaf changed"
    );
    assert!(
        !rfc_verify_inclusion(i, n, &leaf, &proof, &flip_bit(root, 0)),
        "leaf {i} of {n}, root changed"
    );
    if let Some((_, shorter)) = proof.split_last() {
        assert!(
            !rfc_verify_inclusion(i, n, &leaf, shorter, root),
            "leaf {i} of {n}, proof shortened"
        );
    }
    let mut longer = proof.clone();
    longer.push(*root);
    assert!(
        !rfc_verify_inclusion(i, n, &leaf, &longer, root),
        "leaf {i} of {n}, proof lengthened"
    );

    for &j in other_indexes.iter().filter(|&&j| j < n && j != i) {
        let other = (tree.leaf)(j);
        assert!(
            !rfc_verify_inclusion(j, n, &other, &proof, root),
            "the proof of leaf {i} verifies leaf {j} of {n}"
        );
    }
}

/// The crate's consistency proof from `m` to `n` is RFC 9162's `PROOF`; the RFC's
/// verifier accepts it against the two MTH roots and rejects it once anything is
/// changed: one bit of one hash of the proof or of either root, a hash dropped or
/// added, or the proof offered for another old size.
fn check_consistency<F: Fn(u64) -> Hash>(
    tree: &mut Reference<F>,
    m: u64,
    n: u64,
    new_root: &Hash,
    other_sizes: &[u64],
) {
    let old_root = tree.mth(0, m);
    let plan = Plan::consistency(m, n).unwrap();
    let proof = plan.hashes(&tree.serve(n, &plan.reads())).unwrap();
    assert_eq!(proof, tree.proof(m, n), "PROOF({m}, D[{n}])");
    assert!(
        rfc_verify_consistency(m, n, &old_root, new_root, &proof),
        "{m} -> {n} does not verify"
    );

    for k in 0..proof.len() {
        let mut changed = proof.clone();
        changed[k] = flip_bit(&proof[k], k * 41 + 5);
        assert!(
            !rfc_verify_consistency(m, n, &old_root, new_root, &changed),
            "{m} -> {n}, proof[{k}] changed"
        );
    }
    if m < n {
        // (For m == n one root is checked against the other: a change to either
        // is caught alike.)
        assert!(
            !rfc_verify_consistency(m, n, &flip_bit(&old_root, 7), new_root, &proof),
            "{m} -> {n}, old root changed"
        );
    }
    assert!(
        !rfc_verify_consistency(m, n, &old_root, &flip_bit(new_root, 9), &proof),
        "{m} -> {n}, new root changed"
    );
    if let Some((_, shorter)) = proof.split_last() {
        assert!(
            !rfc_verify_consistency(m, n, &old_root, new_root, shorter),
            "{m} -> {n}, proof shortened"
        );
    }
    let mut longer = proof.clone();
    longer.push(*new_root);
    assert!(
        !rfc_verify_consistency(m, n, &old_root, new_root, &longer),
        "{m} -> {n}, proof lengthened"
    );

    for &other in other_sizes.iter().filter(|&&o| 1 <= o && o <= n && o != m) {
        let other_root = tree.mth(0, other);
        assert!(
            !rfc_verify_consistency(other, n, &other_root, new_root, &proof),
            "the proof from {m} verifies {other} -> {n}"
        );
    }
}

/// A frontier restored at `n` from the hashes [`Frontier::reads`] names has the
/// MTH root; appending up to one past the next tile boundary names each completed
/// stored node with its MTH, and keeps the MTH root.
fn check_frontier_restore<F: Fn(u64) -> Hash>(tree: &mut Reference<F>, n: u64) {
    let mut frontier = Frontier::restore(n, &tree.serve(n, &Frontier::reads(n))).unwrap();
    assert_eq!(frontier.size(), n);
    assert_eq!(frontier.root(), tree.mth(0, n), "restored at {n}");
    let until = (n / 256 + 1) * 256 + 1;
    let mut completed = Vec::new();
    for i in n..until {
        frontier.append((tree.leaf)(i), &mut completed);
        if i == n || i + 1 == until {
            assert_eq!(
                frontier.root(),
                tree.mth(0, i + 1),
                "restored at {n}, grown to {}",
                i + 1
            );
        }
    }
    check_completed(tree, &completed);
    assert!(
        completed.iter().any(|(node, _)| node.level == 8),
        "no tile completed from {n} to {until}"
    );
}

/// Every stored node a frontier says it completed has the MTH of its leaves.
fn check_completed<F: Fn(u64) -> Hash>(tree: &mut Reference<F>, completed: &[(Node, Hash)]) {
    for (node, hash) in completed {
        assert!(
            node.level > 0 && node.level % 8 == 0,
            "{node:?} is not a stored level"
        );
        let lo = node.index << node.level;
        assert_eq!(*hash, tree.mth(lo, lo + (1 << node.level)), "{node:?}");
    }
}

// ---------------------------------------------------------------------------
// Every tree of up to 300 leaves.
// ---------------------------------------------------------------------------

const SMALL: u64 = 300;

/// Up to this size every leaf and every old size is checked; beyond it a sample,
/// unless `AUDITLOG_TLOG_EXHAUSTIVE` is set (all of them take about a minute in
/// the debug build, where SHA-256's generic code runs unoptimised).
const EXHAUSTIVE: u64 = 128;

/// The leaves of the small trees, and enough past them to grow a frontier over
/// the next tile edge.
fn small_tree() -> Reference<impl Fn(u64) -> Hash> {
    let leaves: Vec<Hash> = (0..4 * 256)
        .map(|i: u64| rfc_leaf_hash(&i.to_be_bytes()))
        .collect();
    Reference::new(move |i| leaves[i as usize], 2)
}

/// Whether leaf index or old size `x` of a tree of `n` leaves is checked: all of
/// them up to [`EXHAUSTIVE`] leaves; beyond, every 8th (a different eighth for
/// each `n`), both ends, and those at and around powers of two (the shapes in
/// which the recursion differs).
fn sampled(x: u64, n: u64) -> bool {
    n <= EXHAUSTIVE
        || std::env::var_os("AUDITLOG_TLOG_EXHAUSTIVE").is_some()
        || x % 8 == n % 8
        || x <= 1
        || x + 2 >= n
        || [x.wrapping_sub(1), x, x + 1]
            .iter()
            .any(|y| y.is_power_of_two())
}

/// Old sizes whose proof must not pass for `m`'s.
fn neighbours(m: u64, n: u64) -> [u64; 4] {
    [m.wrapping_sub(1), m + 1, m ^ 1, n + 1 - m]
}

#[test]
fn every_root_and_inclusion_proof_of_trees_up_to_300_leaves_is_rfc_9162s() {
    let mut tree = small_tree();
    assert_eq!(
        Plan::root(0).hashes(&[]).unwrap(),
        vec![<Hash>::from(Sha256::digest([]))]
    );
    for n in 1..=SMALL {
        let root = check_root(&mut tree, n);
        for i in (0..n).filter(|&i| sampled(i, n)) {
            let others: Vec<u64> = if n <= 32 {
                (0..n).collect()
            } else {
                vec![i ^ 1, n - 1 - i, i ^ 256]
            };
            check_inclusion(&mut tree, i, n, &root, &others);
        }
    }
}

#[test]
fn every_consistency_proof_between_trees_up_to_300_leaves_is_rfc_9162s() {
    let mut tree = small_tree();
    for n in 1..=SMALL {
        let root = tree.mth(0, n);
        for m in (1..=n).filter(|&m| sampled(m, n)) {
            check_consistency(&mut tree, m, n, &root, &neighbours(m, n));
        }
    }
}

#[test]
fn a_frontier_has_the_mth_root_of_every_tree_up_to_300_leaves_grown_or_restored() {
    let mut tree = small_tree();
    let mut grown = Frontier::default();
    assert_eq!(grown.root(), <Hash>::from(Sha256::digest([])));
    let mut completed = Vec::new();
    for n in 1..=SMALL {
        grown.append((tree.leaf)(n - 1), &mut completed);
        assert_eq!(grown.size(), n);
        assert_eq!(grown.root(), tree.mth(0, n), "grown to {n}");
        let restored = Frontier::restore(n, &tree.serve(n, &Frontier::reads(n))).unwrap();
        assert_eq!(restored, grown, "restored at {n}");
        assert_eq!(restored.root(), tree.mth(0, n), "restored at {n}");
    }
    check_completed(&mut tree, &completed);
    assert_eq!(completed.len(), 1, "one tile of 256 leaves in 300");
    for n in [1, 2, 255, 256, 257, 299] {
        check_frontier_restore(&mut tree, n);
    }
}

/// The published test vectors of RFC 6962's reference implementation
/// (certificate-transparency, kept by transparency-dev/merkle as
/// `testonly/constants.go`): they check the reference above, and the crate with it.
#[test]
fn the_published_rfc_6962_vectors_hold() {
    let inputs: [&[u8]; 8] = [
        b"",
        b"\x00",
        b"\x10",
        b"\x20\x21",
        b"\x30\x31",
        b"\x40\x41\x42\x43",
        b"\x50\x51\x52\x53\x54\x55\x56\x57",
        b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
    ];
    let roots = [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];
    let leaves: Vec<Hash> = inputs.iter().map(|d| rfc_leaf_hash(d)).collect();
    let mut tree = Reference::new(|i: u64| leaves[i as usize], 2);
    for (n, root) in roots.iter().enumerate() {
        let n = n as u64;
        assert_eq!(tree.mth(0, n), hex(root), "reference MTH of {n}");
        assert_eq!(
            Plan::root(n)
                .hashes(&tree.serve(n, &Plan::root(n).reads()))
                .unwrap(),
            vec![hex(root)],
            "crate root of {n}"
        );
    }

    // (leaf index, tree size, audit path)
    let inclusion: [(u64, u64, &[&str]); 4] = [
        (
            0,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            5,
            8,
            &[
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            3,
            &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
        ),
        (
            1,
            5,
            &[
                "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ];
    for (i, n, path) in inclusion {
        let want: Vec<Hash> = path.iter().map(|h| hex(h)).collect();
        let root = hex(roots[n as usize]);
        assert!(
            rfc_verify_inclusion(i, n, &leaves[i as usize], &want, &root),
            "reference verifier, leaf {i} of {n}"
        );
        let plan = Plan::inclusion(i, n).unwrap();
        assert_eq!(
            plan.hashes(&tree.serve(n, &plan.reads())).unwrap(),
            want,
            "crate, leaf {i} of {n}"
        );
    }

    // (old size, new size, proof)
    let consistency: [(u64, u64, &[&str]); 4] = [
        (1, 1, &[]),
        (
            1,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            6,
            8,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            5,
            &[
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ];
    for (m, n, proof) in consistency {
        let want: Vec<Hash> = proof.iter().map(|h| hex(h)).collect();
        let (old, new) = (hex(roots[m as usize]), hex(roots[n as usize]));
        assert!(
            rfc_verify_consistency(m, n, &old, &new, &want),
            "reference verifier, {m} -> {n}"
        );
        let plan = Plan::consistency(m, n).unwrap();
        assert_eq!(
            plan.hashes(&tree.serve(n, &plan.reads())).unwrap(),
            want,
            "crate, {m} -> {n}"
        );
    }
}

fn hex(text: &str) -> Hash {
    let bytes: Vec<u8> = (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect();
    bytes.try_into().unwrap()
}

/// A store that returns fewer hashes than a plan asked for is an error, not a
/// wrong answer or a panic.
#[test]
fn a_short_answer_from_the_store_is_an_error() {
    let mut tree = small_tree();
    for plan in [
        Plan::root(300),
        Plan::inclusion(7, 300).unwrap(),
        Plan::consistency(100, 300).unwrap(),
    ] {
        let read = tree.serve(300, &plan.reads());
        for k in 0..read.len() {
            let mut short = read.clone();
            short[k].1.pop();
            assert!(plan.hashes(&short).is_err(), "{plan:?} with read {k} short");
            let mut missing = read.clone();
            missing.remove(k);
            assert!(plan.hashes(&missing).is_err(), "{plan:?} without read {k}");
        }
    }
}

// ---------------------------------------------------------------------------
// Trees of up to a million synthetic leaves: only what a plan reads is hashed.
// ---------------------------------------------------------------------------

const LARGE: u64 = 1_000_000;

/// Leaf `i`'s hash: cheap, distinct for every `i`, and not all alike in a tile.
fn synthetic_leaf(i: u64) -> Hash {
    let mut hash = [0x5a; 32];
    hash[..8].copy_from_slice(&i.to_be_bytes());
    hash[24..].copy_from_slice(&i.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_le_bytes());
    hash
}

/// The reference store of the synthetic leaves.
type Synthetic = Reference<fn(u64) -> Hash>;

thread_local! {
    /// Remembers subtrees of 256 leaves and more: a million leaves are hashed at
    /// most once per test thread.
    static SYNTHETIC: RefCell<Synthetic> =
        RefCell::new(Reference::new(synthetic_leaf, 256));
}

/// Root, inclusion of each leaf of `indexes`, consistency from each size of
/// `old_sizes`, and a frontier restored at `n`, all in a tree of `n` synthetic
/// leaves.
fn check_large(n: u64, indexes: &[u64], old_sizes: &[u64]) {
    SYNTHETIC.with_borrow_mut(|tree| {
        let root = check_root(tree, n);
        for &i in indexes.iter().filter(|&&i| i < n) {
            check_inclusion(
                tree,
                i,
                n,
                &root,
                &[i ^ 1, i.wrapping_sub(1), i + 1, n - 1 - i],
            );
        }
        for &m in old_sizes.iter().filter(|&&m| 1 <= m && m <= n) {
            check_consistency(tree, m, n, &root, &neighbours(m, n));
        }
        check_frontier_restore(tree, n);
    });
}

#[test]
fn trees_at_the_edges_of_level_8_and_16_tiles_are_rfc_9162s() {
    for n in [
        255, 256, 257, 65_535, 65_536, 65_537, 131_071, 131_072, 131_073, 196_863,
    ] {
        check_large(
            n,
            &[0, 255, 256, 65_535, 65_536, n / 2, n - 1],
            &[1, 255, 256, 257, 65_535, 65_536, 65_537, n - 1, n],
        );
    }
}

fn size_index_old_size() -> impl Strategy<Value = (u64, u64, u64)> {
    (1..=LARGE).prop_flat_map(|n| (Just(n), 0..n, 1..=n))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_trees_up_to_a_million_leaves_are_rfc_9162s((n, i, m) in size_index_old_size()) {
        check_large(n, &[i], &[m]);
    }
}
