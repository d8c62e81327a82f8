//! The connection layer of `serve`: an accept loop over hyper's HTTP/1 server (axum::serve has
//! no timeouts), so that every connection has
//! - a header-read timeout (`serve.header_read_timeout_seconds`, from a request's first byte to
//!   its last header byte) and an idle timeout (`serve.idle_timeout_seconds`: no request in
//!   progress, or a response the client does not read): a slow or silent client is closed;
//! - a cap per client IP (`serve.max_connections_per_ip`): more are answered 429 and closed;
//! - JSON errors even for what hyper answers itself (a request it cannot parse: 400, a head over
//!   `serve.max_header_bytes`: 431, 414), which would otherwise have empty bodies;
//!
//! and a shutdown that stops accepting, closes idle connections and lets requests in flight
//! finish.

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

/// The connection limits, from `[serve]`.
#[derive(Debug, Clone)]
pub struct Limits {
    pub header_read: Duration,
    pub idle: Duration,
    pub per_ip: usize,
    pub max_header_bytes: usize,
}

impl Limits {
    pub fn of(serve: &crate::config::ServeConfig) -> Limits {
        Limits {
            header_read: serve.header_read_timeout,
            idle: serve.idle_timeout,
            per_ip: serve.max_connections_per_ip,
            max_header_bytes: serve.max_header_bytes,
        }
    }
}

/// Accepts connections on `listener` and serves `app` on each until `shutdown` resolves; then
/// stops accepting, closes the connections without a request being handled, lets the others
/// finish theirs (then closes them) and returns when all are closed.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let per_ip = Arc::new(PerIp::default());
    let connections = TaskTracker::new();
    let stop = CancellationToken::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        // Our own timers (in `Watched`) replace hyper's, which also counts keep-alive idle time.
        .header_read_timeout(None)
        .max_header_size(limits.max_header_bytes)
        .max_buf_size((limits.max_header_bytes + 1024).max(8192))
        .writev(false);
    let limits = Arc::new(limits);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let ip = peer.ip().to_canonical();
        let Some(slot) = per_ip.take(ip, limits.per_ip) else {
            refuse(stream, ip, limits.per_ip);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let activity = Arc::new(Mutex::new(Activity {
            phase: Phase::Idle {
                since: Instant::now(),
            },
            reader: None,
        }));
        let io = TokioIo::new(Watched::new(stream, activity.clone(), limits.clone()));
        let router = app.clone();
        let watched = activity.clone();
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let mut router = router.clone();
            let busy = Busy::start(activity.clone());
            async move {
                let mut response =
                    tower_service::Service::call(&mut router, request.map(Body::new)).await;
                drop(busy);
                if let Ok(r) = &mut response
                    && r.status() != axum::http::StatusCode::METHOD_NOT_ALLOWED
                {
                    // The router lists a path's methods on whatever its method fallback
                    // answers; only a 405 shows them (not the 401 an anonymous client gets).
                    r.headers_mut().remove(axum::http::header::ALLOW);
                }
                response
            }
        });
        let connection = http.serve_connection(io, service);
        let stop = stop.clone();
        connections.spawn(async move {
            let _slot = slot;
            tokio::pin!(connection);
            let result = tokio::select! {
                r = connection.as_mut() => r,
                _ = stop.cancelled() => {
                    // A request being handled is finished (and its connection then closed);
                    // a connection waiting for, or in the middle of receiving, a request is
                    // closed now: a slow client does not hold the shutdown up.
                    if matches!(watched.lock().unwrap().phase, Phase::Busy) {
                        connection.as_mut().graceful_shutdown();
                        connection.await
                    } else {
                        Ok(())
                    }
                }
            };
            if let Err(e) = result {
                debug!(peer = %peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    stop.cancel();
    connections.close();
    connections.wait().await;
}

/// Answers a connection over the per-IP cap with a 429 (if the socket takes it at once; it
/// always does on a fresh connection) and closes it, without a task or a wait.
fn refuse(stream: TcpStream, ip: IpAddr, cap: usize) {
    debug!(%ip, cap, "connection refused: serve.max_connections_per_ip");
    let body = error_response(
        429,
        "too_many_connections",
        &format!(
            "this address has {cap} connections open (serve.max_connections_per_ip); reuse them or retry shortly"
        ),
        &super::new_request_id(),
        Some(1),
    );
    let _ = stream.try_write(&body);
    // A FIN, not a reset: the client can read the answer.
    let std = stream.into_std();
    if let Ok(s) = std {
        let _ = s.shutdown(std::net::Shutdown::Write);
    }
}

/// Open connections per client address.
#[derive(Default)]
struct PerIp(Mutex<HashMap<IpAddr, usize>>);

/// One connection counted against its address until dropped.
struct Slot(Arc<PerIp>, IpAddr);

impl PerIp {
    fn take(self: &Arc<Self>, ip: IpAddr, cap: usize) -> Option<Slot> {
        let mut map = self.0.lock().unwrap();
        let n = map.entry(ip).or_insert(0);
        if *n >= cap {
            return None;
        }
        *n += 1;
        Some(Slot(self.clone(), ip))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut map = self.0.0.lock().unwrap();
        if let Some(n) = map.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.1);
            }
        }
    }
}

