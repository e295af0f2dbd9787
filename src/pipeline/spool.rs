//! The local spool: the write-ahead log of async events and where events wait while the store is
//! unavailable, in append-only segment files of framed records, until the writer has them in the
//! store. It owns the spool directory (segments and the persisted instance id) and blocking file
//! I/O; it never talks to the store.
//!
//! Two ways in:
//! - [`Spool::log`] (write-ahead, `store.spool.write_ahead`): one async event, one `write` (no
//!   `fsync`) before its response is released, so a process crash (`kill -9`, OOM, panic) loses
//!   none. A flusher thread ([`spawn_flusher`]) `fdatasync`s the newest segment every
//!   `fsync_interval`, which bounds what a machine crash (power, kernel) can lose to the events
//!   acknowledged in the last interval.
//! - [`Spool::append`]: a batch the store refused that was not logged ahead, written and
//!   `fsync`ed at once.
//!
//! Every record gets a position (`lsn`, in memory, counted from 0 in each run) in append order.
//! Everything below [`Spool::consumed`] is in the store; the writer moves it up with
//! [`Spool::release`] once a batch has committed (the copy it had in memory) or by reading the
//! records back ([`Spool::plan`], [`ReadPlan::read`]) when it fell behind. A segment is deleted
//! once every record in it is below `consumed`.
//!
//! Format: each segment `spool-<n>.log` starts with the magic `ATSPOOL2`, then records of
//! `u32 length (LE) | u64 checksum (LE, the CRC-32 of the payload) | payload`, the payload being
//! one event as JSON. The checksum finds torn and damaged records (tamper evidence is the hash
//! chain's job, once stored). Segments written before December 2026 start with `ATSPOOL1` and
//! carry the first 8 bytes of the payload's SHA-256 instead: they are still read and replayed,
//! and never appended to. On open, a torn record at the end of the newest segment
//! (a crash mid-write) is cut off; a bad record anywhere else ends that segment (what follows it
//! is counted as lost and logged).
//!
//! `consumed` is kept in memory only: after a crash every record still on disk is read again,
//! which is harmless because appending to the store is idempotent on event id. A clean stop
//! ([`Spool::close`]) deletes what is consumed, so a restart replays only what was not stored.
//!
//! Full: when a record or batch would take the files past `max_bytes` it is refused (a logged
//! event then travels in memory only; a refused batch is counted in `failed` by the writer) and
//! what is already spooled is kept: the oldest evidence is never evicted for the newest.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use aws_lc_rs::digest::{digest, SHA256};
use crc32fast::hash as crc32;

use crate::event::AuditEvent;

const MAGIC: &[u8; 8] = b"ATSPOOL2";
/// The first format's magic: records checked by a SHA-256 prefix.
const MAGIC_V1: &[u8; 8] = b"ATSPOOL1";

/// How a segment's records are checked: by the magic it starts with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    /// `ATSPOOL1`: the first 8 bytes of SHA-256.
    Sha256Prefix,
    /// `ATSPOOL2`: CRC-32 (IEEE), what this version writes.
    Crc32,
}

impl Format {
    fn of_magic(magic: &[u8; 8]) -> Option<Format> {
        match magic {
            m if m == MAGIC => Some(Format::Crc32),
            m if m == MAGIC_V1 => Some(Format::Sha256Prefix),
            _ => None,
        }
    }

    fn checksum(self, payload: &[u8]) -> u64 {
        match self {
            Format::Crc32 => u64::from(crc32(payload)),
            Format::Sha256Prefix => {
                let sum = digest(&SHA256, payload);
                let mut first = [0u8; 8];
                first.copy_from_slice(&sum.as_ref()[..8]);
                u64::from_le_bytes(first)
            }
        }
    }
}
/// Length and checksum before each payload.
const FRAME: u64 = 12;
/// A payload longer than this is corruption, not an event.
const MAX_RECORD: u32 = 16 * 1024 * 1024;
/// A segment is closed (and a new one started) once it is this large.
const SEGMENT_BYTES: u64 = 8 * 1024 * 1024;
/// A fully consumed newest segment is closed and deleted once it is this large, so a busy
/// write-ahead log does not keep 8 MiB of stored events for a crash to replay.
const RECYCLE_BYTES: u64 = 1024 * 1024;
/// The persisted chain instance id.
const INSTANCE_FILE: &str = "instance-id";

