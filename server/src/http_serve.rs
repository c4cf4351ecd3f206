//! Serving an axum router over HTTP/1 on a listener, with a header read timeout and a bounded
//! graceful drain (hyper directly: `axum::serve` exposes neither).

use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// A client that has not sent a request's headers within this time is disconnected, so slow
/// or idle connections cannot pile up.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a graceful stop waits for in-flight requests.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(15);

/// Serves `router` on `listener` until `stop` turns true, then stops accepting and lets the
/// in-flight requests finish (bounded).
///
/// With `tls`, every connection must open with a TLS handshake; a client speaking plain HTTP is
/// answered 400 `tls_required` in plain HTTP.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    mut stop: watch::Receiver<bool>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let handshakes = crate::tls::Handshakes::default();
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            // The guard `wait_for` returns is not Send: drop it inside the branch future.
            _ = async { let _ = stop.wait_for(|s| *s).await; } => break,
        };
        let _ = stream.set_nodelay(true);
        match &tls {
            None => serve_connection(stream, router.clone(), graceful.watcher()),
            Some(acceptor) => {
                let Some(permit) = handshakes.start() else { continue };
                let (acceptor, router, watcher) =
                    (acceptor.clone(), router.clone(), graceful.watcher());
                // The handshake runs in the connection's task, so a slow client cannot hold
                // up the accept loop.
                tokio::spawn(async move {
                    let reply = plain_http_on_tls();
                    let upgraded = crate::tls::upgrade(stream, Some(&acceptor), &reply).await;
                    drop(permit);
                    if let Some(s) = upgraded {
                        serve_connection(s, router, watcher);
                    }
                });
            }
        }
    }
    drop(listener);
    drain(graceful).await;
}

/// Logs a failed `accept` and backs off briefly: typically the process is out of file
/// descriptors, and retrying at once would spin.
pub async fn accept_failed(e: std::io::Error) {
    tracing::warn!(error = %e, "accept failed");
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// Serves HTTP/1 requests on one connection in a task a graceful shutdown watches.
pub fn serve_connection<S>(
    io: S,
    router: axum::Router,
    graceful: hyper_util::server::graceful::Watcher,
) where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let service = hyper_util::service::TowerToHyperService::new(router);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
    let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(io), service);
    let conn = graceful.watch(conn);
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "connection ended with an error");
        }
    });
}

/// Waits (bounded) for the connections `graceful` watches to finish their requests.
pub async fn drain(graceful: hyper_util::server::graceful::GracefulShutdown) {
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await.is_err() {
        tracing::warn!("some connections were still busy when the drain timeout passed");
    }
}

/// The answer to a plain HTTP request on a TLS port.
fn plain_http_on_tls() -> Vec<u8> {
    let body = r#"{"error":"this port requires TLS: use https://","code":"tls_required"}"#;
    format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}
