//! The spill file: where events wait on local disk while the transport is down or
//! slower than the application, so that the in-memory queue stays bounded and
//! nothing is dropped. Events are appended as NDJSON and replayed in order; a cursor
//! file records how far the transport has confirmed, so a restart replays only what
//! was not yet delivered (at least once: the auditor stores each id once).
//!
//! The I/O here is synchronous on purpose: it runs only in the emitter's background
//! task, never on the request path, and only while events are backed up.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use auditlog_event::DataEvent;

const DATA_FILE: &str = "spill.ndjson";
const CURSOR_FILE: &str = "spill.cursor";

/// A spill directory of one emitter.
#[derive(Debug)]
pub(crate) struct Spill {
    dir: PathBuf,
    file: File,
    /// Bytes in the data file.
    len: u64,
    /// Offset of the first event not yet confirmed by the transport.
    cursor: u64,
}

/// A chunk read back from the spill.
pub(crate) struct Chunk {
    pub events: Vec<DataEvent>,
    /// Where the next chunk starts; confirm it once `events` are delivered.
    pub end: u64,
    /// Lines that could not be read back (a write torn by a crash).
    pub unreadable: u64,
}

impl Spill {
    /// Opens the spill in `dir`, keeping whatever a previous run left to replay.
    /// A last line that a crash tore in the middle of a write is ended with a
    /// newline: it stays unreadable (counted when read back), and the next append
    /// starts a line of its own instead of being glued to it and lost with it.
    pub fn open(dir: &Path) -> io::Result<Spill> {
        fs::create_dir_all(dir)?;
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(dir.join(DATA_FILE))?;
        let mut len = file.metadata()?.len();
        if len > 0 && !ends_with_newline(&mut file, len)? {
            tracing::warn!("the spill file ends in a line torn by a crash; it is kept apart");
            file.write_all(b"\n")?;
            file.sync_data()?;
            len += 1;
        }
        let cursor = fs::read_to_string(dir.join(CURSOR_FILE))
            .ok()
            .and_then(|text| text.trim().parse::<u64>().ok())
            .unwrap_or(0)
            .min(len);
        Ok(Spill {
            dir: dir.to_owned(),
            file,
            len,
            cursor,
        })
    }

    /// Whether events are waiting on disk.
    pub fn has_backlog(&self) -> bool {
        self.cursor < self.len
    }

    /// Bytes waiting on disk.
    pub fn backlog_bytes(&self) -> u64 {
        self.len - self.cursor
    }

    /// Appends events durably (fsynced before returning).
    pub fn append(&mut self, events: &[DataEvent]) -> io::Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let mut buffer = String::with_capacity(events.len() * 256);
        for event in events {
            buffer.push_str(&event.to_json());
            buffer.push('\n');
        }
        self.file.write_all(buffer.as_bytes())?;
        self.file.sync_data()?;
        self.len += buffer.len() as u64;
        Ok(())
    }

    /// Up to `max` events from the cursor on, in the order they were appended.
    pub fn read_chunk(&self, max: usize) -> io::Result<Chunk> {
        let mut reader = BufReader::new(File::open(self.dir.join(DATA_FILE))?);
        reader.seek(SeekFrom::Start(self.cursor))?;
        let mut chunk = Chunk {
            events: Vec::new(),
            end: self.cursor,
            unreadable: 0,
        };
        let mut line = String::new();
        while chunk.events.len() < max && chunk.end < self.len {
            line.clear();
            let read = reader.read_line(&mut line)?;
            if read == 0 {
                break;
            }
            chunk.end += read as u64;
            match DataEvent::parse_json(line.trim_end(), 0) {
                Ok(event) => chunk.events.push(event),
                Err(err) => {
                    tracing::error!(%err, "an event in the spill file cannot be read back");
                    chunk.unreadable += 1;
                }
            }
        }
        Ok(chunk)
    }

    /// Records that everything before `end` was delivered; empties the file once
    /// all of it was.
    pub fn confirm(&mut self, end: u64) -> io::Result<()> {
        self.cursor = end.min(self.len);
        if self.cursor == self.len {
            self.file.set_len(0)?;
            self.len = 0;
            self.cursor = 0;
        }
        let cursor_path = self.dir.join(CURSOR_FILE);
        let temporary = self.dir.join(format!("{CURSOR_FILE}.tmp"));
        fs::write(&temporary, self.cursor.to_string())?;
        fs::rename(temporary, cursor_path)
    }
}