/// Where the spool lives and how big it may grow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpoolConfig {
    pub dir: PathBuf,
    /// Most bytes the spool's segment files may hold together.
    pub max_bytes: u64,
    /// Every async event is logged here before its response is released. Default: true.
    pub write_ahead: bool,
    /// How often the newest segment is `fdatasync`ed while it has unsynced records: the most a
    /// machine crash can lose. Default: 100 ms.
    pub fsync_interval: Duration,
}

impl SpoolConfig {
    /// A spool in `dir` with the defaults: 256 MiB, write-ahead, 100 ms fsync interval.
    pub fn new(dir: impl Into<PathBuf>) -> SpoolConfig {
        SpoolConfig {
            dir: dir.into(),
            max_bytes: 256 * 1024 * 1024,
            write_ahead: true,
            fsync_interval: Duration::from_millis(100),
        }
    }
}

/// Spool failures; messages name the file.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("spool full: {needed} more bytes would pass max_bytes ({max_bytes})")]
    Full { needed: u64, max_bytes: u64 },
    #[error("spool {path}: invalid instance id \"{id}\"")]
    InvalidInstance { path: String, id: String },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.display().to_string(),
        source,
    }
}

#[derive(Debug)]
struct Segment {
    path: PathBuf,
    /// Position of its first record.
    first: u64,
    /// Position after its last record.
    end: u64,
    /// Bytes of valid content (header included).
    len: u64,
    format: Format,
}

/// An open spool directory. Not thread-safe by itself: the pipeline shares it behind a mutex.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    instance_id: String,
    /// Oldest first; the last one takes appends.
    segments: VecDeque<Segment>,
    /// Position the next record gets.
    next: u64,
    /// The highest segment number used: new segments count on from it.
    last_index: u64,
    /// Every record below this position is in the store.
    consumed: u64,
    /// Byte offset of the record at `consumed` in its segment, when known: (position, offset).
    cursor: Option<(u64, u64)>,
    /// What the last `peek` read: the position after it and the cursor there.
    peeked: Option<(u64, Option<(u64, u64)>)>,
    active: Option<Arc<File>>,
    /// Records written to `active` since it was last synced.
    dirty: bool,
    write_ahead: bool,
    fsync_interval: Duration,
}

