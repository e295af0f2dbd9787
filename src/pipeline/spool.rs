//! The local spool: where events wait while the store is unavailable, in append-only segment
//! files of framed records, until the writer replays them in order. It owns the spool directory
//! (segments and the persisted instance id) and blocking file I/O; it never talks to the store.
//!
//! Format: each segment `spool-<n>.log` starts with the magic `ATSPOOL1`, then records of
//! `u32 length (LE) | u64 checksum (LE, the first 8 bytes of SHA-256 of the payload) | payload`,
//! the payload being one event as JSON. A batch is appended and then `fsync`ed once. On open, a
//! torn record at the end of the newest segment (a crash mid-append) is cut off; a bad record
//! anywhere else ends that segment (what follows it is counted as lost and logged).
//!
//! Replay reads from the oldest record and deletes a segment once every record in it is in the
//! store. The read position is kept in memory only: after a crash the oldest segment is read
//! again from its start, which is harmless because appending is idempotent on event id.
//!
//! Full: when appending a batch would take the files past `max_bytes`, the batch is refused
//! (the writer counts it in `failed` and logs it) and what is already spooled is kept: the
//! oldest evidence is never evicted for the newest.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::event::AuditEvent;

const MAGIC: &[u8; 8] = b"ATSPOOL1";
/// Length and checksum before each payload.
const FRAME: u64 = 12;
/// A payload longer than this is corruption, not an event.
const MAX_RECORD: u32 = 16 * 1024 * 1024;
/// A segment is closed (and a new one started) once it is this large.
const SEGMENT_BYTES: u64 = 8 * 1024 * 1024;
/// The persisted chain instance id.
const INSTANCE_FILE: &str = "instance-id";

/// Where the spool lives and how big it may grow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpoolConfig {
    pub dir: PathBuf,
    /// Most bytes the spool's segment files may hold together.
    pub max_bytes: u64,
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
    index: u64,
    path: PathBuf,
    /// Bytes of valid content (header included).
    len: u64,
    /// Records not yet replayed.
    records: u64,
}

/// An open spool directory. Not thread-safe by itself: the writer owns it.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    instance_id: String,
    /// Oldest first; the last one takes appends.
    segments: VecDeque<Segment>,
    /// Byte offset of the next record to replay in the oldest segment.
    read_offset: u64,
    /// What the last `peek` read, per segment from the oldest: (records, end offset).
    peeked: Option<Vec<(u64, u64)>>,
    active: Option<File>,
}

fn checksum(payload: &[u8]) -> u64 {
    let digest = Sha256::digest(payload);
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(first)
}

