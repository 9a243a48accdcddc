//! CPU time a process's threads have spent so far, read from Linux's `/proc`, split
//! by how the scheduler treats them: threads at the process's own priority (its
//! main thread's), and those that yield to them (`SCHED_IDLE`, or a higher nice
//! value). In `auditlog up` the second kind are the in-process auditor's: its
//! runtime and the audit store's connection threads, which inherit its priority.
//! Comparing with the main thread keeps the split right when the whole process
//! runs under `nice`. Throughput alone cannot tell
//! which side of the process a request's CPU time went to; this can.
//!
//! [`process_ns`] and [`named_ns`] read whole processes instead (every thread,
//! ended ones too, and the children they reaped), for `bench ingest --auditors`:
//! how much CPU the auditors, the database server and the broker each spent.

use std::path::Path;

/// Linux's number for the `SCHED_IDLE` policy, as `/proc/…/stat` shows it.
const SCHED_IDLE: i64 = 5;

/// Nanoseconds on CPU, summed over a process's threads, by priority.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTime {
    /// Threads at the process's own priority.
    pub normal_ns: u64,
    /// Threads that yield to them.
    pub yielding_ns: u64,
}

impl CpuTime {
    /// Both kinds together.
    pub fn total_ns(&self) -> u64 {
        self.normal_ns + self.yielding_ns
    }

    /// What was spent between `earlier` and this reading (threads that ended in
    /// between take their time with them, so a kind never goes below zero).
    pub fn since(&self, earlier: &CpuTime) -> CpuTime {
        CpuTime {
            normal_ns: self.normal_ns.saturating_sub(earlier.normal_ns),
            yielding_ns: self.yielding_ns.saturating_sub(earlier.yielding_ns),
        }
    }
}

/// The CPU time of process `pid`'s live threads; `None` where `/proc` does not
/// say (not Linux, or the process is gone).
pub fn of_process(pid: u32) -> Option<CpuTime> {
    let tasks = Path::new("/proc").join(pid.to_string()).join("task");
    let main = priority(&std::fs::read_to_string(tasks.join(pid.to_string()).join("stat")).ok()?)?;
    let mut time = CpuTime::default();
    for task in std::fs::read_dir(&tasks).ok()?.flatten() {
        // A thread that ended since the listing is simply not counted.
        if let Some((ns, priority)) = thread(&task.path()) {
            if priority.yields_to(&main) {
                time.yielding_ns += ns;
            } else {
                time.normal_ns += ns;
            }
        }
    }
    Some(time)
}

/// How the scheduler treats a thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Priority {
    nice: i64,
    idle: bool,
}

impl Priority {
    /// Whether the scheduler gives `other` the CPU before this one.
    fn yields_to(&self, other: &Priority) -> bool {
        (self.idle && !other.idle) || (self.idle == other.idle && self.nice > other.nice)
    }
}

/// One thread's time on CPU (ns) and its priority.
fn thread(task: &Path) -> Option<(u64, Priority)> {
    let schedstat = std::fs::read_to_string(task.join("schedstat")).ok()?;
    let stat = std::fs::read_to_string(task.join("stat")).ok()?;
    Some((on_cpu_ns(&schedstat)?, priority(&stat)?))
}

/// Linux's `USER_HZ`, the unit of `/proc/…/stat`'s times: fixed at 100 ticks a
/// second for user space on every architecture, whatever the kernel's own tick.
const NS_PER_TICK: u64 = 10_000_000;

/// CPU time (user and system) of process `pid`, all its threads, live or ended,
/// plus that of its children it has reaped, in nanoseconds; `None` when `/proc`
/// does not say. Counting reaped children keeps the sum over a server's
/// processes steady when one of its workers exits (a PostgreSQL backend's time
/// moves to the postmaster's children's time).
pub fn process_ns(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    process_ticks(&stat).map(|ticks| ticks * NS_PER_TICK)
}

/// `utime + stime + cutime + cstime` (fields 14 to 17) of a `stat` line.
fn process_ticks(stat: &str) -> Option<u64> {
    let (_, after_name) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    (14..=17).try_fold(0_u64, |sum, n| {
        let ticks: i64 = fields.get(n - 3)?.parse().ok()?;
        Some(sum + u64::try_from(ticks).ok()?)
    })
}

/// The processes whose command name (`/proc/PID/comm`) is `name`, e.g.
/// `postgres`, `mariadbd` or `beam.smp` (RabbitMQ's Erlang VM).
pub fn pids_named(name: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim_end() == name)
        })
        .collect()
}

/// [`process_ns`] summed over every process named `name` (0 when there is none):
/// a server of many processes as one.
pub fn named_ns(name: &str) -> u64 {
    pids_named(name).into_iter().filter_map(process_ns).sum()
}

/// The first field of `schedstat`: time spent on CPU, in nanoseconds.
fn on_cpu_ns(schedstat: &str) -> Option<u64> {
    schedstat.split_whitespace().next()?.parse().ok()
}

