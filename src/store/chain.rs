//! Tamper evidence: the hash chain that links each appended event to the one before it in its
//! instance's chain, and the Ed25519-signed checkpoints that pin a chain's head.
//!
//! This module owns the versioned encodings (what a hash and a signature cover; an event
//! encoded for its link, [`Encoded`], which becomes a `sql::Row`) and the backend-neutral steps
//! of `append`, `checkpoint` and `purge_links`, written once against [`ChainTx`], which each
//! backend implements on its own write transaction. Links are assigned *inside* that
//! transaction, after reading the chain's head under the store's write lock, so a chain can
//! never fork, a retried or replayed batch never leaves a hole, and seq order within a chain is
//! link order. It must never decide whether or when to write: that is the pipeline's.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use aws_lc_rs::digest::{self, SHA256};
use aws_lc_rs::signature::{self, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use super::sql::{encode_error, Columns, Row};
use super::Error;
use crate::event::{unix_millis, AuditEvent, ChainLink};
use crate::hex;

/// `prev_hash` of a chain's first link.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// Prefix of every link hash's input; a new encoding gets a new version.
const LINK_V1: &str = "authtrail.chain.v1";
/// Prefix of every checkpoint signature's input.
const CHECKPOINT_V1: &str = "authtrail.checkpoint.v1";

/// The canonical encoding of a JSON value: objects with their keys sorted (by UTF-8 bytes), no
/// whitespace, strings escaped as serde_json does, and numbers normalised so that a value reads
/// back the same from SQLite text and PostgreSQL `jsonb` (which rewrites `1e18` as
/// `1000000000000000000`): an integral float below 2^64 in magnitude is written as an integer.
pub fn canonical(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f.is_finite() && f.fract() == 0.0 && f.abs() < 1.8e19 => {
                out.push_str(&(f as i128).to_string())
            }
            _ => out.push_str(&n.to_string()),
        },
        Value::String(s) => push_json_str(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_json_str(k, out);
                out.push(':');
                write_canonical(&map[k], out);
            }
            out.push('}');
        }
    }
}

/// `s` as a JSON string, escaped exactly as serde_json escapes it.
fn push_json_str(s: &str, out: &mut String) {
    let mut buf = Vec::with_capacity(s.len() + 2);
    if serde_json::to_writer(&mut buf, s).is_ok() {
        out.push_str(&String::from_utf8_lossy(&buf));
    }
}

/// Whether serde_json writes `v` exactly as [`canonical`] does: its maps iterate in sorted key
/// order (serde_json without `preserve_order`, checked once at run time) and it holds no
/// integral float. Then the stored body *is* the canonical encoding and need not be built twice.
pub(crate) fn serializes_canonically(v: &Value) -> bool {
    maps_sorted() && plain(v)
}

/// Whether serde_json's maps iterate in sorted key order (no `preserve_order` feature in the
/// build), checked once.
fn maps_sorted() -> bool {
    static SORTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SORTED.get_or_init(|| {
        let mut m = serde_json::Map::new();
        m.insert("b".into(), Value::Null);
        m.insert("a".into(), Value::Null);
        m.keys().next().map(String::as_str) == Some("a")
    })
}

/// Whether `v` holds no integral float (which [`canonical`] writes as an integer).
fn plain(v: &Value) -> bool {
    match v {
        Value::Number(n) => !(n.is_f64() && n.as_f64().is_some_and(|f| f.fract() == 0.0)),
        Value::Array(items) => items.iter().all(plain),
        Value::Object(map) => map.values().all(plain),
        Value::Null | Value::Bool(_) | Value::String(_) => true,
    }
}

/// The canonical encoding a stored body's hash covers: the body without `seq` and `chain`.
pub fn canonical_body(body: &str) -> Result<String, serde_json::Error> {
    let mut v: Value = serde_json::from_str(body)?;
    if let Value::Object(map) = &mut v {
        map.remove("seq");
        map.remove("chain");
    }
    Ok(canonical(&v))
}

/// The hash of link `n` of `instance`'s chain: SHA-256 over
/// `authtrail.chain.v1 \n instance \n n \n prev_hash \n canonical(event)`, hex.
pub fn link_hash(instance: &str, n: i64, prev_hash: &str, canonical_event: &str) -> String {
    let mut h = digest::Context::new(&SHA256);
    for part in [LINK_V1, instance, &n.to_string(), prev_hash] {
        h.update(part.as_bytes());
        h.update(b"\n");
    }
    h.update(canonical_event.as_bytes());
    hex::encode(h.finish().as_ref())
}