/// Read one record at the reader's position: `Ok(None)` at a clean end, `Err(())` on a torn or
/// corrupt record.
fn read_record(r: &mut impl Read) -> Result<Option<Vec<u8>>, ()> {
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
    if checksum(&payload) != u64::from_le_bytes(sum) {
        return Err(());
    }
    Ok(Some(payload))
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
        let last = found.len().saturating_sub(1);
        let mut segments = VecDeque::new();
        for (i, (index, path)) in found.into_iter().enumerate() {
            let (len, records, clean) = scan(&path)?;
            if !clean {
                if i == last {
                    // A crash mid-append: drop the torn record.
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
            segments.push_back(Segment {
                index,
                path,
                len,
                records,
            });
        }
        Ok(Spool {
            dir: cfg.dir.clone(),
            max_bytes: cfg.max_bytes,
            instance_id,
            segments,
            read_offset: MAGIC.len() as u64,
            peeked: None,
            active: None,
        })
    }

    /// The chain instance id persisted in this spool directory.
    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// Events waiting to be replayed.
    pub fn depth(&self) -> u64 {
        self.segments.iter().map(|s| s.records).sum()
    }

    /// Bytes of the segment files.
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.len).sum()
    }

    /// Append `events` as one batch and `fsync` it. Refused whole when it would pass
    /// `max_bytes`.
    pub fn append(&mut self, events: &[AuditEvent]) -> Result<(), SpoolError> {
        let mut buf = Vec::new();
        for e in events {
            let payload = serde_json::to_vec(e).map_err(|e| SpoolError::Io {
                path: self.dir.display().to_string(),
                source: io::Error::other(e),
            })?;
            buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            buf.extend_from_slice(&checksum(&payload).to_le_bytes());
            buf.extend_from_slice(&payload);
        }
        let needed = buf.len() as u64 + MAGIC.len() as u64;
        if self.bytes() + needed > self.max_bytes {
            return Err(SpoolError::Full {
                needed,
                max_bytes: self.max_bytes,
            });
        }
        let rotate = self.segments.back().is_none_or(|s| s.len >= SEGMENT_BYTES);
        if rotate || self.active.is_none() {
            self.open_active(rotate)?;
        }
        let seg = self.segments.back_mut().ok_or_else(|| SpoolError::Io {
            path: self.dir.display().to_string(),
            source: io::Error::other("no active segment"),
        })?;
        let file = self.active.as_mut().ok_or_else(|| SpoolError::Io {
            path: seg.path.display().to_string(),
            source: io::Error::other("no active segment"),
        })?;
        let path = seg.path.clone();
        let write = (|| {
            file.seek(SeekFrom::Start(seg.len))?;
            file.write_all(&buf)?;
            file.sync_data()
        })();
        if let Err(e) = write {
            // Whatever part was written is beyond `len` and will be overwritten or cut.
            self.active = None;
            return Err(io_err(&path)(e));
        }
        seg.len += buf.len() as u64;
        seg.records += events.len() as u64;
        Ok(())
    }

    /// Open the newest segment for appending, or start a new one when `new` (or there is none).
    fn open_active(&mut self, new: bool) -> Result<(), SpoolError> {
        if new || self.segments.is_empty() {
            let index = self.segments.back().map_or(1, |s| s.index + 1);
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
            self.segments.push_back(Segment {
                index,
                path,
                len: MAGIC.len() as u64,
                records: 0,
            });
            self.active = Some(f);
        } else if let Some(seg) = self.segments.back() {
            let f = OpenOptions::new()
                .write(true)
                .open(&seg.path)
                .map_err(io_err(&seg.path))?;
            self.active = Some(f);
        }
        Ok(())
    }

    /// Read up to `max` of the oldest events without consuming them; [`Spool::consume`] then
    /// drops exactly these. Records that fail to decode are skipped and logged.
    pub fn peek(&mut self, max: usize) -> Result<Vec<AuditEvent>, SpoolError> {
        let mut out = Vec::new();
        let mut touched = Vec::new();
        for (i, seg) in self.segments.iter().enumerate() {
            if out.len() >= max {
                break;
            }
            let start = if i == 0 {
                self.read_offset
            } else {
                MAGIC.len() as u64
            };
            let mut f = File::open(&seg.path).map_err(io_err(&seg.path))?;
            f.seek(SeekFrom::Start(start)).map_err(io_err(&seg.path))?;
            let mut r = BufReader::new(f).take(seg.len.saturating_sub(start));
            let (mut taken, mut offset) = (0, start);
            while out.len() < max && taken < seg.records {
                let Ok(Some(payload)) = read_record(&mut r) else {
                    break;
                };
                offset += FRAME + payload.len() as u64;
                taken += 1;
                match serde_json::from_slice::<AuditEvent>(&payload) {
                    Ok(e) => out.push(e),
                    Err(e) => {
                        tracing::error!(file = %seg.path.display(), error = %e, "spool: undecodable record skipped")
                    }
                }
            }
            touched.push((taken, offset));
            if taken < seg.records {
                break;
            }
        }
        self.peeked = Some(touched);
        Ok(out)
    }

    /// Drop what the last [`Spool::peek`] returned (it is in the store now); delete segments
    /// that are done.
    pub fn consume(&mut self) -> Result<(), SpoolError> {
        let Some(touched) = self.peeked.take() else {
            return Ok(());
        };
        let mut removed = false;
        for (taken, offset) in touched {
            let Some(front) = self.segments.front_mut() else {
                break;
            };
            front.records = front.records.saturating_sub(taken);
            if front.records > 0 {
                self.read_offset = offset;
                break;
            }
            let done = self.segments.pop_front();
            if self.segments.is_empty() {
                self.active = None;
            }
            self.read_offset = MAGIC.len() as u64;
            if let Some(seg) = done {
                fs::remove_file(&seg.path).map_err(io_err(&seg.path))?;
                removed = true;
            }
        }
        if removed {
            sync_dir(&self.dir);
        }
        Ok(())
    }
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

/// Length of valid content, records in it, and whether it ended cleanly.
fn scan(path: &Path) -> Result<(u64, u64, bool), SpoolError> {
    let f = File::open(path).map_err(io_err(path))?;
    let mut r = BufReader::new(f);
    let mut magic = [0u8; 8];
    if r.read_exact(&mut magic).is_err() || &magic != MAGIC {
        return Ok((0, 0, false));
    }
    let mut len = MAGIC.len() as u64;
    let mut records = 0;
    loop {
        match read_record(&mut r) {
            Ok(Some(p)) => {
                len += FRAME + p.len() as u64;
                records += 1;
            }
            Ok(None) => return Ok((len, records, true)),
            Err(()) => return Ok((len, records, false)),
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
