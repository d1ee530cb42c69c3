//! Writing, reading and moving queue files, durably.
//!
//! The write path: a message is written under a temporary name and renamed to its queue ID;
//! then its data and the directory are made durable, and only then is the writer told it is
//! safe (and acknowledges: SMTP 250, sendmail exit 0). A crash before that leaves at worst a
//! renamed file that fails its checksums (set aside, never delivered) and whose sender was
//! never told it was safe. Concurrent writers share the flushes through `GroupCommit`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::envelope::{Envelope, Update};
use super::id::queue_id;
use super::record::{self, ContentReader, FormatError, Kind};
use super::{QueueEntry, QueueName};

/// Prefix of files being written; never a queue ID, skipped by listings.
const TMP_PREFIX: &str = ".tmp.";

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The file failed its self-check: set it aside, never deliver it.
    #[error("corrupt queue file: {0}")]
    Corrupt(String),
    #[error("message size exceeds limit of {limit} bytes")]
    TooBig { limit: u64 },
}

impl From<FormatError> for QueueError {
    fn from(e: FormatError) -> Self {
        match e {
            FormatError::Io(e) if e.kind() != io::ErrorKind::UnexpectedEof => QueueError::Io(e),
            FormatError::Io(e) => QueueError::Corrupt(e.to_string()),
            FormatError::Bad(msg) => QueueError::Corrupt(msg),
        }
    }
}

pub fn now_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

/// Make a directory's entries (new names, renames, removals) durable.
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[derive(Clone)]
pub struct QueueStore {
    root: PathBuf,
    commits: Arc<GroupCommit>,
}

