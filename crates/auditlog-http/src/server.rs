//! Serving a router on a listener so that careless or hostile clients cannot take
//! the service away from everyone else: a connection must send each request's
//! head within a time limit (counted from its opening or from its previous
//! answer, so it closes slow-header clients and idle keep-alive connections
//! alike), the number of open connections is capped and a connection over the
//! cap is answered 503 at once rather than left waiting, and an accept that
//! fails for want of file descriptors is retried instead of ending the service.
//! Shutdown is graceful: no new connections, and the open ones finish the
//! request they are serving.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

/// Open connections, by `service`.
pub const OPEN_CONNECTIONS: &str = "auditlog_http_open_connections";
/// Connections answered 503 because the service had [`ConnectionLimits::max_connections`]
/// open, by `service`.
pub const REFUSED_CONNECTIONS: &str = "auditlog_http_refused_connections_total";

/// How long a connection may take to send a request's head by default. Apache
/// closes idle keep-alive connections after 5 s and nginx waits 60 s for headers;
/// 10 s is ample for any real client on any real network and frees a trickling
/// or forgotten connection quickly.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long this project's own HTTP clients (a proxy hop, the emitter) keep an
/// idle pooled connection: well under [`HEADER_TIMEOUT`], so that a request is
/// never sent on a connection the server is closing at that moment.
pub const CLIENT_POOL_IDLE: Duration = Duration::from_secs(4);
/// Connections one service keeps open by default.
pub const MAX_CONNECTIONS: u32 = 10_000;
/// Connections over the cap that are being answered 503 at one time; more are
/// closed without an answer, since answering costs a descriptor too.
const MAX_REFUSING: usize = 64;
/// How long a refused connection is given to read its 503: the request it sent
/// is drained meanwhile, since closing a socket with unread data makes the
/// kernel reset it, and a reset can overtake the answer.
const REFUSAL_LINGER: Duration = Duration::from_secs(1);
/// Pause after an accept failed (e.g. no file descriptor left) before the next,
/// so that a full table does not turn the accept loop into a busy loop.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// The limits every connection of a service is held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// See [`HEADER_TIMEOUT`].
    pub header_timeout: Duration,
    /// See [`MAX_CONNECTIONS`].
    pub max_connections: u32,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            header_timeout: HEADER_TIMEOUT,
            max_connections: MAX_CONNECTIONS,
        }
    }
}

/// The 503 a connection over the cap gets, whatever it asked.
const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/vnd.api+json\r\n\
retry-after: 1\r\n\
connection: close\r\n\
content-length: 115\r\n\
\r\n\
{\"errors\":[{\"status\":\"503\",\"title\":\"Service unavailable\",\"detail\":\"too many open connections; retry in a second\"}]}";

/// Serves `router` on `listener` as `service` (the label of its metrics) within
/// `limits`, until `shutdown` completes; then waits for open connections to
/// finish the requests they are serving.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    service: &'static str,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let max = limits.max_connections.max(1);
    let open = Arc::new(Semaphore::new(max as usize));
    let refusing = Arc::new(Semaphore::new(MAX_REFUSING));
    let (stop, stopped) = watch::channel(false);
    let service_fn = TowerToHyperService::new(router);
    let gauge = metrics::gauge!(OPEN_CONNECTIONS, "service" => service);
    let refused = metrics::counter!(REFUSED_CONNECTIONS, "service" => service);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(err) => {
                    tracing::warn!(%err, service, "could not accept a connection; retrying");
                    tokio::time::sleep(ACCEPT_RETRY).await;
                    continue;
                }
            },
        };
        match open.clone().try_acquire_owned() {
            Ok(permit) => {
                gauge.increment(1.0);
                let gauge = gauge.clone();
                let connection = connection(
                    stream,
                    service_fn.clone(),
                    limits.header_timeout,
                    stopped.clone(),
                    permit,
                );
                tokio::spawn(async move {
                    connection.await;
                    gauge.decrement(1.0);
                });
            }
            Err(_) => {
                refused.increment(1);
                if let Ok(permit) = refusing.clone().try_acquire_owned() {
                    tokio::spawn(refuse(stream, permit));
                }
            }
        }
    }
    drop(listener);
    let _ = stop.send(true);
    // Every connection holds a permit until it ends.
    let _ = open.acquire_many(max).await;
    Ok(())
}

/// Serves one connection until it ends, or until shutdown, after which it
/// finishes the request in progress and closes.
async fn connection(
    stream: TcpStream,
    service: TowerToHyperService<Router>,
    header_timeout: Duration,
    mut stopped: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
) {
    // Answers are written whole; waiting for the client's ACK of the previous
    // segment (Nagle) only adds latency.
    let _ = stream.set_nodelay(true);
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(err) = result {
                tracing::debug!(%err, "a connection ended with an error");
            }
            return;
        }
        _ = stopped.wait_for(|stopped| *stopped) => connection.as_mut().graceful_shutdown(),
    }
    if let Err(err) = connection.await {
        tracing::debug!(%err, "a connection ended with an error");
    }
}

/// Answers a connection over the cap with [`REFUSAL`] and closes it.
async fn refuse(mut stream: TcpStream, _permit: OwnedSemaphorePermit) {
    let _ = tokio::time::timeout(REFUSAL_LINGER, async {
        stream.write_all(REFUSAL).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<(), std::io::Error>(())
    })
    .await;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a panic is the failure report

    use super::*;
    use axum::routing::get;

    async fn start(limits: ConnectionLimits) -> (std::net::SocketAddr, watch::Sender<bool>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = Router::new().route("/", get(|| async { "ok" }));
        let (stop, mut stopped) = watch::channel(false);
        tokio::spawn(serve(listener, router, "test", limits, async move {
            let _ = stopped.wait_for(|s| *s).await;
        }));
        (addr, stop)
    }

    async fn get_once(addr: std::net::SocketAddr) -> String {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        answer
    }

    #[test]
    fn the_refusal_says_its_length_right() {
        let text = std::str::from_utf8(REFUSAL).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())));
        assert!(serde_json::from_str::<serde_json::Value>(body).is_ok());
    }

    #[tokio::test]
    async fn a_connection_over_the_cap_is_answered_503_at_once() {
        let (addr, _stop) = start(ConnectionLimits {
            header_timeout: Duration::from_secs(30),
            max_connections: 2,
        })
        .await;
        let _idle = [
            TcpStream::connect(addr).await.unwrap(),
            TcpStream::connect(addr).await.unwrap(),
        ];
        tokio::time::sleep(Duration::from_millis(50)).await;
        let answer = get_once(addr).await;
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    }

    #[tokio::test]
    async fn a_connection_that_sends_no_complete_head_is_closed() {
        let (addr, _stop) = start(ConnectionLimits {
            header_timeout: Duration::from_millis(300),
            max_connections: 10,
        })
        .await;
        let mut slow = TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n")
            .await
            .unwrap();
        let mut idle = TcpStream::connect(addr).await.unwrap();
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(5), async {
            slow.read_to_end(&mut rest).await.unwrap();
            idle.read_to_end(&mut rest).await.unwrap();
        })
        .await;
        assert!(closed.is_ok(), "both connections are closed by the server");
        assert!(get_once(addr).await.starts_with("HTTP/1.1 200"));
    }
}
