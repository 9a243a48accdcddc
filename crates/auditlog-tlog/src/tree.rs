//! The RFC 9162 §2.1 Merkle tree: `leaf = SHA-256(0x00 || bytes)`,
//! `node = SHA-256(0x01 || left || right)`, `MTH({}) = SHA-256("")`.
//!
//! The store keeps the hashes at the tile levels 0, 8, 16, … only; a [`Plan`] says
//! which of them a root, an inclusion proof or a consistency proof needs (as a few
//! contiguous [`Read`]s touching at most two tiles per level, up to 511 hashes: a
//! proof may need the tile of its leaf or old size and the tile at the tree's
//! right edge) and then computes the answer from what was read. The sealer keeps
//! the right edge of the tree in a [`Frontier`] so that appending a leaf costs one
//! hash, plus one per completed tile.

use sha2::{Digest, Sha256};

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// The root of the empty tree: SHA-256 of nothing.
pub const EMPTY_ROOT: Hash = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// Levels between two stored levels: the height of a tlog-tiles hash tile.
const STORED_EVERY: u8 = 8;

/// The hash of a leaf's bytes.
pub fn leaf_hash(leaf: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x00]);
    hasher.update(leaf);
    hasher.finalize().into()
}

/// The hash of an interior node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x01]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// A complete subtree: the `2^level` leaves from `index << level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Node {
    pub level: u8,
    pub index: u64,
}

impl Node {
    /// The stored level below this node (0, 8, 16, …) and the range of indexes at
    /// that level whose hashes make it.
    fn stored_span(self) -> Read {
        let below = self.level % STORED_EVERY;
        Read {
            level: self.level - below,
            start: self.index << below,
            end: (self.index + 1) << below,
        }
    }
}

/// A contiguous range `[start, end)` of stored hashes at a stored `level` (0: the
/// leaf hashes; 8, 16, …: the hashes of complete subtrees of 256, 65 536, … leaves).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Read {
    pub level: u8,
    pub start: u64,
    pub end: u64,
}

/// Why a proof cannot be made or a computation finished.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("leaf index {index} is not in a tree of size {size}")]
    LeafBeyondTree { index: u64, size: u64 },
    #[error("a consistency proof needs 1 <= from <= to; got from {from}, to {to}")]
    BadRange { from: u64, to: u64 },
    #[error("the store returned {got} hashes at level {level} from {start}, {want} were needed")]
    MissingHashes {
        level: u8,
        start: u64,
        want: u64,
        got: u64,
    },
}

/// The largest power of two below `n` (n >= 2).
fn split(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// The complete subtrees whose hashes make `MTH(D[lo:hi])`, left to right, for a
/// range of the kind RFC 9162's recursion produces (`lo` a multiple of the largest
/// power of two below the range's length): the hash is the right fold
/// `node(h1, node(h2, … hk))`.
fn subtrees(mut lo: u64, hi: u64) -> Vec<Node> {
    let mut nodes = Vec::new();
    while lo < hi {
        let n = hi - lo;
        let k = if n.is_power_of_two() { n } else { split(n) };
        let level = k.trailing_zeros() as u8;
        nodes.push(Node {
            level,
            index: lo >> level,
        });
        lo += k;
    }
    nodes
}

/// RFC 9162 §2.1.3.1 `PATH(m, D[lo:hi])`: the ranges whose hashes form the audit
/// path, from the leaf up.
fn path_ranges(m: u64, lo: u64, hi: u64, out: &mut Vec<(u64, u64)>) {
    let n = hi - lo;
    if n <= 1 {
        return;
    }
    let k = split(n);
    if m - lo < k {
        path_ranges(m, lo, lo + k, out);
        out.push((lo + k, hi));
    } else {
        path_ranges(m, lo + k, hi, out);
        out.push((lo, lo + k));
    }
}

/// RFC 9162 §2.1.4.1 `SUBPROOF(m, D[lo:hi], b)`, `m` counted from `lo`.
fn subproof_ranges(m: u64, lo: u64, hi: u64, whole: bool, out: &mut Vec<(u64, u64)>) {
    let n = hi - lo;
    if m == n {
        if !whole {
            out.push((lo, hi));
        }
        return;
    }
    let k = split(n);
    if m <= k {
        subproof_ranges(m, lo, lo + k, whole, out);
        out.push((lo + k, hi));
    } else {
        subproof_ranges(m - k, lo + k, hi, false, out);
        out.push((lo, lo + k));
    }
}

/// What a root or a proof needs from the store, and how to compute it from what was
/// read: each output hash is `MTH` of one range of leaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    ranges: Vec<(u64, u64)>,
    /// `Plan::root(0)`: no range, one answer.
    empty_tree: bool,
}