/// Read one record at the reader's position: `Ok(None)` at a clean end, `Err(())` on a torn or
/// corrupt record.
fn read_record(r: &mut impl Read, format: Format) -> Result<Option<Vec<u8>>, ()> {
    let mut head = [0u8; FRAME as usize];
    let mut got = 0;
    while got < head.len() {
        match r.read(&mut head[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Err(()),
        }
    }
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    let mut sum = [0u8; 8];
    sum.copy_from_slice(&head[4..12]);
    if len > MAX_RECORD {
        return Err(());
    }
    let mut payload = vec![0u8; len as usize];
    r.read_exact(&mut payload).map_err(|_| ())?;
    if format.checksum(&payload) != u64::from_le_bytes(sum) {
        return Err(());
    }
    Ok(Some(payload))
}

/// The JSON of the event in a record made by [`encode`]: the event as serde_json writes it,
/// which the store takes as the event's body instead of encoding it again.
pub fn payload(record: &[u8]) -> &[u8] {
    record.get(FRAME as usize..).unwrap_or_default()
}

/// One event as a framed record, ready for [`Spool::log`]. Done before the spool's lock is taken.
pub fn encode(event: &AuditEvent) -> Result<Vec<u8>, SpoolError> {
    let mut buf = Vec::with_capacity(1024);
    encode_into(&mut buf, event)?;
    Ok(buf)
}

fn encode_into(buf: &mut Vec<u8>, event: &AuditEvent) -> Result<(), SpoolError> {
    let start = buf.len();
    buf.extend_from_slice(&[0u8; FRAME as usize]);
    serde_json::to_writer(&mut *buf, event).map_err(|e| SpoolError::Io {
        path: "spool record".into(),
        source: io::Error::other(e),
    })?;
    let payload_len = buf.len() - start - FRAME as usize;
    let sum = Format::Crc32.checksum(&buf[start + FRAME as usize..]);
    buf[start..start + 4].copy_from_slice(&(payload_len as u32).to_le_bytes());
    buf[start + 4..start + 12].copy_from_slice(&sum.to_le_bytes());
    Ok(())
}

impl Spool {
    /// Open (creating if missing) the spool in `cfg.dir`: read the instance id (creating a random
    /// one on first use), count the records waiting, cut a torn tail. Blocking.
    pub fn open(cfg: &SpoolConfig) -> Result<Spool, SpoolError> {
        fs::create_dir_all(&cfg.dir).map_err(io_err(&cfg.dir))?;
        let instance_id = read_or_create_instance(&cfg.dir)?;

        let mut found: Vec<(u64, PathBuf)> = Vec::new();
        for entry in fs::read_dir(&cfg.dir).map_err(io_err(&cfg.dir))? {
            let entry = entry.map_err(io_err(&cfg.dir))?;
            let name = entry.file_name();
            let Some(index) = name
                .to_str()
                .and_then(|n| n.strip_prefix("spool-"))
                .and_then(|n| n.strip_suffix(".log"))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            found.push((index, entry.path()));
        }
        found.sort();
        let last_index = found.last().map_or(0, |(i, _)| *i);
        let last = found.len().saturating_sub(1);
        let mut segments = VecDeque::new();
        let mut next = 0;
        for (i, (_, path)) in found.into_iter().enumerate() {
            let (len, records, clean, format) = scan(&path)?;
            if !clean {
                if i == last {
                    // A crash mid-write: drop the torn record.
                    let f = OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .map_err(io_err(&path))?;
                    f.set_len(len).map_err(io_err(&path))?;
                    f.sync_all().map_err(io_err(&path))?;
                    tracing::warn!(file = %path.display(), records, "spool: cut a torn record at the end");
                } else {
                    tracing::error!(file = %path.display(), records, "spool: corrupt record; the rest of this segment is lost");
                }
            }
            if records == 0 && i != last {
                let _ = fs::remove_file(&path);
                continue;
            }
            if len < MAGIC.len() as u64 {
                // Not even the magic made it to disk: start that segment again.
                let _ = fs::remove_file(&path);
                continue;
            }
            segments.push_back(Segment {
                path,
                first: next,
                end: next + records,
                len,
                format,
            });
            next += records;
        }
        Ok(Spool {
            dir: cfg.dir.clone(),
            max_bytes: cfg.max_bytes,
            instance_id,
            segments,
            next,
            last_index,
            consumed: 0,
            cursor: Some((0, MAGIC.len() as u64)),
            peeked: None,
            active: None,
            dirty: false,
            write_ahead: cfg.write_ahead,
            fsync_interval: cfg.fsync_interval,
        })
    }

    /// Whether async events are logged here before their response is released.
    pub fn write_ahead(&self) -> bool {
        self.write_ahead
    }

    /// How often the flusher syncs the newest segment.
    pub fn fsync_interval(&self) -> Duration {
        self.fsync_interval
    }

    /// The chain instance id persisted in this spool directory.
    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// Records not yet in the store: replayed ones waiting and, with write-ahead, the ones the
    /// writer has in memory.
    pub fn depth(&self) -> u64 {
        self.next - self.consumed
    }

    /// Bytes of the segment files.
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.len).sum()
    }

    /// The position the next record gets.
    pub fn next_position(&self) -> u64 {
        self.next
    }

    /// Every record below this position is in the store.
    pub fn consumed(&self) -> u64 {
        self.consumed
    }

    /// Write one record made by [`encode`] with one `write` (no `fsync`: the flusher does that)
    /// and return its position. Refused when it would pass `max_bytes`.
    pub fn log(&mut self, record: &[u8]) -> Result<u64, SpoolError> {
        self.write(record, 1, false)
    }

    /// Append `events` as one batch and `fsync` it. Refused whole when it would pass
    /// `max_bytes`.
    pub fn append(&mut self, events: &[AuditEvent]) -> Result<(), SpoolError> {
        let mut buf = Vec::new();
        for e in events {
            encode_into(&mut buf, e)?;
        }
        self.write(&buf, events.len() as u64, true).map(|_| ())
    }

    /// Write `records` framed records in `buf` at the end of the newest segment; the position of
    /// the first.
    fn write(&mut self, buf: &[u8], records: u64, sync: bool) -> Result<u64, SpoolError> {
        let needed = buf.len() as u64 + MAGIC.len() as u64;
        if self.bytes() + needed > self.max_bytes {
            return Err(SpoolError::Full {
                needed,
                max_bytes: self.max_bytes,
            });
        }
        // A segment of the older format is read, never appended to.
        let rotate = self
            .segments
            .back()
            .is_none_or(|s| s.len >= SEGMENT_BYTES || s.format != Format::Crc32);
        if rotate || self.active.is_none() {
            self.open_active(rotate)?;
        }
        let (Some(seg), Some(file)) = (self.segments.back_mut(), self.active.clone()) else {
            return Err(SpoolError::Io {
                path: self.dir.display().to_string(),
                source: io::Error::other("no active segment"),
            });
        };
        let written =
            file.write_all_at(buf, seg.len)
                .and_then(|()| if sync { file.sync_data() } else { Ok(()) });
        if let Err(e) = written {
            // Whatever part was written is beyond `len` and will be overwritten or cut.
            let path = seg.path.clone();
            self.active = None;
            return Err(io_err(&path)(e));
        }
        let first = seg.end;
        seg.len += buf.len() as u64;
        seg.end += records;
        self.next += records;
        self.dirty = !sync;
        Ok(first)
    }

    /// Open the newest segment for appending, or start a new one when `new` (or there is none).
    fn open_active(&mut self, new: bool) -> Result<(), SpoolError> {
        if new || self.segments.is_empty() {
            if let Some(old) = self.active.take() {
                // Seal the full segment: the flusher only ever syncs the newest.
                if self.dirty {
                    if let Err(e) = old.sync_data() {
                        tracing::error!(error = %e, "spool: fsync of a full segment failed");
                    }
                }
            }
            self.dirty = false;
            let index = self.last_index + 1;
            let path = self.dir.join(format!("spool-{index:012}.log"));
            let mut f = create_private(&path)?;
            if let Err(e) = f.write_all(MAGIC).and_then(|()| f.sync_all()) {
                // A full disk takes the inode but not the magic: remove the half-made segment,
                // or every later append would find its name taken (EEXIST) and the spool would
                // never take an event again, even once the disk has room.
                drop(f);
                let _ = fs::remove_file(&path);
                return Err(io_err(&path)(e));
            }
            sync_dir(&self.dir);
            self.last_index = index;
            self.segments.push_back(Segment {
                path,
                first: self.next,
                end: self.next,
                len: MAGIC.len() as u64,
                format: Format::Crc32,
            });
            self.active = Some(Arc::new(f));
        } else if let Some(seg) = self.segments.back() {
            let f = OpenOptions::new()
                .write(true)
                .open(&seg.path)
                .map_err(io_err(&seg.path))?;
            self.active = Some(Arc::new(f));
        }
        Ok(())
    }

    /// The newest segment when it has records not yet synced (and now counts as synced): for the
    /// flusher, which syncs it outside the lock.
    fn take_dirty(&mut self) -> Option<Arc<File>> {
        if !self.dirty {
            return None;
        }
        self.dirty = false;
        self.active.clone()
    }

    /// Where up to `max` records from `consumed` on are: read them with [`ReadPlan::read`]
    /// without holding the spool (records below the newest segment's length are complete and
    /// never rewritten).
    pub fn plan(&self, max: usize) -> ReadPlan {
        let mut parts = Vec::new();
        let mut left = max as u64;
        let mut at = self.consumed;
        for seg in &self.segments {
            if left == 0 {
                break;
            }
            if seg.end <= at {
                continue;
            }
            let at_seg = at.max(seg.first);
            let (offset, skip) = match self.cursor {
                _ if at_seg == seg.first => (MAGIC.len() as u64, 0),
                Some((lsn, off)) if lsn == at_seg => (off, 0),
                _ => (MAGIC.len() as u64, at_seg - seg.first),
            };
            let count = (seg.end - at_seg).min(left);
            parts.push(Part {
                path: seg.path.clone(),
                offset,
                skip,
                first: at_seg,
                count,
                len: seg.len,
                format: seg.format,
            });
            left -= count;
            at = at_seg + count;
        }
        // Nothing left to read: whatever the count says, no segment holds it.
        let end = if parts.is_empty() { self.next } else { at };
        ReadPlan { parts, end }
    }

    /// Everything below `upto` is in the store now (`cursor`: where the record at `upto` starts,
    /// when the caller read up to it); delete segments that are done.
    pub fn release(&mut self, upto: u64, cursor: Option<(u64, u64)>) -> Result<(), SpoolError> {
        let upto = upto.min(self.next);
        if upto <= self.consumed {
            return Ok(());
        }
        self.consumed = upto;
        self.cursor = cursor.filter(|(lsn, _)| *lsn == upto);
        self.drop_done(RECYCLE_BYTES)
    }

    /// Delete the segments wholly below `consumed`; the newest only once it is `keep_newest`
    /// bytes or more (0: always).
    fn drop_done(&mut self, keep_newest: u64) -> Result<(), SpoolError> {
        let mut removed = false;
        while let Some(front) = self.segments.front() {
            let newest = self.segments.len() == 1;
            if front.end > self.consumed || (newest && keep_newest > 0 && front.len < keep_newest) {
                break;
            }
            let Some(seg) = self.segments.pop_front() else {
                break;
            };
            if newest {
                self.active = None;
                self.dirty = false;
            }
            fs::remove_file(&seg.path).map_err(io_err(&seg.path))?;
            removed = true;
        }
        if removed {
            sync_dir(&self.dir);
        }
        if let Some(front) = self.segments.front() {
            if self.consumed <= front.first {
                self.cursor = Some((front.first, MAGIC.len() as u64));
            }
        }
        Ok(())
    }

    /// A clean stop: sync what is unsynced and delete every segment already in the store, so the
    /// next start replays only what is not.
    pub fn close(&mut self) -> Result<(), SpoolError> {
        if let Some(f) = self.take_dirty() {
            let path = self
                .segments
                .back()
                .map(|s| s.path.clone())
                .unwrap_or_default();
            f.sync_data().map_err(io_err(&path))?;
        }
        self.drop_done(0)
    }

    /// Read up to `max` of the oldest events not yet consumed; [`Spool::consume`] then drops
    /// exactly these. Records that fail to decode are skipped and logged.
    pub fn peek(&mut self, max: usize) -> Result<Vec<AuditEvent>, SpoolError> {
        let read = self.plan(max).read()?;
        self.peeked = Some((read.end, read.cursor));
        Ok(read.events)
    }

    /// Drop what the last [`Spool::peek`] returned (it is in the store now).
    pub fn consume(&mut self) -> Result<(), SpoolError> {
        match self.peeked.take() {
            Some((end, cursor)) => self.release(end, cursor),
            None => Ok(()),
        }
    }
}