/// Whether `id` may name a chain: 1-64 characters of `A-Z a-z 0-9 . _ : -`.
pub fn valid_instance_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// An event encoded before the write transaction starts: its columns, its body without `seq`
/// and `chain`, and the canonical encoding its chain hash covers.
pub(crate) struct Encoded {
    pub uuid: Uuid,
    pub columns: Columns,
    /// JSON object without `seq` and `chain`.
    pub body: String,
    /// The canonical encoding, when it differs from `body`.
    pub canonical: Option<String>,
    /// Each token's fingerprint and jti (SQLite indexes them in `event_tokens`).
    pub token_keys: Vec<String>,
}

/// Encode `event` for appending to a chain: the link is added inside the transaction.
///
/// The struct's fields are declared in the order of their JSON names, so serde_json writes a
/// stored event's canonical encoding straight from the struct; only an event that already
/// carries `seq` or `chain`, or `details` holding an integral float, goes through a `Value`.
/// `given`: the event as serde_json already wrote it (the write-ahead record's JSON), taken as
/// the body in the direct case instead of writing it again.
pub(crate) fn encode_unlinked(event: &AuditEvent, given: Option<&str>) -> Result<Encoded, Error> {
    let direct = event.seq.is_none()
        && event.chain.is_none()
        && maps_sorted()
        && event.details.values().all(plain);
    let (body, canonical) = if direct {
        let body = match given {
            Some(json) => {
                debug_assert_eq!(json, serde_json::to_string(event).unwrap_or_default());
                json.to_string()
            }
            None => serde_json::to_string(event).map_err(encode_error)?,
        };
        debug_assert_eq!(body, canonical_event(event).unwrap_or_default());
        (body, None)
    } else {
        let mut value = serde_json::to_value(event).map_err(encode_error)?;
        if let serde_json::Value::Object(map) = &mut value {
            map.remove("seq");
            map.remove("chain");
        }
        let body = serde_json::to_string(&value).map_err(encode_error)?;
        let canonical = (!serializes_canonically(&value)).then(|| canonical(&value));
        (body, canonical)
    };
    let mut columns = Columns::of(event);
    columns.chain_instance = None;
    columns.chain_n = None;
    columns.chain_hash = None;
    Ok(Encoded {
        uuid: event.id,
        columns,
        body,
        canonical,
        token_keys: token_keys(event),
    })
}

/// The keys `event` is found under by token: each token's fingerprint, and its jti when it has
/// one (SQLite's `event_tokens`).
fn token_keys(event: &AuditEvent) -> Vec<String> {
    let mut keys = Vec::new();
    for t in &event.tokens {
        keys.push(t.fingerprint.clone());
        keys.extend(t.jti.clone());
    }
    keys
}

/// The events of an `append` to `instance`'s chain, encoded before its transaction starts.
/// `bodies`: what the caller already encoded (see [`EventStore::append_encoded`]).
///
/// [`EventStore::append_encoded`]: super::EventStore::append_encoded
pub(crate) fn encode_for_append(
    instance: &str,
    events: &[AuditEvent],
    bodies: &[Option<&str>],
) -> Result<Vec<Encoded>, Error> {
    if !valid_instance_id(instance) {
        return Err(Error::InvalidInstance(instance.to_string()));
    }
    events
        .iter()
        .enumerate()
        .map(|(i, e)| encode_unlinked(e, bodies.get(i).copied().flatten()))
        .collect()
}

impl Encoded {
    /// What the chain hash covers.
    pub fn canonical(&self) -> &str {
        self.canonical.as_deref().unwrap_or(&self.body)
    }

    /// The row once `link` is known: the link joins the body (as its last member) and the
    /// chain columns.
    pub fn linked(&self, link: ChainLink) -> Result<Row, Error> {
        let link_json = serde_json::to_string(&link).map_err(encode_error)?;
        let mut body = String::with_capacity(self.body.len() + link_json.len() + 10);
        // `body` is a JSON object with at least `id`: drop its closing brace, add the member.
        body.push_str(self.body.trim_end().strip_suffix('}').unwrap_or(&self.body));
        body.push_str(",\"chain\":");
        body.push_str(&link_json);
        body.push('}');
        let mut columns = self.columns.clone();
        columns.chain_instance = Some(link.instance.clone());
        columns.chain_n = Some(link.n);
        columns.chain_hash = Some(link.hash.clone());
        Ok(Row {
            columns,
            body,
            token_keys: self.token_keys.clone(),
        })
    }
}