/// Where a connection is, for its timers.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Waiting for a request (the first, or the next on a kept-alive connection).
    Idle { since: Instant },
    /// A request's first bytes arrived; its head is not complete.
    Head { since: Instant },
    /// A request is being handled (its own limits apply: `serve.request_timeout_seconds`).
    Busy,
}

/// A connection's phase, shared by its socket and its service.
struct Activity {
    phase: Phase,
    /// The task waiting on a read while a request was handled (no timer runs then): woken when
    /// the request ends, so that the idle timer starts.
    reader: Option<std::task::Waker>,
}

/// Marks the connection busy while a request is handled, idle again after.
struct Busy(Arc<Mutex<Activity>>);

impl Busy {
    fn start(activity: Arc<Mutex<Activity>>) -> Busy {
        activity.lock().unwrap().phase = Phase::Busy;
        Busy(activity)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let mut a = self.0.lock().unwrap();
        a.phase = Phase::Idle {
            since: Instant::now(),
        };
        if let Some(w) = a.reader.take() {
            w.wake();
        }
    }
}

/// A connection's socket with the header-read and idle timers, and the rewriting of hyper's
/// own (empty-bodied) error answers into JSON ones.
struct Watched {
    inner: TcpStream,
    activity: Arc<Mutex<Activity>>,
    limits: Arc<Limits>,
    read_timer: Pin<Box<Sleep>>,
    /// Since when a write has made no progress (the client does not read).
    write_stalled: Option<Instant>,
    write_timer: Pin<Box<Sleep>>,
    /// A JSON answer replacing hyper's own: (bytes, written so far, length hyper asked for).
    replacement: Option<(Vec<u8>, usize, usize)>,
}

impl Watched {
    fn new(inner: TcpStream, activity: Arc<Mutex<Activity>>, limits: Arc<Limits>) -> Watched {
        Watched {
            inner,
            activity,
            limits,
            read_timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
            write_stalled: None,
            write_timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
            replacement: None,
        }
    }
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, what.to_string())
}

/// Waits on `timer` until `deadline`: an error once it has passed.
fn expired(timer: &mut Pin<Box<Sleep>>, deadline: Instant, cx: &mut Context<'_>) -> bool {
    if deadline <= Instant::now() {
        return true;
    }
    if timer.deadline() != deadline {
        timer.as_mut().reset(deadline);
    }
    timer.as_mut().poll(cx).is_ready()
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    let mut a = this.activity.lock().unwrap();
                    if let Phase::Idle { .. } = a.phase {
                        a.phase = Phase::Head {
                            since: Instant::now(),
                        };
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let (deadline, what) = {
                    let mut a = this.activity.lock().unwrap();
                    match a.phase {
                        Phase::Idle { since } => (since + this.limits.idle, "idle"),
                        Phase::Head { since } => (since + this.limits.header_read, "header read"),
                        Phase::Busy => {
                            a.reader = Some(cx.waker().clone());
                            return Poll::Pending;
                        }
                    }
                };
                if expired(&mut this.read_timer, deadline, cx) {
                    debug!(timeout = what, "closing a connection");
                    return Poll::Ready(Err(timed_out(what)));
                }
                Poll::Pending
            }
        }
    }
}

