//! What the process does to itself at start so that the operating system's
//! defaults do not weaken it: it raises its open-file limit to the most it is
//! allowed (each open connection is a descriptor, and a soft limit of 256 or
//! 1024 lets a few hundred idle clients starve everyone else), and it creates
//! every file and directory private to its user (events, keys and the spill are
//! nobody else's to read).

use std::path::Path;

use anyhow::{Context, Result};
use rustix::process::{Resource, getrlimit, setrlimit};

/// The file creation mask: no permission for the group or others, so data files
/// are created 0600 and directories 0700 whatever the caller's umask was.
const PRIVATE_UMASK: u32 = 0o077;

/// Raises the soft open-file limit to the hard one; returns the limit now in force
/// (`None`: unlimited or unknown). Failing to raise it is not fatal: the service
/// still runs, with the connection cap as the guard.
pub fn raise_open_file_limit() -> Option<u64> {
    let limit = getrlimit(Resource::Nofile);
    if limit.current >= limit.maximum && limit.current.is_some() {
        return limit.current;
    }
    let raised = rustix::process::Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => limit.maximum,
        Err(err) => {
            tracing::warn!(%err, "could not raise the open-file limit");
            limit.current
        }
    }
}

/// Descriptors kept out of the connection budget: database pools, the broker,
/// the spill and key files, and the proxies' own outgoing connections.
const RESERVED_DESCRIPTORS: u64 = 512;

/// The most connections each of `services` may keep open within the process's
/// open-file limit, so that the cap answers 503 before `accept` runs out of
/// descriptors (which would leave clients hanging); `None` when unlimited.
pub fn connection_budget(services: u64) -> Option<u32> {
    let limit = getrlimit(Resource::Nofile).current?;
    let per_service = limit.saturating_sub(RESERVED_DESCRIPTORS) / services.max(1);
    Some(u32::try_from(per_service.max(16)).unwrap_or(u32::MAX))
}

/// Makes every file and directory this process creates from now on private to its
/// user. Call it before any thread starts: the mask is per process.
pub fn private_file_modes() {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(PRIVATE_UMASK));
}

/// Creates the data directory (and its parents) and makes it 0700, also when it
/// existed with wider permissions.
pub fn private_data_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).with_context(|| format!("while creating {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).with_context(|| {
        format!(
            "while making {} private (chmod 700); is it owned by another user?",
            dir.display()
        )
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a panic is the failure report

    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_data_directory_is_made_private_even_when_it_existed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        private_data_dir(&dir).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn the_soft_open_file_limit_ends_at_the_hard_one() {
        // Start from the finding's low soft limit, so that there is something to
        // raise whatever limit the test runner was given.
        let hard = getrlimit(Resource::Nofile).maximum;
        let low = rustix::process::Rlimit {
            current: Some(256.min(hard.unwrap_or(256))),
            maximum: hard,
        };
        setrlimit(Resource::Nofile, low).unwrap();
        assert!(getrlimit(Resource::Nofile).current <= Some(256));
        raise_open_file_limit();
        let limit = getrlimit(Resource::Nofile);
        assert_eq!(limit.current, limit.maximum);
    }
}