/// The newest link of a chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainHead {
    pub n: i64,
    pub hash: String,
}

/// What an append did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Appended {
    /// Events newly stored (the rest were already there, by id).
    pub inserted: u64,
    /// The chain's head after the append; `None` when the chain is still empty.
    pub head: Option<ChainHead>,
}

/// Why a checkpoint was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckpointKind {
    /// Every `checkpoint.events` links or `checkpoint.interval`.
    Periodic,
    /// When the writer stops (also over an unchanged head: it closes the run).
    Shutdown,
    /// `checkpoint.interval` passed without new links: the same head, re-signed with a fresh
    /// time, so an idle trail still shows it was not cut after its newest checkpoint.
    Heartbeat,
    /// The boundary left by a purge of the chain's oldest links: links up to `to_n` were
    /// deleted.
    Purge,
    /// Links deleted from inside the chain by a retention policy: `gaps` lists each run of them
    /// with the hash of its last link, so `verify` can bridge it.
    Retention,
}

impl CheckpointKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckpointKind::Periodic => "periodic",
            CheckpointKind::Shutdown => "shutdown",
            CheckpointKind::Heartbeat => "heartbeat",
            CheckpointKind::Purge => "purge",
            CheckpointKind::Retention => "retention",
        }
    }
}

/// A signed statement about a chain segment `(from_n, to_n]`: how many links it held, their time
/// range, and the hash of its last link. Stored in the trail's `checkpoints` table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub version: u32,
    pub kind: CheckpointKind,
    pub instance: String,
    /// The segment starts after this link (0: the chain's start).
    pub from_n: i64,
    /// The chain head this checkpoint pins.
    pub to_n: i64,
    /// `hash` of link `to_n`.
    pub head_hash: String,
    /// Event id of link `to_n`.
    pub head_id: String,
    /// Links of the segment present when signed (for a purge: deleted).
    pub count: i64,
    /// Earliest and latest event time in the segment, Unix milliseconds.
    pub first_time_ms: Option<i64>,
    pub last_time_ms: Option<i64>,
    /// For a purge: events of the segment were older than this (Unix milliseconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purged_before_ms: Option<i64>,
    pub created_ms: i64,
    /// Ed25519 public key, hex.
    pub public_key: String,
    /// Ed25519 signature over the checkpoint's canonical encoding without this field, hex.
    #[serde(default)]
    pub signature: String,
    /// For a retention checkpoint: the runs of deleted links (empty otherwise, and then not
    /// serialized, so older checkpoints keep their signatures).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gaps: Vec<Gap>,
    /// Position of this checkpoint among its chain's checkpoints (1, 2, ...), so a deleted one
    /// leaves a visible gap. Absent on checkpoints signed before they were numbered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_n: Option<i64>,
    /// [`Checkpoint::digest`] of the chain's previous checkpoint; absent for the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev_checkpoint: Option<String>,
}

/// The `record` a checkpoint is published as beside the store (sinks, witness file).
pub const CHECKPOINT_RECORD: &str = "authtrail.checkpoint";

/// Links `(from_n, to_n]` of a chain were deleted by a retention purge; `hash` is the hash of
/// link `to_n`, which link `to_n + 1` names as its predecessor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gap {
    pub from_n: i64,
    pub to_n: i64,
    pub hash: String,
}

/// A link a retention purge deletes: its position, event id, hash and event time (Unix ms).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PurgeLink {
    pub n: i64,
    pub id: String,
    pub hash: String,
    pub time_ms: i64,
}

impl Checkpoint {
    /// What the signature covers.
    fn signed_bytes(&self) -> Vec<u8> {
        let mut unsigned = self.clone();
        unsigned.signature = String::new();
        let mut v = serde_json::to_value(&unsigned).unwrap_or(Value::Null);
        if let Value::Object(map) = &mut v {
            map.remove("signature");
        }
        format!("{CHECKPOINT_V1}\n{}", canonical(&v)).into_bytes()
    }

