//! The benchmark harness behind `auditlog bench`: end-to-end ingest through the
//! real transports and stores ([`ingest`]), query latency as the store grows
//! ([`query`]) with the log's proofs and sealing, and over HTTP ([`query_http`]), and the primary API's throughput with auditing on and off
//! ([`api`]). Each prints a table, or one stable JSON object with `--json`.
//!
//! Being an operator tool at the binary's edge, it reports errors with `anyhow`.

pub mod api;
mod ceiling;
pub mod cpu;
pub mod ingest;
mod lag;
pub mod proxy;
pub mod query;
pub mod query_http;
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
                "ingest: {} events, {} producers ({}), {} transport, {} store",
                self.events,
                self.producers,
                match self.message_format {
                    ingest::MessageFormat::Batch => "batched messages",
                    ingest::MessageFormat::Single => "one event per message",
                },
                self.transport,
                self.store
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
            match (self.broker_ceiling_per_sec, self.fraction_of_broker_ceiling) {
                (Some(ceiling), Some(fraction)) => format!(
                    "  broker ceiling         {}  (stored/s = {:.0}% of it)",
                    per_sec(ceiling),
                    fraction * 100.0
                ),
                _ => "  broker ceiling         (single-event messages only)".into(),
            },
            format!(
                "  {}         p50 {} ns, p99 {} ns",
                match self.message_format {
                    ingest::MessageFormat::Batch => "emit() latency",
                    ingest::MessageFormat::Single => "publish call  ",
                },
                self.emit_p50_ns,
                self.emit_p99_ns
            ),
            format!(
                "  freshness (emit→query) p50 {:.1} ms, p99 {:.1} ms ({} samples)",
                self.freshness_p50_ms, self.freshness_p99_ms, self.freshness_samples
            ),
            format!(
                "  sealed (→ checkpoint)  {}  (tree {}, checkpoint {}: {})",
                per_sec(self.sealed_per_sec),
                self.tree_size,
                self.checkpoint_size,
                if self.tree_caught_up {
                    "caught up"
                } else {
                    "BEHIND the stored events"
                }
            ),
            format!(
                "  checkpoint lag         p50 {} ms, p99 {} ms, max {} ms ({} events)",
                self.checkpoint_lag_p50_ms,
                self.checkpoint_lag_p99_ms,
                self.checkpoint_lag_max_ms,
                self.checkpoint_lag_samples
            ),
            format!(
                "    after the last emit  p50 {} ms, p99 {} ms ({} events)",
                self.checkpoint_lag_after_emitting_p50_ms,
                self.checkpoint_lag_after_emitting_p99_ms,
                self.checkpoint_lag_after_emitting_samples
            ),
            format!("  peak RSS bench         {}", rss(self.bench_peak_rss_kib)),
        ];
        if let Some(auditor) = self.auditor_peak_rss_kib {
            lines.push(format!("  peak RSS auditor       {}", rss(auditor)));
        }
        if let Some(cpu) = &self.cpu_per_event {
            lines.push(format!(
                "  CPU per stored event   {} auditor(s) {:.1} µs ({}), {} {}, RabbitMQ {:.1} µs, producers {:.1} µs",
                self.auditors,
                cpu.auditors_total_us,
                cpu.auditors_each(),
                cpu.store_server.as_deref().unwrap_or("store"),
                cpu.store_server_us
                    .map_or("in the auditor".to_owned(), |us| format!("{us:.1} µs")),
                cpu.rabbitmq_us,
                cpu.producers_us
            ));
        }
        lines.push(format!("  wall time              {:.1} s", self.seconds));
        lines.join("\n")
    }
}

impl ingest::CpuPerEvent {
    /// Each auditor's µs per stored event, `a + b + c`.
    fn auditors_each(&self) -> String {
        let each: Vec<String> = self
            .auditors_us
            .iter()
            .map(|us| format!("{us:.1}"))
            .collect();
        each.join(" + ")
    }
}

impl ingest::ScalingReport {
    /// The human-readable table: one line per number of auditors, then the model.
    pub fn table(&self) -> String {
        let mut lines = Vec::new();
        if let Some(first) = self.runs.first() {
            lines.push(format!(
                "ingest with several auditors: {} events per run, {} producers ({}), {} transport, {} store",
                first.events,
                first.producers,
                match first.message_format {
                    ingest::MessageFormat::Batch => "batched messages",
                    ingest::MessageFormat::Single => "one event per message",
                },
                first.transport,
                first.store
            ));
        }
        lines.push(
            "  auditors   stored/s   lost  dup  CPU µs per stored event: auditors (each) / server / RabbitMQ / producers"
                .into(),
        );
        for run in &self.runs {
            let cpu = run.cpu_per_event.as_ref().map_or(String::new(), |cpu| {
                format!(
                    "{:.1} ({}) / {} / {:.1} / {:.1}",
                    cpu.auditors_total_us,
                    cpu.auditors_each(),
                    cpu.store_server_us
                        .map_or("-".to_owned(), |us| format!("{us:.1}")),
                    cpu.rabbitmq_us,
                    cpu.producers_us
                )
            });
            lines.push(format!(
                "  {:>8} {:>10} {:>6} {:>4}  {}",
                run.auditors,
                per_sec(run.stored_per_sec),
                run.lost,
                run.duplicated,
                cpu
            ));
        }
        lines.push("  model (cores enough for every process; see docs/operations.md):".into());
        lines
            .push("  auditors   measured   per auditor   one queue  one writer       model".into());
        for row in &self.model {
            lines.push(format!(
                "  {:>8} {:>10} {:>13} {:>11} {:>11} {:>11}",
                row.auditors,
                per_sec(row.measured_per_sec),
                per_sec(row.per_auditor_per_sec),
                per_sec(row.broker_per_sec),
                row.store_per_sec.map_or("-".to_owned(), per_sec),
                per_sec(row.model_per_sec)
            ));
        }
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