impl Plan {
    /// The root of the tree of the first `size` leaves (one hash; [`EMPTY_ROOT`]
    /// for size 0, which needs no read).
    pub fn root(size: u64) -> Plan {
        Plan {
            ranges: if size == 0 { vec![] } else { vec![(0, size)] },
            empty_tree: size == 0,
        }
    }

    /// The audit path of leaf `index` in the tree of `size` leaves.
    pub fn inclusion(index: u64, size: u64) -> Result<Plan, ProofError> {
        if index >= size {
            return Err(ProofError::LeafBeyondTree { index, size });
        }
        let mut ranges = Vec::new();
        path_ranges(index, 0, size, &mut ranges);
        Ok(Plan {
            ranges,
            empty_tree: false,
        })
    }

    /// The proof that the tree of `from` leaves is a prefix of the tree of `to`.
    pub fn consistency(from: u64, to: u64) -> Result<Plan, ProofError> {
        if from == 0 || from > to {
            return Err(ProofError::BadRange { from, to });
        }
        let mut ranges = Vec::new();
        subproof_ranges(from, 0, to, true, &mut ranges);
        Ok(Plan {
            ranges,
            empty_tree: false,
        })
    }

    /// The stored hashes to read, merged into contiguous runs per level.
    pub fn reads(&self) -> Vec<Read> {
        let mut spans: Vec<Read> = self
            .ranges
            .iter()
            .flat_map(|&(lo, hi)| subtrees(lo, hi))
            .map(Node::stored_span)
            .collect();
        spans.sort_unstable();
        let mut merged: Vec<Read> = Vec::with_capacity(spans.len());
        for span in spans {
            match merged.last_mut() {
                Some(last) if last.level == span.level && span.start <= last.end => {
                    last.end = last.end.max(span.end);
                }
                _ => merged.push(span),
            }
        }
        merged
    }

    /// The plan's hashes (the root, or the proof in RFC 9162 order) from the hashes
    /// the store returned for [`Plan::reads`], in the same order.
    pub fn hashes(&self, read: &[(Read, Vec<Hash>)]) -> Result<Vec<Hash>, ProofError> {
        for (span, hashes) in read {
            let want = span.end - span.start;
            if hashes.len() as u64 != want {
                return Err(ProofError::MissingHashes {
                    level: span.level,
                    start: span.start,
                    want,
                    got: hashes.len() as u64,
                });
            }
        }
        let node = |node: Node| -> Result<Hash, ProofError> {
            let span = node.stored_span();
            let (covering, hashes) = read
                .iter()
                .find(|(r, _)| r.level == span.level && r.start <= span.start && span.end <= r.end)
                .ok_or(ProofError::MissingHashes {
                    level: span.level,
                    start: span.start,
                    want: span.end - span.start,
                    got: 0,
                })?;
            let from = (span.start - covering.start) as usize;
            let to = (span.end - covering.start) as usize;
            Ok(subtree_hash(&hashes[from..to]))
        };
        if self.empty_tree {
            return Ok(vec![EMPTY_ROOT]);
        }
        self.ranges
            .iter()
            .map(|&(lo, hi)| fold(subtrees(lo, hi).into_iter().map(node)))
            .collect()
    }
}

/// The right fold `node(h1, node(h2, … hk))` of complete subtrees' hashes.
fn fold(
    hashes: impl DoubleEndedIterator<Item = Result<Hash, ProofError>>,
) -> Result<Hash, ProofError> {
    let mut hashes = hashes.rev();
    let mut acc = hashes.next().unwrap_or(Ok(EMPTY_ROOT))?;
    for left in hashes {
        acc = node_hash(&left?, &acc);
    }
    Ok(acc)
}

