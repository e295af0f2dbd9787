//! A store that fails on demand: wraps a real one and, while `down`, refuses every write and
//! ping the way an unreachable database would. For outage tests on SQLite, whose file cannot be
//! made unreachable from inside the test (root ignores permissions). [`Running`] is a sidecar
//! in-process on such a store, with its `/readyz`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use authtrail::event::AuditEvent;
use authtrail::store::{
    Appended, Checkpoint, CheckpointKind, Error, EventStore, PurgeLink, PurgeReport, Query, Signer,
    StoredRow,
};
use tokio::sync::{Notify, Semaphore};

/// A real store behind a switch (and, optionally, a gate every append waits at).
pub struct FaultStore {
    pub inner: Arc<dyn EventStore>,
    pub down: AtomicBool,
    /// While set, reads (`query`, `get`) fail too, as they would from an unreachable database.
    pub reads_down: AtomicBool,
    /// Appends refused while down.
    pub refused: AtomicU64,
    /// When set, each append takes a permit first (and says so on `entered`).
    pub gate: Option<Semaphore>,
    pub entered: Notify,
}

impl FaultStore {
    pub fn new(inner: Arc<dyn EventStore>) -> Arc<FaultStore> {
        Arc::new(FaultStore {
            inner,
            down: AtomicBool::new(false),
            reads_down: AtomicBool::new(false),
            refused: AtomicU64::new(0),
            gate: None,
            entered: Notify::new(),
        })
    }

    /// A store whose appends wait for permits added to `gate`.
    pub fn gated(inner: Arc<dyn EventStore>) -> Arc<FaultStore> {
        Arc::new(FaultStore {
            inner,
            down: AtomicBool::new(false),
            reads_down: AtomicBool::new(false),
            refused: AtomicU64::new(0),
            gate: Some(Semaphore::new(0)),
            entered: Notify::new(),
        })
    }

    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Make reads fail (or succeed again); writes follow [`FaultStore::set_down`] only.
    pub fn set_reads_down(&self, down: bool) {
        self.reads_down.store(down, Ordering::SeqCst);
    }

    fn check_read(&self, op: &'static str) -> Result<(), Error> {
        if self.reads_down.load(Ordering::SeqCst) {
            return Err(Error::Backend {
                op,
                source: sqlx::Error::PoolTimedOut,
            });
        }
        Ok(())
    }

    fn check(&self, op: &'static str) -> Result<(), Error> {
        if self.down.load(Ordering::SeqCst) {
            self.refused.fetch_add(1, Ordering::SeqCst);
            return Err(Error::Backend {
                op,
                source: sqlx::Error::PoolTimedOut,
            });
        }
        Ok(())
    }
}

#[async_trait]
impl EventStore for FaultStore {
    async fn append(
        &self,
        instance: &str,
        events: &[AuditEvent],
        durable: bool,
    ) -> Result<Appended, Error> {
        if let Some(gate) = &self.gate {
            self.entered.notify_one();
            let _permit = gate.acquire().await.expect("gate open");
        }
        self.check("append")?;
        self.inner.append(instance, events, durable).await
    }
    async fn query(&self, q: &Query) -> Result<Vec<AuditEvent>, Error> {
        self.check_read("query")?;
        self.inner.query(q).await
    }
    async fn get(&self, id: uuid::Uuid) -> Result<Option<AuditEvent>, Error> {
        self.check_read("get")?;
        self.inner.get(id).await
    }
    async fn ping(&self) -> Result<(), Error> {
        self.check("ping")?;
        self.inner.ping().await
    }
    async fn checkpoint(
        &self,
        instance: &str,
        kind: CheckpointKind,
        signer: &Signer,
    ) -> Result<Option<Checkpoint>, Error> {
        self.check("checkpoint")?;
        self.inner.checkpoint(instance, kind, signer).await
    }
    async fn checkpoint_after(
        &self,
        instance: &str,
        kind: CheckpointKind,
        signer: &Signer,
        after: Option<&Checkpoint>,
    ) -> Result<Option<Checkpoint>, Error> {
        self.check("checkpoint")?;
        self.inner
            .checkpoint_after(instance, kind, signer, after)
            .await
    }
    async fn checkpoints(&self) -> Result<Vec<(i64, String)>, Error> {
        self.inner.checkpoints().await
    }
    async fn chains(&self) -> Result<Vec<String>, Error> {
        self.inner.chains().await
    }
    async fn chain_rows(
        &self,
        instance: &str,
        after_n: i64,
        limit: u32,
    ) -> Result<Vec<StoredRow>, Error> {
        self.inner.chain_rows(instance, after_n, limit).await
    }
    async fn unchained_rows(&self, limit: u32) -> Result<Vec<StoredRow>, Error> {
        self.inner.unchained_rows(limit).await
    }
    async fn purge_links(
        &self,
        instance: &str,
        links: &[PurgeLink],
        signer: &Signer,
    ) -> Result<PurgeReport, Error> {
        self.check("purge")?;
        self.inner.purge_links(instance, links, signer).await
    }
}

/// A sidecar in-process on a store the test can switch off (`FaultStore`), on 127.0.0.1:0.
pub struct Running {
    pub addr: std::net::SocketAddr,
    pub admin: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<authtrail::sidecar::Summary, authtrail::sidecar::Error>>,
}

impl Running {
    /// Start on `yaml` (its `store.url` only names the SQLite file `store` wraps) and wait until
    /// `/readyz` says ready.
    pub async fn start(yaml: &str, store: Arc<FaultStore>) -> Running {
        let cfg = authtrail::config::load_str(yaml, "test.yaml").unwrap_or_else(|e| panic!("{e}"));
        Running::start_config(cfg, store).await
    }

    /// [`Running::start`] on a loaded config (from a file, so `POST /v1/reload` can re-read it).
    pub async fn start_config(cfg: authtrail::config::Config, store: Arc<FaultStore>) -> Running {
        let proxy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (addr, admin_addr) = (proxy.local_addr().unwrap(), admin.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(authtrail::sidecar::run_with_store(
            cfg,
            store,
            authtrail::sidecar::Listeners { proxy, admin },
            async move {
                let _ = rx.await;
            },
        ));
        let running = Running {
            addr,
            admin: admin_addr,
            stop: Some(tx),
            task,
        };
        for _ in 0..300 {
            if running.readyz().await.1["status"] == "ready" {
                return running;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("sidecar never became ready");
    }

    /// `/readyz`: its status code and body.
    pub async fn readyz(&self) -> (u16, serde_json::Value) {
        let r = super::harness::send(
            hyper::Method::GET,
            &format!("http://{}/readyz", self.admin),
            &[],
            bytes::Bytes::new(),
        )
        .await
        .unwrap();
        (r.status.as_u16(), r.json())
    }

    /// Poll `/readyz` (bounded) until `want` holds; the last answer.
    pub async fn readyz_until(
        &self,
        what: &str,
        want: impl Fn(u16, &serde_json::Value) -> bool,
    ) -> (u16, serde_json::Value) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let (code, body) = self.readyz().await;
            if want(code, &body) {
                return (code, body);
            }
            assert!(
                std::time::Instant::now() < deadline,
                "/readyz never showed {what}: {code} {body}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Stop (as on SIGTERM) and wait for the drain and flush.
    pub async fn stop(mut self) -> authtrail::sidecar::Summary {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(std::time::Duration::from_secs(30), self.task)
            .await
            .expect("sidecar stopped within 30s")
            .unwrap()
            .unwrap()
    }
}