    /// SHA-256 (hex) of the whole signed checkpoint, signature included: what the next
    /// checkpoint of its chain names as `prev_checkpoint`.
    pub fn digest(&self) -> String {
        let v = serde_json::to_value(self).unwrap_or(Value::Null);
        let mut h = digest::Context::new(&SHA256);
        h.update(CHECKPOINT_V1.as_bytes());
        h.update(b"\ndigest\n");
        h.update(canonical(&v).as_bytes());
        hex::encode(h.finish().as_ref())
    }

    /// The checkpoint as it is published outside the store: one JSON object
    /// `{"record": "authtrail.checkpoint", "checkpoint": {...}}`.
    pub fn record(&self) -> Value {
        serde_json::json!({ "record": CHECKPOINT_RECORD, "checkpoint": self })
    }

    /// A checkpoint from a published record (see [`Checkpoint::record`]); `None` for any other
    /// JSON value (an event line of a sink's output).
    pub fn from_record(v: &Value) -> Option<Result<Checkpoint, serde_json::Error>> {
        if v.get("record").and_then(Value::as_str) != Some(CHECKPOINT_RECORD) {
            return None;
        }
        let cp = v.get("checkpoint").cloned().unwrap_or(Value::Null);
        Some(serde_json::from_value(cp))
    }

    /// A short name for messages: kind, number, chain, pinned position and time.
    pub fn describe(&self) -> String {
        let number = self
            .checkpoint_n
            .map_or(String::new(), |n| format!(" #{n}"));
        let when =
            OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.created_ms) * 1_000_000)
                .ok()
                .and_then(|t| {
                    t.format(&time::format_description::well_known::Rfc3339)
                        .ok()
                })
                .unwrap_or_else(|| self.created_ms.to_string());
        format!(
            "{} checkpoint{number} of chain \"{}\" (signed {when}, pinning #{})",
            self.kind.as_str(),
            self.instance,
            self.to_n
        )
    }

    /// Check the signature against the public key it names.
    pub fn signature_valid(&self) -> bool {
        let (Some(pk), Some(sig)) = (hex::decode(&self.public_key), hex::decode(&self.signature))
        else {
            return false;
        };
        UnparsedPublicKey::new(&signature::ED25519, pk)
            .verify(&self.signed_bytes(), &sig)
            .is_ok()
    }
}

/// The Ed25519 key checkpoints are signed with. Its `Debug` shows the public key only.
#[derive(Clone)]
pub struct Signer {
    key: Arc<Ed25519KeyPair>,
    public_hex: String,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signer(public_key: {})", self.public_hex)
    }
}

impl PartialEq for Signer {
    fn eq(&self, other: &Signer) -> bool {
        self.public_hex == other.public_hex
    }
}
impl Eq for Signer {}

impl Signer {
    /// A signer from a 32-byte Ed25519 seed written as 64 hex characters. The error never
    /// repeats the key.
    pub fn from_hex_seed(seed: &str) -> Result<Signer, String> {
        let bytes = hex::decode(seed)
            .filter(|b| b.len() == 32)
            .ok_or_else(|| "expected 64 hex characters (an Ed25519 seed)".to_string())?;
        let key = Ed25519KeyPair::from_seed_unchecked(&bytes)
            .map_err(|_| "not a usable Ed25519 seed".to_string())?;
        let public_hex = hex::encode(key.public_key().as_ref());
        Ok(Signer {
            key: Arc::new(key),
            public_hex,
        })
    }

    /// A new random key: (seed as hex, signer).
    pub fn generate() -> Result<(String, Signer), String> {
        let mut seed = [0u8; 32];
        aws_lc_rs::rand::fill(&mut seed).map_err(|_| "no randomness available".to_string())?;
        let seed_hex = hex::encode(&seed);
        let signer = Signer::from_hex_seed(&seed_hex)?;
        Ok((seed_hex, signer))
    }

    /// The public key, hex: what `verify` trusts.
    pub fn public_key_hex(&self) -> &str {
        &self.public_hex
    }

    /// Set `cp.public_key` and sign it.
    pub fn sign(&self, cp: &mut Checkpoint) {
        cp.public_key = self.public_hex.clone();
        cp.signature = String::new();
        cp.signature = hex::encode(self.key.sign(&cp.signed_bytes()).as_ref());
    }
}

