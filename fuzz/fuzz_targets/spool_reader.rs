//! The spool's record reader, through its real entry points: segment files are written into a
//! private directory, then `Spool::open` (scan, torn-tail cut), `peek` and `consume` replay
//! them. Byte 0 picks the mode:
//! - bit 0 clear: the rest is written as-is as one segment file (magic, frames, anything);
//! - bit 0 set: the rest is split at `\0` into payloads, each framed with a correct length and
//!   checksum, so the fuzzer reaches event decoding; bit 1 adds a torn record at the end, bit 2
//!   spreads the records over two segments, bit 3 corrupts one checksum, bit 4 writes the first
//!   format (`ATSPOOL1`, SHA-256-prefix checksums) instead of the current one (`ATSPOOL2`, CRC-32).
//!
//! Besides never panicking: every record `open` counts can be peeked and consumed, and the
//! spool is empty afterwards, within a bounded number of rounds.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use authtrail::pipeline::{Spool, SpoolConfig};
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

const MAGIC: &[u8] = b"ATSPOOL2";
const MAGIC_V1: &[u8] = b"ATSPOOL1";

fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // tmpfs when there is one: fsync is free there.
        let base = if std::path::Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let d = base.join(format!("authtrail-fuzz-spool-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    })
}

fn frame(payload: &[u8], corrupt: bool, v1: bool) -> Vec<u8> {
    let mut sum = [0u8; 8];
    if v1 {
        sum.copy_from_slice(&Sha256::digest(payload)[..8]);
    } else {
        sum = u64::from(crc32fast::hash(payload)).to_le_bytes();
    }
    if corrupt {
        sum[0] ^= 1;
    }
    let mut out = (payload.len() as u32).to_le_bytes().to_vec();
    out.extend_from_slice(&sum);
    out.extend_from_slice(payload);
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let dir = dir();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        if entry.file_name().to_string_lossy().starts_with("spool-") {
            std::fs::remove_file(entry.path()).unwrap();
        }
    }
    let mut files: Vec<Vec<u8>> = Vec::new();
    if mode & 1 == 0 {
        files.push(rest.to_vec());
    } else {
        let payloads: Vec<&[u8]> = rest.split(|b| *b == 0).collect();
        let split_at = if mode & 4 != 0 {
            payloads.len() / 2
        } else {
            usize::MAX
        };
        let v1 = mode & 16 != 0;
        let magic = if v1 { MAGIC_V1 } else { MAGIC };
        let mut cur = magic.to_vec();
        for (i, p) in payloads.iter().enumerate() {
            if i == split_at {
                files.push(std::mem::replace(&mut cur, magic.to_vec()));
            }
            cur.extend_from_slice(&frame(p, mode & 8 != 0 && i == 0, v1));
        }
        if mode & 2 != 0 {
            let torn = frame(b"{\"torn\":true}", false, v1);
            cur.extend_from_slice(&torn[..torn.len() / 2]);
        }
        files.push(cur);
    }
    for (i, bytes) in files.iter().enumerate() {
        std::fs::write(dir.join(format!("spool-{:012}.log", i + 1)), bytes).unwrap();
    }

    let cfg = SpoolConfig {
        max_bytes: 1 << 30,
        ..SpoolConfig::new(dir)
    };
    let mut spool = Spool::open(&cfg).expect("a spool of any content opens");
    let depth = spool.depth();
    let mut seen = 0u64;
    let mut rounds = 0;
    while spool.depth() > 0 {
        rounds += 1;
        assert!(
            rounds <= depth + 2,
            "replay makes no progress at depth {}",
            spool.depth()
        );
        let events = spool.peek(3).expect("peek");
        seen += events.len() as u64;
        spool.consume().expect("consume");
    }
    assert!(seen <= depth);
    // What is left opens again as empty.
    assert_eq!(Spool::open(&cfg).expect("reopen").depth(), 0);
});
