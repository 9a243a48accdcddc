//! The rule for keeping a client's request id, on bytes and with `std` only, so
//! that the fuzz target (`fuzz/edge`) compiles this very file without the rest of
//! the HTTP edge.

/// Longest request id kept from a client: what an event's `requestId` may hold
/// (`auditlog_event::MAX_LABEL_CHARS`; `request_id` checks that they agree).
pub const MAX_CHARS: usize = 128;

/// Whether `id` is 1 to [`MAX_CHARS`] visible ASCII characters (no spaces or
/// control characters): safe in a header, a log line and an event.
pub fn is_sane(id: &[u8]) -> bool {
    !id.is_empty() && id.len() <= MAX_CHARS && id.iter().all(u8::is_ascii_graphic)
}

/// The client's id among the `values` of its `X-Request-Id` headers: the one value
/// when there is exactly one and it is sane.
pub fn client_id<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Option<&'a str> {
    let mut values = values.into_iter();
    let first = values.next()?;
    if values.next().is_some() || !is_sane(first) {
        return None;
    }
    std::str::from_utf8(first).ok()
}
