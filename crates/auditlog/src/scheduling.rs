//! Where and how the in-process auditor's threads run (`auditlog up
//! --auditor-priority`, `--auditor-cpus`): how much of a busy machine storing
//! audit events may take from the primary API it audits.

use std::fmt;
use std::str::FromStr;

/// How the in-process auditor's threads are scheduled against the primary API's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditorPriority {
    /// Linux's `SCHED_IDLE`: the auditor runs on CPU time nothing else wants. While
    /// the primary API keeps the cores busy, its events wait in the emitter's queue
    /// and spill file (on disk, so nothing is lost) and are stored once the load
    /// eases; on a machine with idle time they are stored within milliseconds.
    Idle,
    /// A nice value from 0 (the primary API's own priority) to 19: the auditor gets
    /// a smaller, but steady, share of busy cores.
    Nice(i32),
}

impl AuditorPriority {
    /// Gives the calling thread this priority. Returns why it could not.
    pub fn apply_to_current_thread(self) -> Result<(), String> {
        match self {
            AuditorPriority::Nice(0) => Ok(()),
            AuditorPriority::Nice(nice) => rustix::process::setpriority_process(None, nice)
                .map_err(|err| format!("setpriority({nice}): {err}")),
            AuditorPriority::Idle => idle(),
        }
    }
}

#[cfg(target_os = "linux")]
fn idle() -> Result<(), String> {
    use thread_priority::unix::{
        NormalThreadSchedulePolicy, ThreadSchedulePolicy, set_thread_priority_and_policy,
        thread_native_id,
    };
    // The priority value is ignored under SCHED_IDLE; `Min` is the one every
    // policy accepts.
    set_thread_priority_and_policy(
        thread_native_id(),
        thread_priority::ThreadPriority::Min,
        ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle),
    )
    .map_err(|err| format!("SCHED_IDLE: {err:?}"))
}

#[cfg(not(target_os = "linux"))]
fn idle() -> Result<(), String> {
    Err("SCHED_IDLE exists only on Linux; use a nice value (0–19) here".into())
}

impl FromStr for AuditorPriority {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        if value.eq_ignore_ascii_case("idle") {
            return Ok(AuditorPriority::Idle);
        }
        match value.parse::<i32>() {
            Ok(nice) if (0..=19).contains(&nice) => Ok(AuditorPriority::Nice(nice)),
            _ => Err(format!(
                "`{value}` is neither `idle` nor a nice value from 0 (the primary API's \
                 priority) to 19"
            )),
        }
    }
}

impl fmt::Display for AuditorPriority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuditorPriority::Idle => f.write_str("idle"),
            AuditorPriority::Nice(nice) => write!(f, "{nice}"),
        }
    }
}

/// CPUs the in-process auditor's threads are confined to, e.g. `1`, `2-3` or
/// `0,2`: on a machine with cores to spare, the primary API keeps the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuList(Vec<usize>);

impl CpuList {
    /// Confines the calling thread to these CPUs. Returns why it could not.
    pub fn apply_to_current_thread(&self) -> Result<(), String> {
        let mut set = rustix::thread::CpuSet::new();
        for &cpu in &self.0 {
            set.set(cpu);
        }
        rustix::thread::sched_setaffinity(None, &set)
            .map_err(|err| format!("sched_setaffinity({self}): {err}"))
    }

    /// Fails, saying why, if a thread cannot be confined to these CPUs (absent,
    /// offline, or outside this process's cgroup). Tried on a throwaway thread:
    /// the kernel is the only judge, and the caller's own affinity (say, under
    /// `taskset`) is no limit on where its threads may move.
    pub fn check_available(&self) -> Result<(), String> {
        let list = self.clone();
        let outcome = std::thread::spawn(move || list.apply_to_current_thread())
            .join()
            .unwrap_or_else(|_| Err("the affinity check's thread panicked".into()));
        outcome.map_err(|err| {
            let online = std::fs::read_to_string("/sys/devices/system/cpu/online")
                .map(|text| format!("; this machine's CPUs are {}", text.trim()))
                .unwrap_or_default();
            format!("{err}{online}")
        })
    }
}

impl FromStr for CpuList {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let bad = |what: &str| {
            format!("`{value}` is not a CPU list ({what}); write e.g. `1`, `2-3` or `0,2`")
        };
        let number = |text: &str| -> Result<usize, String> {
            match text.trim().parse::<usize>() {
                Ok(cpu) if cpu < rustix::thread::CpuSet::MAX_CPU => Ok(cpu),
                Ok(_) => Err(bad("a CPU number is too large")),
                Err(_) => Err(bad("not a number")),
            }
        };
        let mut cpus = Vec::new();
        for part in value.split(',') {
            match part.split_once('-') {
                Some((first, last)) => {
                    let (first, last) = (number(first)?, number(last)?);
                    if first > last {
                        return Err(bad("a range runs backwards"));
                    }
                    cpus.extend(first..=last);
                }
                None => cpus.push(number(part)?),
            }
        }
        cpus.sort_unstable();
        cpus.dedup();
        Ok(CpuList(cpus))
    }
}

impl fmt::Display for CpuList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text: Vec<String> = self.0.iter().map(usize::to_string).collect();
        f.write_str(&text.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_and_nice_values_parse_and_print_back() {
        for text in ["idle", "0", "10", "19"] {
            let priority: AuditorPriority = text.parse().unwrap();
            assert_eq!(priority.to_string(), text);
        }
        assert_eq!("IDLE".parse(), Ok(AuditorPriority::Idle));
    }

    #[test]
    fn other_values_are_refused_with_what_is_allowed() {
        for text in ["20", "-1", "low", ""] {
            let err = text.parse::<AuditorPriority>().unwrap_err();
            assert!(
                err.contains("idle") && err.contains("0") && err.contains("19"),
                "{err}"
            );
        }
    }

    #[test]
    fn cpu_lists_take_numbers_and_ranges() {
        let list: CpuList = "3,0-1, 1".parse().unwrap();
        assert_eq!(list, CpuList(vec![0, 1, 3]));
        assert_eq!(list.to_string(), "0,1,3");
        for text in ["", "a", "2-1", "1-", "99999"] {
            let err = text.parse::<CpuList>().unwrap_err();
            assert!(err.contains("`2-3`"), "{err}");
        }
    }

    #[test]
    fn a_thread_confined_to_one_cpu_runs_only_there() {
        let allowed = std::thread::spawn(|| {
            CpuList(vec![0]).apply_to_current_thread().unwrap();
            let set = rustix::thread::sched_getaffinity(None).unwrap();
            (0..rustix::thread::CpuSet::MAX_CPU)
                .filter(|&cpu| set.is_set(cpu))
                .collect::<Vec<_>>()
        })
        .join()
        .unwrap();
        assert_eq!(allowed, [0]);
    }

    #[test]
    fn a_cpu_the_process_cannot_use_is_named() {
        let err = CpuList(vec![rustix::thread::CpuSet::MAX_CPU - 1])
            .check_available()
            .unwrap_err();
        assert!(
            err.contains("sched_setaffinity") && err.contains("CPUs are 0"),
            "{err}"
        );
        assert_eq!(CpuList(vec![0]).check_available(), Ok(()));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_thread_made_idle_is_scheduled_as_idle() {
        let policy = std::thread::spawn(|| {
            AuditorPriority::Idle.apply_to_current_thread().unwrap();
            thread_priority::unix::thread_schedule_policy().unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(
            policy,
            thread_priority::unix::ThreadSchedulePolicy::Normal(
                thread_priority::unix::NormalThreadSchedulePolicy::Idle
            )
        );
    }
}