/// Counts and time range of a chain segment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    pub count: i64,
    pub min_time_ms: Option<i64>,
    pub max_time_ms: Option<i64>,
}

/// The statements a backend runs inside its write transaction (which holds the store's write
/// lock) so that the steps below can be written once.
#[async_trait]
pub(crate) trait ChainTx: Send {
    async fn existing_ids(&mut self, ids: &[Uuid]) -> Result<HashSet<Uuid>, Error>;
    async fn head(&mut self, instance: &str) -> Result<Option<ChainHead>, Error>;
    async fn insert_rows(&mut self, rows: Vec<Row>) -> Result<u64, Error>;
    /// Highest `to_n` among the chain's checkpoints (only purge boundaries when `purge_only`).
    async fn max_checkpoint_to(
        &mut self,
        instance: &str,
        purge_only: bool,
    ) -> Result<Option<i64>, Error>;
    /// Links `(from_n, to_n]` of the chain.
    async fn segment(&mut self, instance: &str, from_n: i64, to_n: i64) -> Result<Segment, Error>;
    /// Event id and hash of link `n`.
    async fn link_at(&mut self, instance: &str, n: i64) -> Result<Option<(String, String)>, Error>;
    async fn insert_checkpoint(&mut self, cp: &Checkpoint) -> Result<(), Error>;
    /// Body of the chain's newest checkpoint (by row id), whatever its kind.
    async fn last_checkpoint(&mut self, instance: &str) -> Result<Option<String>, Error>;
    /// Delete the chain's links at positions `ns`; returns how many.
    async fn delete_links(&mut self, instance: &str, ns: &[i64]) -> Result<u64, Error>;
    /// Rows of partition `name` (a name from the store's catalog): all, and those with a link.
    async fn partition_counts(&mut self, name: &str) -> Result<(i64, i64), Error>;
    /// Drop partition `name` (a name from the store's catalog) and all it holds.
    async fn drop_partition_table(&mut self, name: &str) -> Result<(), Error>;
}

/// Append `events` to `instance`'s chain: skip ids already stored (and repeats within the
/// batch), link the rest after the chain's head in order, insert them.
pub(crate) async fn append<T: ChainTx>(
    tx: &mut T,
    instance: &str,
    encoded: &[Encoded],
) -> Result<Appended, Error> {
    let ids: Vec<Uuid> = encoded.iter().map(|e| e.uuid).collect();
    let mut seen = tx.existing_ids(&ids).await?;
    let mut head = tx.head(instance).await?;
    let mut rows = Vec::with_capacity(encoded.len());
    for e in encoded {
        if !seen.insert(e.uuid) {
            continue;
        }
        let (n, prev) = match &head {
            Some(h) => (h.n + 1, h.hash.clone()),
            None => (1, GENESIS.to_string()),
        };
        let hash = link_hash(instance, n, &prev, e.canonical());
        rows.push(e.linked(ChainLink {
            instance: instance.to_string(),
            n,
            prev_hash: prev,
            hash: hash.clone(),
        })?);
        head = Some(ChainHead { n, hash });
    }
    let inserted = if rows.is_empty() {
        0
    } else {
        tx.insert_rows(rows).await?
    };
    Ok(Appended { inserted, head })
}