/// The nice value and policy a thread's `stat` line shows.
fn priority(stat: &str) -> Option<Priority> {
    // The command name, in parentheses, may itself hold spaces and parentheses:
    // the numbered fields start after the last ')', with field 3 (the state).
    let (_, after_name) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<i64>().ok();
    Some(Priority {
        nice: field(19)?,
        idle: field(41)? == SCHED_IDLE,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `stat` line with the given nice value and policy, and a name that holds
    /// spaces and parentheses.
    fn stat_line(nice: i64, policy: i64) -> String {
        let mut fields: Vec<String> = (3..=52).map(|n| n.to_string()).collect();
        fields[0] = "S".into();
        fields[19 - 3] = nice.to_string();
        fields[41 - 3] = policy.to_string();
        format!("4242 (odd (name) x) {}", fields.join(" "))
    }

    /// Whether a thread of `stat_line(nice, policy)` yields to a main thread of
    /// `main`.
    fn yields(stat: &str, main: (i64, i64)) -> Option<bool> {
        let main = priority(&stat_line(main.0, main.1))?;
        Some(priority(stat)?.yields_to(&main))
    }

    #[test]
    fn threads_at_idle_policy_or_positive_nice_yield_and_others_do_not() {
        let normal = (0, 0);
        assert_eq!(yields(&stat_line(0, 0), normal), Some(false));
        assert_eq!(yields(&stat_line(0, SCHED_IDLE), normal), Some(true));
        assert_eq!(yields(&stat_line(10, 0), normal), Some(true));
        assert_eq!(yields(&stat_line(-5, 0), normal), Some(false));
        assert_eq!(yields("4242 (truncated", normal), None);
    }

    #[test]
    fn under_nice_only_threads_below_the_main_thread_yield() {
        let niced = (5, 0);
        assert_eq!(yields(&stat_line(5, 0), niced), Some(false));
        assert_eq!(yields(&stat_line(10, 0), niced), Some(true));
        assert_eq!(yields(&stat_line(5, SCHED_IDLE), niced), Some(true));
    }

    #[test]
    fn time_on_cpu_is_the_first_schedstat_field() {
        assert_eq!(on_cpu_ns("661169805 359443 48\n"), Some(661_169_805));
        assert_eq!(on_cpu_ns(""), None);
    }

    #[test]
    fn this_process_is_seen_spending_cpu_at_normal_priority() {
        // Spins until 20 ms of CPU are seen, or 20 s pass: how much CPU a wall-clock
        // span brings depends on the machine's load (in CI under a load of 12,
        // 50 ms brought 14 ms), what is tested is that the time spent is seen.
        let before = of_process(std::process::id()).unwrap();
        let started = std::time::Instant::now();
        let mut spin = 0_u64;
        let mut spent = of_process(std::process::id()).unwrap().since(&before);
        while spent.normal_ns < 20_000_000 && started.elapsed() < std::time::Duration::from_secs(20)
        {
            for _ in 0..1_000_000 {
                spin = std::hint::black_box(spin.wrapping_add(1));
            }
            spent = of_process(std::process::id()).unwrap().since(&before);
        }
        assert!(spent.normal_ns >= 20_000_000, "{spent:?}");
    }

    #[test]
    fn a_process_time_adds_its_own_and_its_reaped_childrens_ticks() {
        let mut fields: Vec<String> = (3..=52).map(|n| n.to_string()).collect();
        fields[0] = "S".into();
        for (n, ticks) in [(14, "7"), (15, "3"), (16, "20"), (17, "1")] {
            fields[n - 3] = ticks.into();
        }
        let stat = format!("99 (postgres: x) {}", fields.join(" "));
        assert_eq!(process_ticks(&stat), Some(31));
        assert_eq!(process_ticks("99 (cut"), None);
    }

    #[test]
    fn this_process_is_found_by_its_name_and_its_time_grows() {
        let pid = std::process::id();
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
        assert!(pids_named(comm.trim_end()).contains(&pid));
        let before = process_ns(pid).unwrap();
        // Spin until a tick (10 ms of CPU) shows, however busy the machine is.
        let started = std::time::Instant::now();
        let mut spin = 0_u64;
        while process_ns(pid).unwrap() == before {
            assert!(started.elapsed() < std::time::Duration::from_secs(10));
            for _ in 0..100_000 {
                spin = std::hint::black_box(spin.wrapping_add(1));
            }
        }
        assert!(process_ns(pid).unwrap() >= before + NS_PER_TICK);
    }

    #[test]
    fn a_later_reading_never_gives_negative_time() {
        let later = CpuTime {
            normal_ns: 5,
            yielding_ns: 1,
        };
        let earlier = CpuTime {
            normal_ns: 3,
            yielding_ns: 4,
        };
        assert_eq!(
            later.since(&earlier),
            CpuTime {
                normal_ns: 2,
                yielding_ns: 0
            }
        );
        assert_eq!(later.total_ns(), 6);
    }
}
