//! The benchmark harness behind `auditlog bench`: end-to-end ingest through the
//! real transports and stores ([`ingest`]), query latency as the store grows
//! ([`query`]), and the primary API's throughput with auditing on and off
//! ([`api`]). Each prints a table, or one stable JSON object with `--json`.
//!
//! Being an operator tool at the binary's edge, it reports errors with `anyhow`.

pub mod api;
mod ceiling;
pub mod cpu;
pub mod ingest;
pub mod proxy;
pub mod query;
pub mod stats;
mod workload;

/// The store a run measures: the one `store_url` names, or a fresh SQLite file in
/// `scratch`. Returns its URL with it.
async fn open_store(
    store_url: Option<&str>,
    scratch: &std::path::Path,
) -> anyhow::Result<(String, std::sync::Arc<dyn auditlog_store::AuditStore>)> {
    use anyhow::Context;
    let url = store_url.map_or_else(
        || format!("sqlite://{}", scratch.join("audit.db").display()),
        str::to_owned,
    );
    let store = auditlog_store::open(&url)
        .await
        .with_context(|| format!("while opening {}", auditlog_store::redact(&url)))?;
    Ok((url, store))
}

/// Events per second, readable: `123 456/s`.
pub fn per_sec(value: f64) -> String {
    let whole = value.round() as u64;
    let digits = whole.to_string();
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(' ');
        }
        grouped.push(c);
    }
    format!("{grouped}/s")
}

impl ingest::IngestReport {
    /// The human-readable table.
    pub fn table(&self) -> String {
        let rss = |kib: u64| format!("{:.1} MiB", kib as f64 / 1024.0);
        let mut lines = vec![
            format!(
                "ingest: {} events, {} producers, {} transport, {} store",
                self.events, self.producers, self.transport, self.store
            ),
            format!(
                "  lost / duplicated      {} / {}",
                self.lost, self.duplicated
            ),
            format!(
                "  dropped / spilled      {} / {} (by the emitters)",
                self.dropped_by_emitters, self.spilled_by_emitters
            ),
            format!("  emitted                {}", per_sec(self.emitted_per_sec)),
            format!("  stored (emit→stored)   {}", per_sec(self.stored_per_sec)),
            format!(
                "  store ceiling          {}  (stored/s = {:.0}% of it)",
                per_sec(self.ceiling_per_sec),
                self.fraction_of_ceiling * 100.0
            ),
            format!(
                "  emit() latency         p50 {} ns, p99 {} ns",
                self.emit_p50_ns, self.emit_p99_ns
            ),
            format!(
                "  freshness (emit→query) p50 {:.1} ms, p99 {:.1} ms ({} samples)",
                self.freshness_p50_ms, self.freshness_p99_ms, self.freshness_samples
            ),
            format!("  peak RSS bench         {}", rss(self.bench_peak_rss_kib)),
        ];
        if let Some(auditor) = self.auditor_peak_rss_kib {
            lines.push(format!("  peak RSS auditor       {}", rss(auditor)));
        }
        lines.push(format!("  wall time              {:.1} s", self.seconds));
        lines.join("\n")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rates_are_grouped_by_thousands() {
        assert_eq!(super::per_sec(1_234_567.4), "1 234 567/s");
        assert_eq!(super::per_sec(999.0), "999/s");
    }
}
