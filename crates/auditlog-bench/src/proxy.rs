//! A TCP proxy that can play dead: while down it cuts every connection through it
//! and refuses new ones, the way a broker that died (or a network partition) looks
//! to its clients. Used to measure, and to test, behaviour with the broker gone
//! without disturbing anyone else using the same broker. It can also go deaf: the
//! target stops hearing its clients while they still hear it, as when a consumer
//! dies between storing what it received and acknowledging it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Result;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;

/// A running proxy to one target address, on a free local port.
pub struct TcpProxy {
    port: u16,
    down: Arc<AtomicBool>,
    deaf: Arc<AtomicBool>,
    cut: broadcast::Sender<()>,
}

impl TcpProxy {
    /// Starts forwarding `127.0.0.1:<free port>` to `target` (`host:port`).
    pub async fn start(target: &str) -> Result<TcpProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let down = Arc::new(AtomicBool::new(false));
        let deaf = Arc::new(AtomicBool::new(false));
        let (cut, _) = broadcast::channel(4);
        let (accept_down, accept_deaf, accept_cut, target) =
            (down.clone(), deaf.clone(), cut.clone(), target.to_owned());
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                if accept_down.load(Ordering::SeqCst) {
                    continue; // dropped at once: the connection is refused
                }
                let mut cut = accept_cut.subscribe();
                let (target, deaf) = (target.clone(), accept_deaf.clone());
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(&target).await else {
                        return;
                    };
                    let (from_client, mut to_client) = inbound.into_split();
                    let (mut from_target, to_target) = outbound.into_split();
                    let downstream = async {
                        let copied = tokio::io::copy(&mut from_target, &mut to_client).await;
                        let _ = to_client.shutdown().await;
                        copied
                    };
                    let both =
                        async { tokio::join!(upstream(from_client, to_target, &deaf), downstream) };
                    tokio::select! {
                        _ = both => {}
                        _ = cut.recv() => {}
                    }
                });
            }
        });
        Ok(TcpProxy {
            port,
            down,
            deaf,
            cut,
        })
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

    /// Deaf: what clients send is read and thrown away, while what the target
    /// sends still reaches them; connections stay open. The protocol stream from
    /// the client is broken from then on, so this is for the end of a
    /// connection's life: a consumer that stores what it receives and whose
    /// acknowledgements never arrive, until it dies.
    pub fn set_deaf(&self, deaf: bool) {
        self.deaf.store(deaf, Ordering::SeqCst);
    }
}

/// Forwards what the client sends to the target, unless `deaf`; when the client
/// closes (or dies), closes the target's side too, as the client would have.
async fn upstream(
    mut from_client: OwnedReadHalf,
    mut to_target: OwnedWriteHalf,
    deaf: &AtomicBool,
) -> std::io::Result<()> {
    let mut buffer = vec![0; 16 * 1024];
    loop {
        let read = from_client.read(&mut buffer).await?;
        if read == 0 {
            break;
        }
        if !deaf.load(Ordering::SeqCst) {
            to_target.write_all(&buffer[..read]).await?;
        }
    }
    to_target.shutdown().await
}