impl QueueStore {
    pub fn new(root: impl Into<PathBuf>) -> QueueStore {
        QueueStore { root: root.into(), commits: Arc::new(GroupCommit::default()) }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn dir(&self, queue: QueueName) -> PathBuf {
        self.root.join(queue.dir_name())
    }

    pub fn path(&self, queue: QueueName, id: &str) -> PathBuf {
        self.dir(queue).join(id)
    }

    /// Start a new message in `queue`. `limit` is message_size_limit (0 = none).
    pub fn create(&self, queue: QueueName, limit: u64) -> Result<MessageWriter, QueueError> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let arrival_us = now_us();
        let dir = self.dir(queue);
        let tmp = dir.join(format!(
            "{TMP_PREFIX}{}.{}.{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed),
            arrival_us
        ));
        // Group-readable in maildrop: the directory is set-gid, so the group is the queue
        // owner's and the daemon can read what any user dropped; nobody else can.
        let mode = if queue == QueueName::Maildrop { 0o640 } else { 0o600 };
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)?;
        // The ID is known from the start (cleanup puts it in Message-ID:): time plus inode.
        let inode = file.metadata()?.ino();
        let mut out = BufWriter::with_capacity(record::CHUNK + 16, file);
        out.write_all(record::MAGIC)?;
        Ok(MessageWriter {
            out: Some(out),
            tmp,
            dir,
            arrival_us,
            id: queue_id(arrival_us, inode),
            chunk: Vec::with_capacity(record::CHUNK),
            size: 0,
            limit,
        })
    }

    /// Make `writer`'s message durable under its queue ID, with `envelope`; returns the ID.
    pub fn commit(&self, mut writer: MessageWriter, envelope: &Envelope) -> Result<String, QueueError> {
        writer.flush_chunk()?;
        let mut out = writer.out.take().expect("writer not yet committed");
        let json = serde_json::to_vec(envelope).map_err(io::Error::other)?;
        record::write_record(&mut out, Kind::Envelope, &json)?;
        record::write_record(&mut out, Kind::End, &writer.size.to_le_bytes())?;
        let file = out.into_inner().map_err(|e| e.into_error())?;
        let job = Job {
            file,
            tmp: writer.tmp.clone(),
            dir: writer.dir.clone(),
            id: writer.id.clone(),
            arrival_us: writer.arrival_us,
        };
        // From here the group commit owns the temporary file (renames or removes it).
        writer.tmp = PathBuf::new();
        Ok(self.commits.commit(job)?)
    }

    /// Names in a queue directory, sorted (so by arrival), without files being written.
    pub fn list(&self, queue: QueueName) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(self.dir(queue))? {
            let name = entry?.file_name();
            let Some(name) = name.to_str() else { continue };
            if !name.starts_with(TMP_PREFIX) {
                names.push(name.to_string());
            }
        }
        names.sort();
        Ok(names)
    }

    /// Every readable message waiting in the queue (maildrop, incoming, active, deferred,
    /// hold), by arrival, for mailq. Files that fail their check are left for the daemon to
    /// set aside; a directory that cannot be read is an error (mailq then asks the daemon).
    pub fn list_entries(&self) -> io::Result<Vec<QueueEntry>> {
        let mut entries = Vec::new();
        for queue in [QueueName::Maildrop, QueueName::Incoming, QueueName::Active, QueueName::Deferred, QueueName::Hold]
        {
            for id in self.list(queue)? {
                match self.read_entry(queue, &id) {
                    Ok(entry) => entries.push(entry),
                    Err(QueueError::Io(e)) if e.kind() == io::ErrorKind::PermissionDenied => return Err(e),
                    Err(_) => {} // vanished (delivered, moved) or corrupt: not a waiting message
                }
            }
        }
        entries.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(entries)
    }

    /// Read a queued message's envelope with all updates applied.
    pub fn read_entry(&self, queue: QueueName, id: &str) -> Result<QueueEntry, QueueError> {
        let mut file = File::open(self.path(queue, id))?;
        Ok(entry_from(&mut file, queue, id)?.0)
    }

    /// Read a queued message: its envelope and a reader over its content that verifies each
    /// chunk as it streams (an error from the reader means the file is corrupt).
    pub fn open_message(&self, queue: QueueName, id: &str) -> Result<(QueueEntry, ContentReader<File>), QueueError> {
        let file = File::open(self.path(queue, id))?;
        self.open_message_file(file, queue, id)
    }

    /// As `open_message`, for a file the caller opened itself (pickup opens untrusted files
    /// with extra checks).
    pub fn open_message_file(
        &self,
        mut file: File,
        queue: QueueName,
        id: &str,
    ) -> Result<(QueueEntry, ContentReader<File>), QueueError> {
        let (entry, layout) = entry_from(&mut file, queue, id)?;
        Ok((entry, ContentReader::new(file, layout.content)))
    }

    /// Durably record state changes (recipients delivered, a new schedule) with one fsync.
    pub fn append_updates(&self, queue: QueueName, id: &str, updates: &[Update]) -> Result<(), QueueError> {
        self.write_updates(queue, id, updates)?.sync_data()?;
        Ok(())
    }

    /// As `append_updates`, without waiting for the disk: for changes a crash may lose without
    /// harm (the step that made them is done again, or a stronger record follows).
    pub fn append_updates_unsynced(&self, queue: QueueName, id: &str, updates: &[Update]) -> Result<(), QueueError> {
        self.write_updates(queue, id, updates)?;
        Ok(())
    }

    /// Record state changes and move the message to another queue; the file's flush commits
    /// both, the directory's makes the new name durable on any file system.
    /// A crash before the flush ends leaves either the old state in the old queue (the step is
    /// done again) or the new queue with a torn last update (dropped, see record.rs): never a
    /// lost message.
    pub fn update_and_move(
        &self,
        id: &str,
        from: QueueName,
        to: QueueName,
        updates: &[Update],
    ) -> Result<(), QueueError> {
        let file = self.write_updates(from, id, updates)?;
        fs::rename(self.path(from, id), self.path(to, id))?;
        file.sync_data()?;
        fsync_dir(&self.dir(to))?;
        Ok(())
    }

    /// Append update records (not yet flushed); returns the open file.
    fn write_updates(&self, queue: QueueName, id: &str, updates: &[Update]) -> Result<File, QueueError> {
        let mut file = OpenOptions::new().read(true).write(true).open(self.path(queue, id))?;
        let layout = record::scan(&mut file)?;
        if layout.file_len > layout.valid_len {
            file.set_len(layout.valid_len)?; // drop a torn earlier append before adding to it
        }
        let mut buf = Vec::new();
        for update in updates {
            let json = serde_json::to_vec(update).map_err(io::Error::other)?;
            record::write_record(&mut buf, Kind::Update, &json)?;
        }
        file.seek(SeekFrom::Start(layout.valid_len))?;
        file.write_all(&buf)?;
        Ok(file)
    }

    /// Durably move a message to another queue (the file keeps its ID). Only the new name is
    /// flushed: should a crash bring the old one back too, the message is handled twice,
    /// never lost.
    pub fn move_to(&self, id: &str, from: QueueName, to: QueueName) -> Result<(), QueueError> {
        fs::rename(self.path(from, id), self.path(to, id))?;
        fsync_dir(&self.dir(to))?;
        Ok(())
    }

    /// Make the names in one queue directory durable (after unsynced moves into it).
    pub fn sync_dir(&self, queue: QueueName) -> io::Result<()> {
        fsync_dir(&self.dir(queue))
    }

    /// Move a file without waiting for the disk: for moves a crash may undo without harm
    /// (incoming → active: a message found back in incoming is simply handled again).
    pub fn move_unsynced(&self, id: &str, from: QueueName, to: QueueName) -> io::Result<()> {
        fs::rename(self.path(from, id), self.path(to, id))
    }

    /// Remove a file whose message lives on durably elsewhere (a maildrop file after pickup),
    /// without waiting for the disk: a crash may bring it back, which means a duplicate,
    /// never a loss.
    pub fn remove_unsynced(&self, queue: QueueName, id: &str) -> io::Result<()> {
        fs::remove_file(self.path(queue, id))
    }

    /// Durably remove a message (every recipient done).
    pub fn remove(&self, queue: QueueName, id: &str) -> Result<(), QueueError> {
        fs::remove_file(self.path(queue, id))?;
        fsync_dir(&self.dir(queue))?;
        Ok(())
    }

    /// Move a file that failed its check to corrupt/, keeping it for the admin. Returns the
    /// name it has there.
    pub fn set_aside(&self, queue: QueueName, name: &str) -> io::Result<String> {
        let corrupt = self.dir(QueueName::Corrupt);
        let mut target = format!("{}.{name}", queue.dir_name());
        let mut n = 1;
        while corrupt.join(&target).symlink_metadata().is_ok() {
            target = format!("{}.{name}.{n}", queue.dir_name());
            n += 1;
        }
        fs::rename(self.dir(queue).join(name), corrupt.join(&target))?;
        fsync_dir(&corrupt)?;
        fsync_dir(&self.dir(queue))?;
        Ok(target)
    }

    /// Remove files left half-written by a crash, older than `age` (a sendmail process may be
    /// writing a young one right now).
    pub fn remove_stale_temporaries(&self, queue: QueueName, age: Duration) -> io::Result<usize> {
        let mut removed = 0;
        for entry in fs::read_dir(self.dir(queue))? {
            let entry = entry?;
            let name = entry.file_name();
            if !name.to_string_lossy().starts_with(TMP_PREFIX) {
                continue;
            }
            let meta = entry.metadata()?;
            let old = meta.modified().ok().and_then(|m| m.elapsed().ok()).is_none_or(|e| e >= age);
            if old && fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Bytes available to unprivileged writers in the queue's file system (queue_minfree).
    pub fn free_space(&self) -> io::Result<u64> {
        let st = nix::sys::statvfs::statvfs(&self.root).map_err(io::Error::from)?;
        Ok(st.blocks_available() as u64 * st.fragment_size() as u64)
    }
}

fn entry_from(file: &mut File, queue: QueueName, id: &str) -> Result<(QueueEntry, record::Layout), QueueError> {
    let layout = record::scan(file)?;
    let mut envelope: Envelope = serde_json::from_slice(&layout.envelope)
        .map_err(|e| QueueError::Corrupt(format!("bad envelope record: {e}")))?;
    for raw in &layout.updates {
        let update: Update =
            serde_json::from_slice(raw).map_err(|e| QueueError::Corrupt(format!("bad update record: {e}")))?;
        envelope.apply(&update).map_err(QueueError::Corrupt)?;
    }
    let entry = QueueEntry { id: id.to_string(), queue, envelope, size: layout.content_size };
    Ok((entry, layout))
}

/// A message being written. Dropping it without committing removes the temporary file.
pub struct MessageWriter {
    out: Option<BufWriter<File>>,
    tmp: PathBuf,
    dir: PathBuf,
    arrival_us: i64,
    id: String,
    chunk: Vec<u8>,
    size: u64,
    limit: u64,
}

impl MessageWriter {
    /// Append content, enforcing the size limit while streaming.
    pub fn write_content(&mut self, mut data: &[u8]) -> Result<(), QueueError> {
        self.size += data.len() as u64;
        if self.limit > 0 && self.size > self.limit {
            return Err(QueueError::TooBig { limit: self.limit });
        }
        while !data.is_empty() {
            let room = record::CHUNK - self.chunk.len();
            let take = room.min(data.len());
            self.chunk.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.chunk.len() == record::CHUNK {
                self.flush_chunk()?;
            }
        }
        Ok(())
    }

    /// The queue ID this message will have once committed.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Where the file is being written (for clean-up on a signal).
    pub fn temp_path(&self) -> &Path {
        &self.tmp
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Arrival time of this message (microseconds since the epoch); also part of its ID.
    pub fn arrival_us(&self) -> i64 {
        self.arrival_us
    }

    fn flush_chunk(&mut self) -> io::Result<()> {
        if self.chunk.is_empty() {
            return Ok(());
        }
        let out = self.out.as_mut().expect("writer not yet committed");
        record::write_record(out, Kind::Content, &self.chunk)?;
        self.chunk.clear();
        Ok(())
    }
}

impl Drop for MessageWriter {
    fn drop(&mut self) {
        if !self.tmp.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

struct Job {
    file: File,
    tmp: PathBuf,
    dir: PathBuf,
    id: String,
    arrival_us: i64,
}

/// Group commit: whoever arrives while no commit is running leads the next one and makes the
/// whole waiting batch durable with one flush (syncfs) and one directory fsync per directory;
/// the others wait for the leader. Nobody returns before their own file is durable.
#[derive(Default)]
struct GroupCommit {
    state: Mutex<GroupState>,
    done: Condvar,
}

#[derive(Default)]
struct GroupState {
    waiting: Vec<(u64, Job)>,
    results: std::collections::HashMap<u64, io::Result<String>>,
    leading: bool,
    next_ticket: u64,
}

impl GroupCommit {
    fn commit(&self, job: Job) -> io::Result<String> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        state.waiting.push((ticket, job));
        loop {
            if let Some(result) = state.results.remove(&ticket) {
                return result;
            }
            if !state.leading {
                state.leading = true;
                let batch = std::mem::take(&mut state.waiting);
                drop(state);
                let results = make_durable(batch);
                state = self.state.lock().unwrap_or_else(|p| p.into_inner());
                state.leading = false;
                state.results.extend(results);
                self.done.notify_all();
                continue;
            }
            state = self.done.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }
}

fn make_durable(batch: Vec<(u64, Job)>) -> Vec<(u64, io::Result<String>)> {
    // 1. Every file under its queue ID. 2. Each file's data flushed: the first flush commits
    // the journal with every rename and (ext4's ordered mode) the batch's data, so the others
    // cost little. 3. One fsync per directory for the new names. Only our own files are
    // flushed, never the whole file system (a syncfs would wait for every other program's
    // writes). A crash before the end may leave a renamed file with missing blocks; nobody was
    // told it was safe, and its checksums make pickup or the queue manager set it aside.
    let mut renamed = Vec::with_capacity(batch.len());
    for (ticket, job) in batch {
        let result = rename_to_id(&job);
        if result.is_err() {
            let _ = fs::remove_file(&job.tmp);
        }
        renamed.push((ticket, result, job));
    }
    let mut synced_dirs: Vec<(PathBuf, Result<(), String>)> = Vec::new();
    let mut results = Vec::with_capacity(renamed.len());
    for (ticket, result, job) in &renamed {
        let result = match result {
            Ok(id) => job.file.sync_data().map(|()| id.clone()),
            Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
        };
        if result.is_ok() && !synced_dirs.iter().any(|(d, _)| *d == job.dir) {
            synced_dirs.push((job.dir.clone(), sync_entries(&job.dir, &job.file).map_err(|e| e.to_string())));
        }
        results.push((*ticket, result, job.dir.clone()));
    }
    let ids: Vec<Option<String>> = renamed.iter().map(|(_, r, _)| r.as_ref().ok().cloned()).collect();
    results
        .into_iter()
        .zip(ids)
        .map(|((ticket, result, dir), id)| {
            let result = result.and_then(|id| match synced_dirs.iter().find(|(d, _)| *d == dir) {
                Some((_, Err(e))) => Err(io::Error::other(format!("fsync of {}: {e}", dir.display()))),
                _ => Ok(id),
            });
            // The writer hears of the failure and may try again: take the file back so the
            // message is not queued twice.
            if let (Err(_), Some(id)) = (&result, id) {
                let _ = fs::remove_file(dir.join(id));
            }
            (ticket, result)
        })
        .collect()
}

/// Make the names in `dir` durable. An ordinary user submitting to maildrop may not open that
/// directory (it is not readable to others, see layout.rs); only then is the whole file system
/// flushed (syncfs through the file we wrote), which includes the new name.
fn sync_entries(dir: &Path, file: &File) -> io::Result<()> {
    match fsync_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => syncfs(file),
        other => other,
    }
}

fn syncfs(file: &File) -> io::Result<()> {
    // SAFETY: syncfs takes any open descriptor of the file system; ours is valid.
    if unsafe { libc::syncfs(file.as_raw_fd()) } == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// Rename without ever replacing an existing message. A collision needs a clock stepped back
/// onto a reused inode; then the next microsecond is tried.
fn rename_to_id(job: &Job) -> io::Result<String> {
    let inode = job.file.metadata()?.ino();
    for bump in 0..1000 {
        let id = if bump == 0 { job.id.clone() } else { queue_id(job.arrival_us + bump, inode) };
        match nix::fcntl::renameat2(
            nix::fcntl::AT_FDCWD,
            &job.tmp,
            nix::fcntl::AT_FDCWD,
            &job.dir.join(&id),
            nix::fcntl::RenameFlags::RENAME_NOREPLACE,
        ) {
            Ok(()) => return Ok(id),
            Err(nix::errno::Errno::EEXIST) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(io::Error::other("no free queue ID"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::{Origin, RcptState, Recipient, layout};
    use std::io::Read;

    fn envelope() -> Envelope {
        let recipients = vec![Recipient::new("b@example.net"), Recipient::new("c@example.net")];
        Envelope::new("a@example.org", recipients, Origin::Local { uid: 1000 }, now_us())
    }

    fn store() -> (tempfile::TempDir, QueueStore) {
        let dir = tempfile::tempdir().unwrap();
        layout::ensure(dir.path(), None).unwrap();
        let store = QueueStore::new(dir.path());
        (dir, store)
    }

    #[test]
    fn write_read_update_move() {
        let (_d, store) = store();
        let mut w = store.create(QueueName::Incoming, 0).unwrap();
        let body: Vec<u8> = b"Subject: t\n\n".iter().chain(&[b'x'; 150_000]).copied().collect();
        w.write_content(&body).unwrap();
        let id = store.commit(w, &envelope()).unwrap();
        assert!(crate::queue::id::is_queue_id(&id));
        assert_eq!(store.list(QueueName::Incoming).unwrap(), vec![id.clone()]);

        let update = Update::Recipient { index: 1, state: RcptState::Sent, dsn: Some("2.0.0".into()), reason: None };
        store.append_updates(QueueName::Incoming, &id, &[update]).unwrap();
        store.move_to(&id, QueueName::Incoming, QueueName::Deferred).unwrap();
        let (entry, mut content) = store.open_message(QueueName::Deferred, &id).unwrap();
        assert_eq!(entry.envelope.recipients[1].state, RcptState::Sent);
        assert_eq!(entry.envelope.recipients[0].state, RcptState::Pending);
        assert_eq!(entry.size, body.len() as u64);
        let mut read = Vec::new();
        content.read_to_end(&mut read).unwrap();
        assert_eq!(read, body);
    }

    #[test]
    fn size_limit_enforced_while_streaming_and_nothing_left_behind() {
        let (_d, store) = store();
        let mut w = store.create(QueueName::Incoming, 1000).unwrap();
        w.write_content(&[b'a'; 600]).unwrap();
        assert!(matches!(w.write_content(&[b'a'; 600]), Err(QueueError::TooBig { limit: 1000 })));
        drop(w);
        assert!(fs::read_dir(store.dir(QueueName::Incoming)).unwrap().next().is_none());
    }

    #[test]
    fn concurrent_writers_share_commits_and_get_distinct_ids() {
        let (_d, store) = store();
        let ids: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..10)
                .map(|_| {
                    let store = store.clone();
                    s.spawn(move || {
                        (0..20)
                            .map(|_| {
                                let mut w = store.create(QueueName::Incoming, 0).unwrap();
                                w.write_content(b"hello\n").unwrap();
                                store.commit(w, &envelope()).unwrap()
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
        });
        let mut unique = ids.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 200);
        assert_eq!(store.list(QueueName::Incoming).unwrap(), unique);
    }

    #[test]
    fn damaged_file_is_reported_corrupt_and_set_aside() {
        let (_d, store) = store();
        let mut w = store.create(QueueName::Incoming, 0).unwrap();
        w.write_content(b"hello\n").unwrap();
        let id = store.commit(w, &envelope()).unwrap();
        let path = store.path(QueueName::Incoming, &id);
        let len = fs::metadata(&path).unwrap().len();
        OpenOptions::new().write(true).open(&path).unwrap().set_len(len - 3).unwrap();
        assert!(matches!(store.read_entry(QueueName::Incoming, &id), Err(QueueError::Corrupt(_))));
        let aside = store.set_aside(QueueName::Incoming, &id).unwrap();
        assert!(store.path(QueueName::Corrupt, &aside).exists());
        assert!(store.list(QueueName::Incoming).unwrap().is_empty());
    }
}
