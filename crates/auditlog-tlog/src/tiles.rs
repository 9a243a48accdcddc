//! C2SP `tlog-tiles`: the paths of hash tiles and entry bundles, and the bundles'
//! framing. A hash tile at level `L` and index `N` holds the hashes of the nodes at
//! tree level `8L` numbered `256N` to `256N + 255` (fewer in a partial tile, whose
//! path ends `.p/<width>`); an entry bundle holds the leaves `256N` onwards, each
//! after its length as two big-endian bytes.

/// Levels of the tree per tile.
pub const TILE_HEIGHT: u8 = 8;

/// Hashes (or entries) in a full tile.
pub const TILE_WIDTH: u64 = 256;

/// A path under `tile/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TilePath {
    /// `tile/<level>/<index>[.p/<width>]`
    Hashes { level: u8, index: u64, width: u64 },
    /// `tile/entries/<index>[.p/<width>]`
    Entries { index: u64, width: u64 },
}

impl TilePath {
    /// Reads the part of a path after `tile/`. `width` is 256 for a full tile.
    pub fn parse(path: &str) -> Option<TilePath> {
        let (head, rest) = path.split_once('/')?;
        let (index, width) = parse_index(rest)?;
        if head == "entries" {
            return Some(TilePath::Entries { index, width });
        }
        if head.is_empty() || head.len() > 2 || !head.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let level: u8 = head.parse().ok()?;
        if (head.len() > 1 && head.starts_with('0')) || level > 7 {
            return None;
        }
        Some(TilePath::Hashes {
            level,
            index,
            width,
        })
    }

    /// The path after `tile/`.
    pub fn to_path(self) -> String {
        let (head, index, width) = match self {
            TilePath::Hashes {
                level,
                index,
                width,
            } => (level.to_string(), index, width),
            TilePath::Entries { index, width } => ("entries".to_owned(), index, width),
        };
        let mut path = format!("{head}/{}", encode_index(index));
        if width < TILE_WIDTH {
            path.push_str(&format!(".p/{width}"));
        }
        path
    }
}

/// `x001/x234/067` for 1 234 067: groups of three digits, all but the last
/// prefixed with `x`.
fn encode_index(index: u64) -> String {
    let digits = index.to_string();
    let padded = format!("{}{digits}", "0".repeat((3 - digits.len() % 3) % 3));
    let groups: Vec<&str> = padded
        .as_bytes()
        .chunks(3)
        .map(|c| std::str::from_utf8(c).unwrap_or("000"))
        .collect();
    let last = groups.len() - 1;
    groups
        .iter()
        .enumerate()
        .map(|(i, g)| {
            if i < last {
                format!("x{g}")
            } else {
                (*g).to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The index and width of `x001/x234/067[.p/W]`.
fn parse_index(text: &str) -> Option<(u64, u64)> {
    let (index_text, width) = match text.split_once(".p/") {
        Some((index, width)) => {
            let valid = !width.is_empty()
                && width.bytes().all(|b| b.is_ascii_digit())
                && !width.starts_with('0');
            let width: u64 = width.parse().ok().filter(|w| valid && *w < TILE_WIDTH)?;
            (index, width)
        }
        None => (text, TILE_WIDTH),
    };
    let groups: Vec<&str> = index_text.split('/').collect();
    let (last, leading) = groups.split_last()?;
    let mut digits = String::new();
    for group in leading {
        let group = group.strip_prefix('x')?;
        digits.push_str(group);
        if group.len() != 3 {
            return None;
        }
    }
    if last.len() != 3 {
        return None;
    }
    digits.push_str(last);
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // A non-canonical encoding (a leading all-zero group) names no tile.
    if groups.len() > 1 && leading.first().is_some_and(|g| *g == "x000") {
        return None;
    }
    Some((digits.parse().ok()?, width))
}

/// An entry bundle of `leaves`, each prefixed with its length (at most 65 535).
pub fn entry_bundle<'a>(leaves: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut bundle = Vec::new();
    for leaf in leaves {
        let len = u16::try_from(leaf.len()).unwrap_or(u16::MAX);
        bundle.extend_from_slice(&len.to_be_bytes());
        bundle.extend_from_slice(&leaf[..usize::from(len)]);
    }
    bundle
}

/// The leaves of an entry bundle; `None` when its framing is broken.
pub fn parse_entry_bundle(mut bundle: &[u8]) -> Option<Vec<&[u8]>> {
    let mut leaves = Vec::new();
    while !bundle.is_empty() {
        let (len, rest) = bundle.split_at_checked(2)?;
        let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
        let (leaf, rest) = rest.split_at_checked(len)?;
        leaves.push(leaf);
        bundle = rest;
    }
    Some(leaves)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code: a panic is the failure report
mod tests {
    use super::*;

    #[test]
    fn paths_follow_the_spec_examples() {
        let tile = TilePath::Hashes {
            level: 0,
            index: 1_234_067,
            width: 256,
        };
        assert_eq!(tile.to_path(), "0/x001/x234/067");
        assert_eq!(TilePath::parse("0/x001/x234/067"), Some(tile));
        let partial = TilePath::Entries {
            index: 5,
            width: 17,
        };
        assert_eq!(partial.to_path(), "entries/005.p/17");
        assert_eq!(TilePath::parse("entries/005.p/17"), Some(partial));
        assert_eq!(
            TilePath::parse("2/000"),
            Some(TilePath::Hashes {
                level: 2,
                index: 0,
                width: 256
            })
        );
        for bad in [
            "0/5",
            "0/0005",
            "0/x000/005",
            "0/001.p/0",
            "0/001.p/256",
            "0/001.p/07",
            "8/000",
            "01/000",
            "a/000",
            "0/x1/000",
            "0/001/",
        ] {
            assert_eq!(TilePath::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_bundle_round_trips() {
        let leaves: [&[u8]; 3] = [b"{}", b"", b"abc"];
        let bundle = entry_bundle(leaves);
        assert_eq!(&bundle[..4], &[0, 2, b'{', b'}']);
        assert_eq!(parse_entry_bundle(&bundle).unwrap(), leaves);
        assert_eq!(parse_entry_bundle(&bundle[..bundle.len() - 1]), None);
    }
}
