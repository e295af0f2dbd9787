use std::io::Write;

use time::macros::datetime;

use super::*;
use crate::event::{Actor, ClientInfo, HttpInfo, Outcome, Stage};

fn event(label: &str) -> AuditEvent {
    AuditEvent {
        id: uuid::Uuid::now_v7(),
        seq: None,
        time: datetime!(2025-01-01 12:00:00.000 UTC),
        event_type: "auth.login".into(),
        stage: Stage::Completed,
        outcome: Outcome::Success,
        reason: None,
        app: None,
        actor: Actor::anonymous(),
        app_conflict: None,
        target: None,
        tokens: Vec::new(),
        source: ClientInfo::default(),
        http: HttpInfo {
            request_id: label.into(),
            ..HttpInfo::default()
        },
        details: Default::default(),
        chain: None,
    }
}

fn labels(events: &[AuditEvent]) -> Vec<String> {
    events.iter().map(|e| e.http.request_id.clone()).collect()
}

fn cfg(dir: &Path, max_bytes: u64) -> SpoolConfig {
    SpoolConfig {
        max_bytes,
        ..SpoolConfig::new(dir)
    }
}

#[test]
fn appended_events_come_back_in_order_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Spool::open(&cfg(dir.path(), 1 << 20)).unwrap();
    let id = s.instance_id().to_string();
    s.append(&[event("a"), event("b")]).unwrap();
    s.append(&[event("c")]).unwrap();
    assert_eq!(s.depth(), 3);
    drop(s);

    let mut s = Spool::open(&cfg(dir.path(), 1 << 20)).unwrap();
    assert_eq!(s.instance_id(), id, "the instance id is persisted");
    assert_eq!(s.depth(), 3);
    assert_eq!(labels(&s.peek(2).unwrap()), ["a", "b"]);
    s.consume().unwrap();
    assert_eq!(s.depth(), 1);
    s.append(&[event("d")]).unwrap();
    assert_eq!(labels(&s.peek(10).unwrap()), ["c", "d"]);
    s.consume().unwrap();
    assert_eq!(s.depth(), 0);
    assert!(s.peek(10).unwrap().is_empty());
    s.close().unwrap();
    let logs: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".log")
        })
        .collect();
    assert!(
        logs.is_empty(),
        "replayed segments are deleted at a clean stop"
    );
}

#[test]
fn a_peek_not_consumed_is_read_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Spool::open(&cfg(dir.path(), 1 << 20)).unwrap();
    s.append(&[event("a"), event("b")]).unwrap();
    assert_eq!(labels(&s.peek(1).unwrap()), ["a"]);
    assert_eq!(labels(&s.peek(5).unwrap()), ["a", "b"]);
    s.consume().unwrap();
    assert_eq!(s.depth(), 0);
}

#[test]
fn a_torn_tail_is_cut_and_the_rest_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Spool::open(&cfg(dir.path(), 1 << 20)).unwrap();
    s.append(&[event("a"), event("b")]).unwrap();
    drop(s);
    let seg = dir.path().join("spool-000000000001.log");
    let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
    // Half a frame, as a crash mid-write leaves it.
    f.write_all(&[200, 0, 0, 0, 1, 2, 3]).unwrap();
    drop(f);
    let mut s = Spool::open(&cfg(dir.path(), 1 << 20)).unwrap();
    assert_eq!(s.depth(), 2);
    s.append(&[event("c")]).unwrap();
    assert_eq!(labels(&s.peek(10).unwrap()), ["a", "b", "c"]);
}

#[test]
fn a_flipped_byte_ends_the_segment_at_the_bad_record() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Spool::open(&cfg(dir.path(), 1 << 20)).unwrap();
    s.append(&[event("a"), event("b")]).unwrap();
    drop(s);
    let seg = dir.path().join("spool-000000000001.log");
    let mut bytes = fs::read(&seg).unwrap();
    let last = bytes.len() - 3;
    bytes[last] ^= 0x55;
    fs::write(&seg, bytes).unwrap();
    let mut s = Spool::open(&cfg(dir.path(), 1 << 20)).unwrap();
    assert_eq!(labels(&s.peek(10).unwrap()), ["a"]);
}

#[test]
fn a_full_spool_refuses_the_batch_and_keeps_what_it_has() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Spool::open(&cfg(dir.path(), 1000)).unwrap();
    s.append(&[event("a")]).unwrap();
    let err = s.append(&[event("b"), event("c"), event("d")]).unwrap_err();
    assert!(err.to_string().starts_with("spool full: "), "{err}");
    assert_eq!(labels(&s.peek(10).unwrap()), ["a"]);
}