/// Records of one segment to read back.
#[derive(Debug)]
struct Part {
    path: PathBuf,
    /// Byte offset to start at, and records to pass over from there.
    offset: u64,
    skip: u64,
    /// Position of the first record to return, and how many.
    first: u64,
    count: u64,
    format: Format,
    /// The segment's valid length when planned: reading stops there.
    len: u64,
}

/// Records to read back: see [`Spool::plan`].
#[derive(Debug)]
pub struct ReadPlan {
    parts: Vec<Part>,
    end: u64,
}

/// What [`ReadPlan::read`] read.
#[derive(Debug, Default)]
pub struct ReadBack {
    pub events: Vec<AuditEvent>,
    /// The position after the last record read: pass it to [`Spool::release`] once stored.
    pub end: u64,
    /// Where the record at `end` starts.
    pub cursor: Option<(u64, u64)>,
}

impl ReadPlan {
    /// Read and decode the planned records. Blocking. A record that fails to decode is skipped and
    /// logged; one that cannot be read ends its segment there (logged: the rest is lost).
    pub fn read(&self) -> Result<ReadBack, SpoolError> {
        let mut out = ReadBack {
            end: self.end,
            ..ReadBack::default()
        };
        for part in &self.parts {
            let mut f = File::open(&part.path).map_err(io_err(&part.path))?;
            f.seek(SeekFrom::Start(part.offset))
                .map_err(io_err(&part.path))?;
            let mut r = BufReader::new(f).take(part.len.saturating_sub(part.offset));
            let mut offset = part.offset;
            let mut broken = false;
            for i in 0..part.skip + part.count {
                let Ok(Some(payload)) = read_record(&mut r, part.format) else {
                    broken = true;
                    break;
                };
                offset += FRAME + payload.len() as u64;
                if i < part.skip {
                    continue;
                }
                match serde_json::from_slice::<AuditEvent>(&payload) {
                    Ok(e) => out.events.push(e),
                    Err(e) => {
                        tracing::error!(file = %part.path.display(), error = %e, "spool: undecodable record skipped")
                    }
                }
            }
            if broken {
                tracing::error!(file = %part.path.display(), "spool: unreadable record; the rest of this segment is lost");
                out.cursor = None;
            } else {
                out.cursor = Some((part.first + part.count, offset));
            }
        }
        Ok(out)
    }
}

