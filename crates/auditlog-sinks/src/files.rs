//! The files sink's writer: NDJSON files in one directory, for a log shipper to
//! pick up. The file being written is named `….ndjson.part`; it is closed (made
//! durable, then renamed to `….ndjson`) once it holds `maxBytes` or is
//! `maxAgeSecs` old, and a closed file is never opened again. Each batch is made
//! durable (`fsync`) before the delivery counts, so the cursor never passes an
//! event that a crash could take back. A `.part` file left by a crash is closed
//! as it is at the next start; events after the cursor are then written again,
//! in the next file (at least once, like every sink).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::fs::{self, File, OpenOptions};
use tokio::io::AsyncWriteExt;

use crate::definition::FilesSink;
use crate::format::{Outgoing, ndjson};

/// The suffix of a closed file.
pub const CLOSED_SUFFIX: &str = ".ndjson";

/// The suffix of the file being written.
pub const OPEN_SUFFIX: &str = ".ndjson.part";

/// Writes batches into rotated files.
pub struct RotatedFiles {
    directory: PathBuf,
    /// What every file name starts with: `events-`, or `test-` for test events,
    /// so that a test never closes the running sink's file.
    prefix: &'static str,
    max_bytes: u64,
    max_age: Option<Duration>,
    current: Option<OpenFile>,
    /// Whether `.part` files of an earlier run were closed yet.
    recovered: bool,
}

/// The file being written.
struct OpenFile {
    file: File,
    /// Its `.part` path.
    path: PathBuf,
    bytes: u64,
    opened: Instant,
}

impl RotatedFiles {
    /// A writer into `sink`'s directory (nothing is touched before the first batch).
    pub fn new(sink: &FilesSink) -> RotatedFiles {
        RotatedFiles {
            directory: PathBuf::from(&sink.directory),
            prefix: "events-",
            max_bytes: sink.max_bytes,
            max_age: sink.max_age_secs.map(Duration::from_secs),
            current: None,
            recovered: false,
        }
    }

    /// The same writer naming its files `test-…`: for `auditlog sinks test`.
    pub fn for_tests(mut self) -> RotatedFiles {
        self.prefix = "test-";
        self
    }

    /// Appends `events` to the current file (opening one named after the first
    /// event's `seq` if none is open), makes them durable, and closes the file if
    /// it is now full or old. Answers the file written.
    pub async fn append(&mut self, events: &[Outgoing]) -> std::io::Result<PathBuf> {
        if !self.recovered {
            fs::create_dir_all(&self.directory).await?;
            self.close_left_over_parts().await?;
            self.recovered = true;
        }
        if self
            .current
            .as_ref()
            .is_some_and(|open| self.max_age.is_some_and(|age| open.opened.elapsed() >= age))
        {
            self.close().await?;
        }
        let first_seq = events.first().map_or(0, |e| e.seq);
        if self.current.is_none() {
            self.current = Some(self.open(first_seq).await?);
        }
        let body = ndjson(events);
        let Some(open) = self.current.as_mut() else {
            return Err(std::io::Error::other("no file is open"));
        };
        open.file.write_all(&body).await?;
        open.file.sync_data().await?;
        open.bytes += body.len() as u64;
        let written = open.path.clone();
        if open.bytes >= self.max_bytes {
            return self.close().await.map(|closed| closed.unwrap_or(written));
        }
        Ok(written)
    }

    /// Closes the current file, if one is open: durable, then renamed to its
    /// final name (and the directory synced, so that the rename survives).
    /// Answers the closed file's name.
    pub async fn close(&mut self) -> std::io::Result<Option<PathBuf>> {
        let Some(open) = self.current.take() else {
            return Ok(None);
        };
        open.file.sync_all().await?;
        drop(open.file);
        let closed = closed_name(&open.path);
        fs::rename(&open.path, &closed).await?;
        sync_directory(&self.directory).await?;
        Ok(Some(closed))
    }

    /// A new file for events from `first_seq` on. The name holds the time too,
    /// so that events written again after a crash go to a new file, not into a
    /// closed one.
    async fn open(&self, first_seq: i64) -> std::io::Result<OpenFile> {
        let name = format!(
            "{}{first_seq:020}-{}{OPEN_SUFFIX}",
            self.prefix,
            auditlog_event::now_ms()
        );
        let path = self.directory.join(name);
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .await?;
        Ok(OpenFile {
            file,
            path,
            bytes: 0,
            opened: Instant::now(),
        })
    }

    /// Closes the `.part` files an earlier run left (it stopped without closing
    /// them): they keep what they hold and are never written again.
    async fn close_left_over_parts(&self) -> std::io::Result<()> {
        let mut entries = fs::read_dir(&self.directory).await?;
        while let Some(entry) = entries.next_entry().await? {
            let path = entry.path();
            if path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(self.prefix) && n.ends_with(OPEN_SUFFIX))
            {
                fs::rename(&path, closed_name(&path)).await?;
            }
        }
        sync_directory(&self.directory).await
    }
}

/// `….ndjson.part` → `….ndjson`.
fn closed_name(part: &Path) -> PathBuf {
    part.with_extension("")
}

/// Makes the directory's entries (new files, renames) durable.
async fn sync_directory(directory: &Path) -> std::io::Result<()> {
    File::open(directory).await?.sync_all().await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a panic is the failure report

    use super::*;

    fn events(seqs: std::ops::RangeInclusive<i64>) -> Vec<Outgoing> {
        seqs.map(|seq| Outgoing {
            id: uuid::Uuid::from_u128(seq as u128),
            seq,
            timestamp: 0,
            received_at: 0,
            json: format!(r#"{{"seq":{seq}}}"#),
        })
        .collect()
    }

    #[tokio::test]
    async fn a_full_file_is_closed_and_the_next_batch_starts_a_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = RotatedFiles::new(&FilesSink {
            directory: dir.path().display().to_string(),
            max_bytes: 15,
            max_age_secs: None,
        });

        let first = files.append(&events(1..=2)).await.unwrap();
        let second = files.append(&events(3..=4)).await.unwrap();
        let third = files.append(&events(5..=5)).await.unwrap();

        assert!(
            first.to_string_lossy().ends_with(CLOSED_SUFFIX),
            "{first:?}"
        );
        assert_ne!(first, second);
        assert!(third.to_string_lossy().ends_with(OPEN_SUFFIX), "{third:?}");
        assert_eq!(
            std::fs::read_to_string(&first).unwrap(),
            "{\"seq\":1}\n{\"seq\":2}\n"
        );
    }

    #[test]
    fn the_closed_name_drops_only_the_part_suffix() {
        assert_eq!(
            closed_name(Path::new("/d/events-00000000000000000001-5.ndjson.part")),
            PathBuf::from("/d/events-00000000000000000001-5.ndjson")
        );
    }
}
