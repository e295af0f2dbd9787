//! A TCP relay on 127.0.0.1 that a test can cut: while cut, it resets every open connection and
//! every new one, as a database that went away would look to its clients.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct Relay {
    pub addr: SocketAddr,
    cut: Arc<AtomicBool>,
    generation: watch::Sender<u64>,
    gen_counter: Arc<AtomicU64>,
}

impl Relay {
    /// Relay 127.0.0.1:<new port> to `target`.
    pub async fn start(target: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let (generation, _) = watch::channel(0u64);
        let relay = Relay {
            addr,
            cut: cut.clone(),
            generation: generation.clone(),
            gen_counter: Arc::new(AtomicU64::new(0)),
        };
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                if cut.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let mut cut_rx = generation.subscribe();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(target).await else {
                        return;
                    };
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    tokio::select! {
                        _ = tokio::io::copy(&mut cr, &mut sw) => {}
                        _ = tokio::io::copy(&mut sr, &mut cw) => {}
                        _ = cut_rx.changed() => {}
                    }
                });
            }
        });
        relay
    }

    /// Drop every open connection and refuse new ones until [`Relay::restore`].
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        let g = self.gen_counter.fetch_add(1, Ordering::SeqCst) + 1;
        let _ = self.generation.send(g);
    }

    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}