#[test]
fn a_bad_instance_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join(INSTANCE_FILE), "no spaces allowed\n").unwrap();
    let err = Spool::open(&cfg(dir.path(), 1000)).unwrap_err();
    assert!(
        err.to_string()
            .contains("instance-id: invalid instance id \"no spaces allowed\""),
        "{err}"
    );
}

fn log_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".log"))
        .collect();
    v.sort();
    v
}

#[test]
fn logged_events_survive_a_crash_without_fsync_and_a_torn_write_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Spool::open(&cfg(dir.path(), 1 << 20)).unwrap();
    let positions: Vec<u64> = ["a", "b", "c"]
        .iter()
        .map(|l| s.log(&encode(&event(l)).unwrap()).unwrap())
        .collect();
    assert_eq!(positions, [0, 1, 2]);
    assert_eq!(s.depth(), 3);
    // A crash: no close, no fsync (the page cache keeps what was written), and half a record
    // written by a write that never finished.
    drop(s);
    let seg = dir.path().join("spool-000000000001.log");
    let record = encode(&event("d")).unwrap();
    let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
    f.write_all(&record[..record.len() / 2]).unwrap();
    drop(f);

    let mut s = Spool::open(&cfg(dir.path(), 1 << 20)).unwrap();
    assert_eq!(
        s.depth(),
        3,
        "the torn record is cut, the three whole ones kept"
    );
    assert_eq!(s.log(&encode(&event("e")).unwrap()).unwrap(), 3);
    assert_eq!(labels(&s.peek(10).unwrap()), ["a", "b", "c", "e"]);
}

#[test]
fn release_drops_what_is_stored_and_a_read_starts_at_the_oldest_unstored_record() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Spool::open(&cfg(dir.path(), 1 << 20)).unwrap();
    for l in ["a", "b", "c", "d", "e"] {
        s.log(&encode(&event(l)).unwrap()).unwrap();
    }
    // The writer stored a and b from memory (no cursor: the log was not read).
    s.release(2, None).unwrap();
    assert_eq!(s.depth(), 3);
    let read = s.plan(2).read().unwrap();
    assert_eq!(labels(&read.events), ["c", "d"]);
    assert_eq!(read.end, 4);
    s.release(read.end, read.cursor).unwrap();
    // Released twice, or below what is released: nothing changes.
    s.release(3, None).unwrap();
    assert_eq!(s.consumed(), 4);
    s.log(&encode(&event("f")).unwrap()).unwrap();
    assert_eq!(labels(&s.plan(10).read().unwrap().events), ["e", "f"]);
    // Past the end is clamped to what was logged.
    s.release(100, None).unwrap();
    assert_eq!((s.consumed(), s.depth()), (6, 0));
    assert!(s.plan(10).read().unwrap().events.is_empty());
}

#[test]
fn a_busy_log_keeps_about_a_mebibyte_of_stored_events_not_more() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Spool::open(&cfg(dir.path(), 64 << 20)).unwrap();
    let record = encode(&event("x")).unwrap();
    let per_mib = (RECYCLE_BYTES as usize / record.len()) + 1;
    for i in 0..3 * per_mib {
        let lsn = s.log(&record).unwrap();
        // Stored as soon as written, as a writer keeping up does.
        s.release(lsn + 1, None).unwrap();
        assert!(
            s.bytes() <= RECYCLE_BYTES + record.len() as u64 + 8,
            "at {i}"
        );
    }
    assert_eq!(s.depth(), 0);
    assert!(
        log_files(dir.path()).len() <= 1,
        "{:?}",
        log_files(dir.path())
    );
}

#[test]
fn records_not_yet_stored_keep_their_segments_across_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Spool::open(&cfg(dir.path(), 64 << 20)).unwrap();
    let record = encode(&event("x")).unwrap();
    let n = (SEGMENT_BYTES as usize / record.len()) + 10;
    for _ in 0..n {
        s.log(&record).unwrap();
    }
    assert_eq!(log_files(dir.path()).len(), 2, "a full segment is closed");
    s.release(5, None).unwrap();
    assert_eq!(
        log_files(dir.path()).len(),
        2,
        "the first still holds unstored records"
    );
    s.release(n as u64 - 1, None).unwrap();
    assert_eq!(log_files(dir.path()), ["spool-000000000002.log"]);
    assert_eq!(s.plan(10).read().unwrap().events.len(), 1);
    drop(s);
    // After a crash every record still on disk is read again (the store ignores ones it has):
    // those of the newest segment, not the deleted one's.
    let in_first = (SEGMENT_BYTES - MAGIC.len() as u64).div_ceil(record.len() as u64);
    let s = Spool::open(&cfg(dir.path(), 64 << 20)).unwrap();
    assert_eq!(s.depth(), n as u64 - in_first);
}