/// Sign and store a checkpoint of `instance`'s chain covering the links since its last
/// checkpoint. A `periodic` one is `None` when there is nothing new to cover; a `heartbeat` or
/// `shutdown` one is always written (over an unchanged head, or an empty chain at #0): a fresh
/// signed statement that the chain ended there at that time.
///
/// `after`: the newest checkpoint the caller (the writer) signed itself, if it knows one. When
/// the store's newest checkpoint is not that one (it was deleted, with the events after it, or
/// replaced), the new checkpoint is numbered and linked after `after` anyway, so `verify` sees
/// the hole instead of a seamless chain.
pub(crate) async fn checkpoint<T: ChainTx>(
    tx: &mut T,
    instance: &str,
    kind: CheckpointKind,
    signer: &Signer,
    after: Option<&Checkpoint>,
) -> Result<Option<Checkpoint>, Error> {
    let always = matches!(kind, CheckpointKind::Heartbeat | CheckpointKind::Shutdown);
    let head = match tx.head(instance).await? {
        Some(head) => head,
        None if always => ChainHead {
            n: 0,
            hash: GENESIS.to_string(),
        },
        None => return Ok(None),
    };
    let from_n = tx
        .max_checkpoint_to(instance, false)
        .await?
        .unwrap_or(0)
        .min(head.n);
    if head.n <= from_n && !always {
        return Ok(None);
    }
    let seg = tx.segment(instance, from_n, head.n).await?;
    let head_id = if head.n == 0 {
        String::new()
    } else {
        tx.link_at(instance, head.n)
            .await?
            .map(|(id, _)| id)
            .unwrap_or_default()
    };
    let cp = Checkpoint {
        version: 1,
        kind,
        instance: instance.to_string(),
        from_n,
        to_n: head.n,
        head_hash: head.hash,
        head_id,
        count: seg.count,
        first_time_ms: seg.min_time_ms,
        last_time_ms: seg.max_time_ms,
        purged_before_ms: None,
        created_ms: unix_millis(crate::event::now_millis()),
        public_key: String::new(),
        signature: String::new(),
        gaps: Vec::new(),
        checkpoint_n: None,
        prev_checkpoint: None,
    };
    Ok(Some(link_and_store(tx, cp, signer, after).await?))
}

/// Number `cp` after its chain's newest checkpoint and link it to that one (or to `after`, see
/// [`checkpoint`]), sign it, store it.
async fn link_and_store<T: ChainTx>(
    tx: &mut T,
    mut cp: Checkpoint,
    signer: &Signer,
    after: Option<&Checkpoint>,
) -> Result<Checkpoint, Error> {
    let (mut n, mut prev) = match tx.last_checkpoint(&cp.instance).await? {
        None => (1, None),
        Some(body) => match serde_json::from_str::<Checkpoint>(&body) {
            Ok(prev) => (prev.checkpoint_n.unwrap_or(0) + 1, Some(prev.digest())),
            Err(_) => {
                // Unreadable (verify names it): link to its raw bytes, go on after it.
                (
                    1,
                    Some(hex::encode(
                        digest::digest(&SHA256, body.as_bytes()).as_ref(),
                    )),
                )
            }
        },
    };
    if let Some(known) = after.filter(|k| k.instance == cp.instance) {
        let (known_n, known_digest) = (known.checkpoint_n.unwrap_or(0), known.digest());
        let stored_n = n - 1;
        if known_n > stored_n || (known_n == stored_n && prev.as_ref() != Some(&known_digest)) {
            tracing::error!(
                chain = %cp.instance,
                checkpoint_n = known_n,
                stored_checkpoint_n = stored_n,
                "audit checkpoint signed by this writer is no longer the newest in the store \
                 (deleted or replaced): the next one is linked after it, so verify reports the gap"
            );
            n = known_n + 1;
            prev = Some(known_digest);
        }
    }
    cp.checkpoint_n = Some(n);
    cp.prev_checkpoint = prev;
    signer.sign(&mut cp);
    tx.insert_checkpoint(&cp).await?;
    Ok(cp)
}

/// What a purge did.
#[derive(Clone, Debug, Default)]
pub struct PurgeReport {
    /// Links deleted.
    pub deleted: u64,
    /// The boundary checkpoints written, one per chain that lost links.
    pub boundaries: Vec<Checkpoint>,
}

/// Delete `links` of `instance`'s chain, sealing them with signed checkpoints so `verify` still
/// passes: a run that continues the purged prefix (it starts right after the newest `purge`
/// boundary) moves that boundary; every other run of consecutive
/// positions becomes a gap of one `retention` checkpoint, with the hash of its last link. Fails,
/// deleting nothing, when a link is no longer stored (another purge got there first).
pub(crate) async fn purge_links<T: ChainTx>(
    tx: &mut T,
    instance: &str,
    links: &[PurgeLink],
    signer: &Signer,
) -> Result<PurgeReport, Error> {
    let links = by_position(links);
    if links.is_empty() {
        return Ok(PurgeReport::default());
    }
    let ns: Vec<i64> = links.iter().map(|l| l.n).collect();
    let deleted = tx.delete_links(instance, &ns).await?;
    if deleted != ns.len() as u64 {
        return Err(Error::Backend {
            op: "purge",
            source: sqlx::Error::Protocol(format!(
                "{} of {} links of chain \"{instance}\" to purge were no longer stored",
                ns.len() as u64 - deleted,
                ns.len()
            )),
        });
    }
    let mut report = seal_purged(tx, instance, &links, signer).await?;
    report.deleted = deleted;
    Ok(report)
}