/// Sync the spool's newest segment every `interval` while it has unsynced records, on a thread
/// of its own (an `fdatasync` can take milliseconds); the thread ends once the spool is dropped.
pub fn spawn_flusher(spool: &Arc<Mutex<Spool>>, interval: Duration) -> io::Result<()> {
    let weak: Weak<Mutex<Spool>> = Arc::downgrade(spool);
    std::thread::Builder::new()
        .name("authtrail-spool-fsync".into())
        .spawn(move || loop {
            std::thread::sleep(interval);
            let Some(spool) = weak.upgrade() else { return };
            let file = spool
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take_dirty();
            drop(spool);
            if let Some(f) = file {
                if let Err(e) = f.sync_data() {
                    tracing::error!(error = %e, "spool: fsync failed: events logged since the last one are not safe from a machine crash");
                }
            }
        })
        .map(|_| ())
}

/// Whether the spool directory takes a write now: create a small file, write one block to it,
/// `fsync` it and remove it again. For `/readyz` while the store is down (the spool then decides
/// whether requests are recorded); a full or read-only disk fails it. Blocking.
pub fn probe(dir: &Path) -> Result<(), SpoolError> {
    let path = dir.join(format!("probe-{}.tmp", uuid::Uuid::now_v7().simple()));
    let written = create_private(&path).and_then(|mut f| {
        f.write_all(&[0u8; 4096])
            .and_then(|()| f.sync_data())
            .map_err(io_err(&path))
    });
    let _ = fs::remove_file(&path);
    written
}