/// Whether the last byte of `file` (`len` bytes long) is a newline.
fn ends_with_newline(file: &mut File, len: u64) -> io::Result<bool> {
    let mut last = [0u8; 1];
    file.seek(SeekFrom::Start(len - 1))?;
    file.read_exact(&mut last)?;
    Ok(last[0] == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;
    use auditlog_event::{Action, ObjectRef, ObjectType};

    fn event(n: i64) -> DataEvent {
        let users = ObjectType::parse("actorType", "users").unwrap();
        DataEvent::new(
            Action::Viewed,
            ObjectRef::new(users.clone(), 1),
            ObjectRef::new(users, n),
            n,
        )
    }

    #[test]
    fn spilled_events_come_back_in_order_and_only_once_confirmed_they_leave() {
        let dir = tempfile::tempdir().unwrap();
        let mut spill = Spill::open(dir.path()).unwrap();
        let events: Vec<_> = (0..10).map(event).collect();
        spill.append(&events[..6]).unwrap();
        spill.append(&events[6..]).unwrap();
        let first = spill.read_chunk(4).unwrap();
        assert_eq!(first.events, events[..4]);
        // Not confirmed: read again, same events.
        assert_eq!(spill.read_chunk(4).unwrap().events, events[..4]);
        spill.confirm(first.end).unwrap();
        let rest = spill.read_chunk(100).unwrap();
        assert_eq!(rest.events, events[4..]);
        spill.confirm(rest.end).unwrap();
        assert!(!spill.has_backlog());
        assert_eq!(fs::metadata(dir.path().join(DATA_FILE)).unwrap().len(), 0);
    }

    #[test]
    fn a_restart_replays_only_what_was_not_confirmed() {
        let dir = tempfile::tempdir().unwrap();
        let events: Vec<_> = (0..5).map(event).collect();
        {
            let mut spill = Spill::open(dir.path()).unwrap();
            spill.append(&events).unwrap();
            let chunk = spill.read_chunk(2).unwrap();
            spill.confirm(chunk.end).unwrap();
        }
        let spill = Spill::open(dir.path()).unwrap();
        assert!(spill.has_backlog());
        assert_eq!(spill.read_chunk(100).unwrap().events, events[2..]);
    }

    /// A spill directory holding event 1, then half an event without its newline,
    /// as a SIGKILL in the middle of a write leaves it.
    fn torn_after_one_event() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let mut spill = Spill::open(dir.path()).unwrap();
        spill.append(&[event(1)]).unwrap();
        drop(spill);
        let mut file = OpenOptions::new()
            .append(true)
            .open(dir.path().join(DATA_FILE))
            .unwrap();
        file.write_all(b"{\"action\":\"vie").unwrap();
        dir
    }

    #[test]
    fn events_appended_after_a_torn_last_line_are_read_back() {
        let dir = torn_after_one_event();

        let mut spill = Spill::open(dir.path()).unwrap();
        spill.append(&[event(2), event(3)]).unwrap();

        let chunk = spill.read_chunk(10).unwrap();
        let timestamps: Vec<i64> = chunk.events.iter().map(|e| e.timestamp).collect();
        assert_eq!(timestamps, [1, 2, 3]);
        assert_eq!(chunk.unreadable, 1, "the torn line, and only it");
    }

    #[test]
    fn a_torn_last_line_is_counted_not_fatal() {
        let dir = torn_after_one_event();
        let spill = Spill::open(dir.path()).unwrap();
        let chunk = spill.read_chunk(10).unwrap();
        assert_eq!(chunk.events.len(), 1);
        assert_eq!(chunk.unreadable, 1);
    }
}
