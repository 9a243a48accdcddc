//! A TCP proxy that can play dead: while down it cuts every connection through it
//! and refuses new ones, the way a broker that died (or a network partition) looks
//! to its clients. Used to measure, and to test, behaviour with the broker gone
//! without disturbing anyone else using the same broker.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Result;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;

/// A running proxy to one target address, on a free local port.
pub struct TcpProxy {
    port: u16,
    down: Arc<AtomicBool>,
    cut: broadcast::Sender<()>,
}

impl TcpProxy {
    /// Starts forwarding `127.0.0.1:<free port>` to `target` (`host:port`).
    pub async fn start(target: &str) -> Result<TcpProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let down = Arc::new(AtomicBool::new(false));
        let (cut, _) = broadcast::channel(4);
        let (accept_down, accept_cut, target) = (down.clone(), cut.clone(), target.to_owned());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if accept_down.load(Ordering::SeqCst) {
                    continue; // dropped at once: the connection is refused
                }
                let mut cut = accept_cut.subscribe();
                let target = target.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.recv() => {}
                    }
                });
            }
        });
        Ok(TcpProxy { port, down, cut })
    }

    /// The local port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Down: cut every open connection and refuse new ones. Up: forward again.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
        if down {
            let _ = self.cut.send(());
        }
    }
}