/// Length of valid content, records in it, whether it ended cleanly, and its format.
fn scan(path: &Path) -> Result<(u64, u64, bool, Format), SpoolError> {
    let f = File::open(path).map_err(io_err(path))?;
    let mut r = BufReader::new(f);
    let mut magic = [0u8; 8];
    let format = match r.read_exact(&mut magic) {
        Ok(()) => Format::of_magic(&magic),
        Err(_) => None,
    };
    let Some(format) = format else {
        return Ok((0, 0, false, Format::Crc32));
    };
    let mut len = MAGIC.len() as u64;
    let mut records = 0;
    loop {
        match read_record(&mut r, format) {
            Ok(Some(p)) => {
                len += FRAME + p.len() as u64;
                records += 1;
            }
            Ok(None) => return Ok((len, records, true, format)),
            Err(()) => return Ok((len, records, false, format)),
        }
    }
}

fn create_private(path: &Path) -> Result<File, SpoolError> {
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Events are as sensitive as the trail itself.
        opts.mode(0o600);
    }
    opts.open(path).map_err(io_err(path))
}

/// Make a created or deleted file's directory entry durable (best effort).
fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

fn read_or_create_instance(dir: &Path) -> Result<String, SpoolError> {
    let path = dir.join(INSTANCE_FILE);
    match fs::read_to_string(&path) {
        Ok(s) => {
            let id = s.trim().to_string();
            if crate::store::chain::valid_instance_id(&id) {
                Ok(id)
            } else {
                Err(SpoolError::InvalidInstance {
                    path: path.display().to_string(),
                    id,
                })
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let id = format!("i-{}", uuid::Uuid::now_v7().simple());
            let tmp = dir.join(format!("{INSTANCE_FILE}.tmp"));
            let _ = fs::remove_file(&tmp);
            let mut f = create_private(&tmp)?;
            f.write_all(format!("{id}\n").as_bytes())
                .and_then(|()| f.sync_all())
                .map_err(io_err(&tmp))?;
            fs::rename(&tmp, &path).map_err(io_err(&path))?;
            sync_dir(dir);
            Ok(id)
        }
        Err(e) => Err(io_err(&path)(e)),
    }
}

#[cfg(test)]
mod tests;