/// `links` in position order, each position once.
fn by_position(links: &[PurgeLink]) -> Vec<&PurgeLink> {
    let mut links: Vec<&PurgeLink> = links.iter().collect();
    links.sort_by_key(|l| l.n);
    links.dedup_by_key(|l| l.n);
    links
}

/// Drop partition `name` whole, its rows being exactly `links` (by chain; checked here, so an
/// event stored since the caller read them, or one without a link, keeps the partition), each
/// chain's links sealed with the checkpoints [`purge_links`] writes.
pub(crate) async fn drop_partition<T: ChainTx>(
    tx: &mut T,
    name: &str,
    links: &BTreeMap<String, Vec<PurgeLink>>,
    signer: &Signer,
) -> Result<PurgeReport, Error> {
    let listed: usize = links.values().map(Vec::len).sum();
    let (rows, linked) = tx.partition_counts(name).await?;
    if rows != linked || usize::try_from(rows).ok() != Some(listed) {
        return Err(Error::Backend {
            op: "purge",
            source: sqlx::Error::Protocol(format!(
                "partition {name} holds {rows} events ({linked} linked), {listed} were checked: \
                 not dropped"
            )),
        });
    }
    let mut report = PurgeReport::default();
    for (instance, chain_links) in links {
        let sealed = seal_purged(tx, instance, &by_position(chain_links), signer).await?;
        report.boundaries.extend(sealed.boundaries);
    }
    tx.drop_partition_table(name).await?;
    report.deleted = u64::try_from(rows).unwrap_or(0);
    Ok(report)
}

/// Seal `links` of `instance`'s chain, already deleted (sorted by position, no repeats), with
/// signed checkpoints, as [`purge_links`] describes; `deleted` is left at 0.
pub(crate) async fn seal_purged<T: ChainTx>(
    tx: &mut T,
    instance: &str,
    links: &[&PurgeLink],
    signer: &Signer,
) -> Result<PurgeReport, Error> {
    let mut report = PurgeReport::default();
    if links.is_empty() {
        return Ok(report);
    }
    let mut runs: Vec<&[&PurgeLink]> = Vec::new();
    let mut start = 0;
    for i in 1..=links.len() {
        if i == links.len() || links[i].n != links[i - 1].n + 1 {
            runs.push(&links[start..i]);
            start = i;
        }
    }
    let boundary = tx.max_checkpoint_to(instance, true).await?.unwrap_or(0);
    let mut gaps_of = runs.as_slice();
    if let Some((first, rest)) = runs.split_first() {
        if first[0].n == boundary + 1 {
            let cp = seal(instance, CheckpointKind::Purge, first, Vec::new());
            let cp = link_and_store(tx, cp, signer, None).await?;
            report.boundaries.push(cp);
            gaps_of = rest;
        }
    }
    if !gaps_of.is_empty() {
        let gaps = gaps_of
            .iter()
            .map(|run| Gap {
                from_n: run[0].n - 1,
                to_n: run[run.len() - 1].n,
                hash: run[run.len() - 1].hash.clone(),
            })
            .collect();
        let all: Vec<&PurgeLink> = gaps_of.iter().flat_map(|r| r.iter().copied()).collect();
        let cp = seal(instance, CheckpointKind::Retention, &all, gaps);
        let cp = link_and_store(tx, cp, signer, None).await?;
        report.boundaries.push(cp);
    }
    Ok(report)
}

/// A checkpoint (to be linked and signed) over deleted `links` (in position order).
fn seal(instance: &str, kind: CheckpointKind, links: &[&PurgeLink], gaps: Vec<Gap>) -> Checkpoint {
    let (first, last) = (links[0], links[links.len() - 1]);
    Checkpoint {
        version: 1,
        kind,
        instance: instance.to_string(),
        from_n: first.n - 1,
        to_n: last.n,
        head_hash: last.hash.clone(),
        head_id: last.id.clone(),
        count: links.len() as i64,
        first_time_ms: links.iter().map(|l| l.time_ms).min(),
        last_time_ms: links.iter().map(|l| l.time_ms).max(),
        purged_before_ms: None,
        created_ms: unix_millis(crate::event::now_millis()),
        public_key: String::new(),
        signature: String::new(),
        gaps,
        checkpoint_n: None,
        prev_checkpoint: None,
    }
}