/// The hash of a complete subtree from its hashes one stored level down (a power
/// of two of them), pairing neighbours level by level.
pub fn subtree_hash(hashes: &[Hash]) -> Hash {
    let Some(first) = hashes.first() else {
        return EMPTY_ROOT;
    };
    if hashes.len() == 1 {
        return *first;
    }
    let mut level: Vec<Hash> = hashes.to_vec();
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|pair| match pair {
                [left, right] => node_hash(left, right),
                _ => pair[0],
            })
            .collect();
    }
    level[0]
}

/// The right edge of a growing tree, as the sealer keeps it: for each stored level,
/// the hashes of the tile not yet complete. Appending a leaf hashes one leaf; each
/// completed tile yields one new stored node one tile level up.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Frontier {
    size: u64,
    /// `tiles[t]`: the hashes at level `8t` from the start of the incomplete tile.
    tiles: Vec<Vec<Hash>>,
}

impl Frontier {
    /// The stored hashes a frontier of `size` leaves is rebuilt from: the
    /// incomplete tile of each stored level.
    pub fn reads(size: u64) -> Vec<Read> {
        let mut reads = Vec::new();
        let mut level = 0_u8;
        while level < 64 && size >> level > 0 {
            let end = size >> level;
            let start = end & !(crate::TILE_WIDTH - 1);
            if start < end {
                reads.push(Read { level, start, end });
            }
            level += STORED_EVERY;
        }
        reads
    }

    /// The frontier of `size` leaves from the hashes of [`Frontier::reads`].
    pub fn restore(size: u64, read: &[(Read, Vec<Hash>)]) -> Result<Frontier, ProofError> {
        let mut tiles = Vec::new();
        for span in Frontier::reads(size) {
            let found = read.iter().find(|(r, _)| *r == span);
            let hashes = found.map_or(&[][..], |(_, hashes)| hashes.as_slice());
            if hashes.len() as u64 != span.end - span.start {
                return Err(ProofError::MissingHashes {
                    level: span.level,
                    start: span.start,
                    want: span.end - span.start,
                    got: hashes.len() as u64,
                });
            }
            let t = usize::from(span.level / STORED_EVERY);
            tiles.resize(t + 1, Vec::new());
            tiles[t] = hashes.to_vec();
        }
        Ok(Frontier { size, tiles })
    }

    /// Leaves in the tree.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends one leaf hash; the stored nodes it completes (at levels 8, 16, …)
    /// are pushed to `completed`.
    pub fn append(&mut self, leaf: Hash, completed: &mut Vec<(Node, Hash)>) {
        self.size += 1;
        let mut carry = leaf;
        let mut t = 0;
        loop {
            if self.tiles.len() <= t {
                self.tiles
                    .push(Vec::with_capacity(crate::TILE_WIDTH as usize));
            }
            self.tiles[t].push(carry);
            if self.tiles[t].len() as u64 != crate::TILE_WIDTH {
                return;
            }
            carry = subtree_hash(&self.tiles[t]);
            self.tiles[t].clear();
            let level = (t as u8 + 1) * STORED_EVERY;
            completed.push((
                Node {
                    level,
                    index: (self.size >> level) - 1,
                },
                carry,
            ));
            t += 1;
        }
    }

    /// The root of the tree as it stands.
    pub fn root(&self) -> Hash {
        let nodes = subtrees(0, self.size).into_iter().map(|node| {
            let span = node.stored_span();
            let t = usize::from(span.level / STORED_EVERY);
            let tile_start = (self.size >> span.level) & !(crate::TILE_WIDTH - 1);
            let from = (span.start - tile_start) as usize;
            let to = (span.end - tile_start) as usize;
            Ok(subtree_hash(&self.tiles[t][from..to]))
        });
        fold(nodes).unwrap_or(EMPTY_ROOT)
    }
}

