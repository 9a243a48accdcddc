//! Percentiles and process memory, the two measurements every benchmark reports.

use serde::Serialize;

/// Latency percentiles of a set of samples, in the samples' unit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    pub count: usize,
    pub p50: u64,
    pub p99: u64,
    pub max: u64,
}

/// Nearest-rank percentiles; an empty set gives zeros.
pub fn percentiles(mut samples: Vec<u64>) -> Percentiles {
    if samples.is_empty() {
        return Percentiles::default();
    }
    samples.sort_unstable();
    let rank = |p: f64| {
        let index = ((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1;
        samples[index]
    };
    Percentiles {
        count: samples.len(),
        p50: rank(0.50),
        p99: rank(0.99),
        max: samples[samples.len() - 1],
    }
}

/// Exact nearest-rank percentiles of many whole-number samples (milliseconds of
/// lag) in memory bounded by the number of distinct values, not of samples: a
/// count per value. [`Histogram::percentiles`] agrees with [`percentiles`] of the
/// same samples.
#[derive(Debug, Clone, Default)]
pub struct Histogram {
    counts: std::collections::BTreeMap<u64, u64>,
    total: u64,
}

impl Histogram {
    pub fn record(&mut self, value: u64) {
        *self.counts.entry(value).or_default() += 1;
        self.total += 1;
    }

    /// Samples recorded.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// Nearest-rank percentiles; an empty histogram gives zeros.
    pub fn percentiles(&self) -> Percentiles {
        let Some((&max, _)) = self.counts.last_key_value() else {
            return Percentiles::default();
        };
        let rank = |p: f64| ((p * self.total as f64).ceil() as u64).clamp(1, self.total);
        let at = |rank: u64| {
            let mut seen = 0;
            for (&value, &count) in &self.counts {
                seen += count;
                if seen >= rank {
                    return value;
                }
            }
            max
        };
        Percentiles {
            count: self.total as usize,
            p50: at(rank(0.50)),
            p99: at(rank(0.99)),
            max,
        }
    }
}

/// Peak resident memory (VmHWM) of a process, in KiB; 0 when unknown.
pub fn peak_rss_kib(pid: u32) -> u64 {
    proc_status_kib(&format!("/proc/{pid}/status"), "VmHWM:")
}

/// Peak resident memory of this process, in KiB.
pub fn own_peak_rss_kib() -> u64 {
    proc_status_kib("/proc/self/status", "VmHWM:")
}

fn proc_status_kib(path: &str, key: &str) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with(key))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kib| kib.parse().ok())
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let p = percentiles((1..=100).collect());
        assert_eq!((p.count, p.p50, p.p99, p.max), (100, 50, 99, 100));
        assert_eq!(percentiles(vec![7]).p99, 7);
        assert_eq!(percentiles(Vec::new()), Percentiles::default());
    }

    #[test]
    fn a_histogram_gives_the_percentiles_of_its_samples() {
        let samples: Vec<u64> = (0..1_000).map(|n| (n * 7_919) % 301).collect();
        let mut histogram = Histogram::default();
        for &sample in &samples {
            histogram.record(sample);
        }

        assert_eq!(histogram.percentiles(), percentiles(samples));
        assert_eq!(histogram.count(), 1_000);
        assert_eq!(Histogram::default().percentiles(), Percentiles::default());
    }

    #[test]
    fn this_process_has_a_peak_rss() {
        assert!(own_peak_rss_kib() > 0);
    }
}