impl Watched {
    /// Writes what is left of a replacement answer; Ready(Ok) once all of it is out.
    fn drive_replacement(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        while let Some((bytes, written, asked)) = &mut self.replacement {
            if *written == bytes.len() {
                let n = *asked;
                self.replacement = None;
                return Poll::Ready(Ok(n));
            }
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &bytes[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
        Poll::Ready(Ok(0))
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.replacement.is_none()
            && let Some(status) = hypers_own_error(buf)
        {
            let (code, message) = describe(status, this.limits.max_header_bytes);
            let bytes = error_response(status, code, &message, &super::new_request_id(), None);
            this.replacement = Some((bytes, 0, buf.len()));
        }
        let result = if this.replacement.is_some() {
            this.drive_replacement(cx)
        } else {
            Pin::new(&mut this.inner).poll_write(cx, buf)
        };
        match result {
            Poll::Pending => {
                let since = *this.write_stalled.get_or_insert_with(Instant::now);
                if expired(&mut this.write_timer, since + this.limits.idle, cx) {
                    debug!("closing a connection whose client does not read");
                    return Poll::Ready(Err(timed_out("write")));
                }
                Poll::Pending
            }
            ready => {
                this.write_stalled = None;
                ready
            }
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The status of an answer hyper wrote by itself (a parse error: a head with no body and none
/// of the headers every answer of ours has), or None.
fn hypers_own_error(buf: &[u8]) -> Option<u16> {
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    if head_end != buf.len() || !buf.starts_with(b"HTTP/1.") || buf.len() < 12 {
        return None;
    }
    let status: u16 = std::str::from_utf8(&buf[9..12]).ok()?.parse().ok()?;
    let head = String::from_utf8_lossy(buf).to_ascii_lowercase();
    (status >= 400 && !head.contains("\r\nx-request-id:")).then_some(status)
}

fn describe(status: u16, max_header_bytes: usize) -> (&'static str, String) {
    match status {
        431 => (
            "headers_too_large",
            format!(
                "the request line and headers are over serve.max_header_bytes ({max_header_bytes} bytes), or there are more than 100 headers"
            ),
        ),
        414 => ("uri_too_long", "the request URI is too long".into()),
        400 => (
            "bad_request",
            "the request is not valid HTTP/1.1 (request line or headers)".into(),
        ),
        _ => ("http_error", "the request could not be handled".into()),
    }
}

/// A complete HTTP/1.1 error answer, as every error of the API: JSON, nosniff, a request id,
/// and `Connection: close` (the connection cannot be trusted after it).
fn error_response(
    status: u16,
    code: &str,
    message: &str,
    request_id: &str,
    retry_after: Option<u64>,
) -> Vec<u8> {
    let body =
        serde_json::json!({"error": {"code": code, "message": message, "request_id": request_id}})
            .to_string();
    let reason = axum::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    let retry = retry_after
        .map(|s| format!("retry-after: {s}\r\n"))
        .unwrap_or_default();
    format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         x-content-type-options: nosniff\r\nx-request-id: {request_id}\r\n{retry}connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_hypers_own_errors_only() {
        assert_eq!(
            hypers_own_error(
                b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: x\r\n\r\n"
            ),
            Some(431)
        );
        assert_eq!(
            hypers_own_error(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n"),
            Some(400)
        );
        // Ours carry a request id; successes and partial writes are left alone.
        assert_eq!(
            hypers_own_error(b"HTTP/1.1 404 Not Found\r\nX-Request-Id: a\r\n\r\n"),
            None
        );
        assert_eq!(hypers_own_error(b"HTTP/1.1 200 OK\r\n\r\n"), None);
        assert_eq!(
            hypers_own_error(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\n{}"),
            None
        );
        assert_eq!(hypers_own_error(b"{\"error\": 1}"), None);
    }

    #[test]
    fn an_error_answer_is_complete_json() {
        let r =
            String::from_utf8(error_response(431, "headers_too_large", "m", "id1", None)).unwrap();
        let (head, body) = r.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 431 Request Header Fields Too Large"));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        assert!(head.contains("x-content-type-options: nosniff"));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"]["code"], "headers_too_large");
        assert_eq!(v["error"]["request_id"], "id1");
    }

    #[test]
    fn the_per_ip_count_is_released() {
        let per_ip = Arc::new(PerIp::default());
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let a = per_ip.take(ip, 2).unwrap();
        let _b = per_ip.take(ip, 2).unwrap();
        assert!(per_ip.take(ip, 2).is_none());
        assert!(per_ip.take("10.0.0.2".parse().unwrap(), 2).is_some());
        drop(a);
        assert!(per_ip.take(ip, 2).is_some());
    }
}
