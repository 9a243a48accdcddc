//! The CSV writer of every export: whatever a field holds, the cell a spreadsheet
//! reads back is that text, behind a `'` when it starts like a formula, and never
//! a formula; and a row of such cells reads back as those cells.
#![no_main]

#[path = "../../../crates/auditlog-http/src/csv.rs"]
#[allow(dead_code)]
mod csv;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut out = Vec::new();
    csv::write_cell(&text, &mut out);
    let field = std::str::from_utf8(&out).expect("a cell of text is written as text");
    assert!(
        csv::is_safe_encoding_of(&text, field),
        "{text:?} was written as {field:?}"
    );
});