/// RFC 9162 §2.1.3.2: whether `proof` shows the leaf with hash `leaf` at `index`
/// in the tree of `size` leaves whose root is `root`.
pub fn verify_inclusion(index: u64, size: u64, leaf: &Hash, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if snode == 0 {
            return false;
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    snode == 0 && r == *root
}

/// RFC 9162 §2.1.4.2: whether `proof` shows that the tree of `from` leaves with
/// root `from_root` is a prefix of the tree of `to` leaves with root `to_root`.
pub fn verify_consistency(
    from: u64,
    to: u64,
    from_root: &Hash,
    to_root: &Hash,
    proof: &[Hash],
) -> bool {
    if from == 0 || from > to {
        return false;
    }
    if from == to {
        return proof.is_empty() && from_root == to_root;
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if from.is_power_of_two() {
        path.push(*from_root);
    }
    path.extend_from_slice(proof);
    let Some((first, rest)) = path.split_first() else {
        return false;
    };
    let (mut fnode, mut snode) = (from - 1, to - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if snode == 0 {
            return false;
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    snode == 0 && fr == *from_root && sr == *to_root
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code: a panic is the failure report
mod tests {
    use super::*;

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    /// MTH straight from RFC 9162's definition.
    fn mth(d: &[Hash]) -> Hash {
        match d.len() {
            0 => EMPTY_ROOT,
            1 => d[0],
            n => {
                let k = split(n as u64) as usize;
                node_hash(&mth(&d[..k]), &mth(&d[k..]))
            }
        }
    }

    /// Everything a plan may read, from an in-memory list of leaf hashes.
    fn read_all(leaves: &[Hash], plan_reads: &[Read]) -> Vec<(Read, Vec<Hash>)> {
        plan_reads
            .iter()
            .map(|r| {
                let width = 1_usize << r.level;
                let hashes = (r.start..r.end)
                    .map(|i| {
                        let from = i as usize * width;
                        mth(&leaves[from..from + width])
                    })
                    .collect();
                (*r, hashes)
            })
            .collect()
    }

    #[test]
    fn the_empty_root_is_sha256_of_nothing() {
        assert_eq!(EMPTY_ROOT, <[u8; 32]>::from(Sha256::digest(b"")));
        assert_eq!(Plan::root(0).hashes(&[]).unwrap(), vec![EMPTY_ROOT]);
    }

    #[test]
    fn roots_and_proofs_agree_with_the_definition_across_tile_boundaries() {
        let all = leaves(700);
        for size in [1_u64, 2, 3, 255, 256, 257, 511, 512, 513, 700] {
            let d = &all[..size as usize];
            let plan = Plan::root(size);
            let root = plan.hashes(&read_all(d, &plan.reads())).unwrap()[0];
            assert_eq!(root, mth(d), "size {size}");
            for index in [0, size / 2, size - 1] {
                let plan = Plan::inclusion(index, size).unwrap();
                let proof = plan.hashes(&read_all(d, &plan.reads())).unwrap();
                assert!(verify_inclusion(
                    index,
                    size,
                    &d[index as usize],
                    &proof,
                    &root
                ));
            }
            for from in [1, size / 3 + 1, size] {
                let plan = Plan::consistency(from, size).unwrap();
                let proof = plan.hashes(&read_all(d, &plan.reads())).unwrap();
                let old = mth(&d[..from as usize]);
                assert!(
                    verify_consistency(from, size, &old, &root, &proof),
                    "{from}->{size}"
                );
            }
        }
    }

    #[test]
    fn the_frontier_keeps_the_root_and_names_each_completed_tile() {
        let all = leaves(66_000);
        let mut frontier = Frontier::default();
        let mut completed = Vec::new();
        for (i, leaf) in all.iter().enumerate() {
            frontier.append(*leaf, &mut completed);
            let n = i + 1;
            if [1, 2, 255, 256, 257, 65_535, 65_536, 65_537, 66_000].contains(&n) {
                assert_eq!(frontier.root(), mth(&all[..n]), "size {n}");
            }
        }
        assert_eq!(completed.len(), 66_000 / 256 + 1);
        assert_eq!(
            completed[0],
            (Node { level: 8, index: 0 }, mth(&all[..256]))
        );
        let top = completed.iter().find(|(node, _)| node.level == 16).unwrap();
        assert_eq!(top.1, mth(&all[..65_536]));

        let restored =
            Frontier::restore(66_000, &read_all(&all, &Frontier::reads(66_000))).unwrap();
        assert_eq!(restored, frontier);
    }

    #[test]
    fn bad_sizes_are_errors() {
        assert!(Plan::inclusion(3, 3).is_err());
        assert!(Plan::consistency(0, 3).is_err());
        assert!(Plan::consistency(4, 3).is_err());
        assert!(Plan::consistency(3, 3).unwrap().reads().is_empty());
    }
}
