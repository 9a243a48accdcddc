//! The examples of C2SP `tlog-tiles` that the crate's tile paths, entry bundles and
//! stored levels must agree with.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use auditlog_tlog::{Frontier, TILE_WIDTH, TilePath, entry_bundle, parse_entry_bundle};

fn hashes(level: u8, index: u64, width: u64) -> TilePath {
    TilePath::Hashes {
        level,
        index,
        width,
    }
}

#[test]
fn a_tile_index_is_zero_padded_groups_of_three_digits_all_but_the_last_after_an_x() {
    for (index, encoded) in [
        (0, "000"),
        (7, "007"),
        (999, "999"),
        (1_000, "x001/000"),
        (1_234_067, "x001/x234/067"),
        (u64::MAX, "x018/x446/x744/x073/x709/x551/615"),
    ] {
        let path = format!("3/{encoded}");
        assert_eq!(hashes(3, index, TILE_WIDTH).to_path(), path);
        assert_eq!(TilePath::parse(&path), Some(hashes(3, index, TILE_WIDTH)));
        let entries = TilePath::Entries {
            index,
            width: TILE_WIDTH,
        };
        assert_eq!(entries.to_path(), format!("entries/{encoded}"));
        assert_eq!(
            TilePath::parse(&format!("entries/{encoded}")),
            Some(entries)
        );
    }
}

#[test]
fn a_partial_tile_is_named_by_its_width_from_1_to_255() {
    for width in [1, 17, 112, 255] {
        let path = format!("0/x001/x234/067.p/{width}");
        assert_eq!(hashes(0, 1_234_067, width).to_path(), path);
        assert_eq!(TilePath::parse(&path), Some(hashes(0, 1_234_067, width)));
    }
    for bad in [
        "0/000.p/0",
        "0/000.p/256",
        "0/000.p/017",
        "0/000.p/",
        "0/000.p/x1",
    ] {
        assert_eq!(TilePath::parse(bad), None, "{bad}");
    }
}

/// "A tree of size 70,000 will be represented by 273 full level 0 tiles, one
/// partial level 0 tile of width 112, one full level 1 tile, one partial level 1
/// tile of width 17, and one partial level 2 tile of width 1. Note that a tree of
/// size 256 will be represented by a full level 0 tile and a partial level 1 tile
/// of width 1." The partial tiles are what the crate's frontier is rebuilt from.
#[test]
fn the_partial_tiles_of_a_tree_are_the_specs_examples() {
    let partial_tiles = |size: u64| -> Vec<String> {
        Frontier::reads(size)
            .into_iter()
            .map(|read| {
                assert_eq!(read.start % TILE_WIDTH, 0, "{read:?} starts a tile");
                hashes(
                    read.level / 8,
                    read.start / TILE_WIDTH,
                    read.end - read.start,
                )
                .to_path()
            })
            .collect()
    };
    assert_eq!(
        partial_tiles(70_000),
        ["0/273.p/112", "1/001.p/17", "2/000.p/1"]
    );
    assert_eq!(partial_tiles(256), ["1/000.p/1"]);
    // "floor(s / 256**l) mod 256 entries"; "empty tiles MUST NOT be served".
    for size in [1, 255, 257, 65_535, 65_536, 16_777_216, 1 << 40] {
        for read in Frontier::reads(size) {
            let l = u32::from(read.level / 8);
            assert_eq!(read.end - read.start, (size / 256_u64.pow(l)) % 256);
            assert!(read.end > read.start);
        }
    }
}

#[test]
fn a_level_has_no_leading_zero_and_a_tree_of_u64_leaves_has_no_tile_above_7() {
    assert_eq!(TilePath::parse("7/000"), Some(hashes(7, 0, TILE_WIDTH)));
    for bad in [
        "00/000", "01/000", "8/000", "63/000", "64/000", "-1/000", "/000",
    ] {
        assert_eq!(TilePath::parse(bad), None, "{bad}");
    }
}

#[test]
fn an_entry_bundle_prefixes_each_entry_with_its_length_as_big_endian_u16() {
    let long = vec![b'x'; 300];
    let max = vec![b'y'; 65_535];
    let entries: [&[u8]; 3] = [&long, b"", &max];
    let bundle = entry_bundle(entries);
    assert_eq!(&bundle[..2], &[0x01, 0x2c]);
    assert_eq!(&bundle[302..304], &[0x00, 0x00]);
    assert_eq!(&bundle[304..306], &[0xff, 0xff]);
    assert_eq!(bundle.len(), 2 + 300 + 2 + 2 + 65_535);
    assert_eq!(parse_entry_bundle(&bundle).unwrap(), entries);
}