/// The canonical encoding of an event as its chain hash covers it.
pub fn canonical_event(event: &AuditEvent) -> Result<String, serde_json::Error> {
    let mut bare = event.clone();
    bare.seq = None;
    bare.chain = None;
    Ok(canonical(&serde_json::to_value(&bare)?))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn canonical_sorts_keys_and_normalises_numbers() {
        let v = json!({"b": [1, 2.5, 1e18, -3.0], "a": {"z": null, "y": "é\"\n"}});
        assert_eq!(
            canonical(&v),
            r#"{"a":{"y":"é\"\n","z":null},"b":[1,2.5,1000000000000000000,-3]}"#
        );
    }

    #[test]
    fn canonical_reads_back_the_same_from_a_rewritten_body() {
        // What jsonb may hand back for what serde_json wrote.
        let written = r#"{"details":{"big":1e18,"f":100000.0,"tiny":1e-7},"id":"x"}"#;
        let rewritten = r#"{"id": "x", "details": {"f": 100000.0, "big": 1000000000000000000, "tiny": 0.0000001}}"#;
        assert_eq!(
            canonical_body(written).unwrap(),
            canonical_body(rewritten).unwrap()
        );
    }

    #[test]
    fn a_plain_body_is_its_own_canonical_encoding() {
        let v = json!({"b": {"y": [1, 2.5, "x\u{1}\"é"], "x": null}, "a": true});
        assert!(serializes_canonically(&v));
        assert_eq!(serde_json::to_string(&v).unwrap(), canonical(&v));
        assert!(!serializes_canonically(&json!({"a": [1.0]})));
    }

    #[test]
    fn link_hash_covers_every_input() {
        let base = link_hash("a", 1, GENESIS, "{}");
        assert_eq!(base.len(), 64);
        assert_ne!(base, link_hash("b", 1, GENESIS, "{}"));
        assert_ne!(base, link_hash("a", 2, GENESIS, "{}"));
        assert_ne!(base, link_hash("a", 1, &"1".repeat(64), "{}"));
        assert_ne!(base, link_hash("a", 1, GENESIS, "{ }"));
    }

    #[test]
    fn checkpoints_sign_and_verify() {
        let (seed, signer) = Signer::generate().unwrap();
        assert_eq!(seed.len(), 64);
        let mut cp = Checkpoint {
            version: 1,
            kind: CheckpointKind::Periodic,
            instance: "a".into(),
            from_n: 0,
            to_n: 3,
            head_hash: GENESIS.into(),
            head_id: "id".into(),
            count: 3,
            first_time_ms: Some(1),
            last_time_ms: Some(2),
            purged_before_ms: None,
            created_ms: 5,
            public_key: String::new(),
            signature: String::new(),
            gaps: Vec::new(),
            checkpoint_n: Some(1),
            prev_checkpoint: None,
        };
        signer.sign(&mut cp);
        assert!(cp.signature_valid());
        let record = cp.record();
        assert_eq!(Checkpoint::from_record(&record).unwrap().unwrap(), cp);
        assert!(Checkpoint::from_record(&serde_json::json!({"id": "x"})).is_none());
        let mut renumbered = cp.clone();
        renumbered.checkpoint_n = Some(2);
        assert!(!renumbered.signature_valid());
        assert_ne!(renumbered.digest(), cp.digest());
        let mut forged = cp.clone();
        forged.to_n = 4;
        assert!(!forged.signature_valid());
        assert!(!format!("{signer:?}").contains(&seed));
    }

    #[test]
    fn seeds_must_be_32_bytes_of_hex() {
        assert!(Signer::from_hex_seed("abc").is_err());
        assert!(Signer::from_hex_seed(&"zz".repeat(32)).is_err());
        assert!(Signer::from_hex_seed(&"01".repeat(32)).is_ok());
    }

    #[test]
    fn instance_ids() {
        assert!(valid_instance_id("sidecar-a:8080"));
        assert!(!valid_instance_id(""));
        assert!(!valid_instance_id("a\nb"));
        assert!(!valid_instance_id(&"a".repeat(65)));
    }
}
