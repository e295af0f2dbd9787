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
        dir: dir.to_path_buf(),
        max_bytes,
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
    assert!(logs.is_empty(), "replayed segments are deleted");
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