/// A segment of the first format (`ATSPOOL1`, SHA-256-prefix checksums), as a crashed older
/// version leaves it: `n` framed records.
fn write_v1_segment(path: &Path, labels: &[&str]) {
    let mut buf = MAGIC_V1.to_vec();
    for l in labels {
        let payload = serde_json::to_vec(&event(l)).unwrap();
        let sum = Format::Sha256Prefix.checksum(&payload);
        buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        buf.extend_from_slice(&sum.to_le_bytes());
        buf.extend_from_slice(&payload);
    }
    fs::write(path, buf).unwrap();
}

#[test]
fn a_segment_of_the_first_format_is_replayed_and_not_appended_to() {
    let dir = tempfile::tempdir().unwrap();
    write_v1_segment(&dir.path().join("spool-000000000001.log"), &["a", "b"]);
    let mut s = Spool::open(&cfg(dir.path(), 1 << 20)).unwrap();
    assert_eq!(s.depth(), 2, "both old records are counted");
    assert_eq!(s.log(&encode(&event("c")).unwrap()).unwrap(), 2);
    assert_eq!(
        log_files(dir.path()),
        ["spool-000000000001.log", "spool-000000000002.log"],
        "the new record starts a segment of the current format"
    );
    let second = fs::read(dir.path().join("spool-000000000002.log")).unwrap();
    assert_eq!(&second[..8], MAGIC);
    assert_eq!(labels(&s.peek(10).unwrap()), ["a", "b", "c"]);
    drop(s);

    // A damaged old record is found by its own checksum.
    let old = dir.path().join("spool-000000000001.log");
    let mut bytes = fs::read(&old).unwrap();
    let last = bytes.len() - 3;
    bytes[last] ^= 0x20;
    fs::write(&old, bytes).unwrap();
    let mut s = Spool::open(&cfg(dir.path(), 1 << 20)).unwrap();
    assert_eq!(labels(&s.peek(10).unwrap()), ["a", "c"]);
}

#[test]
fn records_are_checked_by_crc32() {
    let record = encode(&event("a")).unwrap();
    let payload = &record[FRAME as usize..];
    let sum = u64::from_le_bytes(record[4..12].try_into().unwrap());
    assert_eq!(sum, u64::from(crc32fast::hash(payload)));
    assert_eq!(
        read_record(&mut &record[..], Format::Crc32).unwrap(),
        Some(payload.to_vec())
    );
    assert!(read_record(&mut &record[..], Format::Sha256Prefix).is_err());
}

/// The writer takes a write-ahead record's JSON as the event's stored body (no second
/// encoding): it must be exactly the body the store writes itself, and it is ignored for an
/// event the store encodes another way (one that carries a seq, say).
#[test]
fn a_records_json_is_the_body_the_store_would_write() {
    use crate::store::chain::encode_unlinked;
    let mut e = event("r1");
    e.details
        .insert("attempt".into(), serde_json::json!({"n": 2, "ok": [true]}));
    let record = encode(&e).unwrap();
    let json = std::str::from_utf8(payload(&record)).unwrap();
    assert_eq!(json, serde_json::to_string(&e).unwrap());
    let own = encode_unlinked(&e, None).unwrap();
    let given = encode_unlinked(&e, Some(json)).unwrap();
    assert_eq!(given.body, own.body);
    assert_eq!(given.canonical(), own.canonical());

    let mut stored = event("r2");
    stored.seq = Some(7);
    let other = encode(&event("r3")).unwrap();
    let other = std::str::from_utf8(payload(&other)).unwrap();
    let own = encode_unlinked(&stored, None).unwrap();
    let given = encode_unlinked(&stored, Some(other)).unwrap();
    assert_eq!(given.body, own.body);
    assert!(!given.body.contains("r3"));
    assert_eq!(payload(&[1, 2]), b"");
}
