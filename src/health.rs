//! The readiness route (`--health-path`): a request for that path is
//! answered by the server itself, before and without the app, on every
//! protocol. `200 ready` while the worker serves, `503 draining` from the
//! moment its stop or retirement begins or the master says the server drains
//! (`--health-drain-delay`), so a load balancer stops sending new requests
//! before connections are refused. The answer carries `X-Free-Threads`: how
//! many of the worker's threads are outside the app now.
//!
//! The route only decides the response; the connection encodes and sends it
//! like any other (the one encoder), so keep-alive and HEAD work as usual.

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use http::StatusCode;

use crate::request::RequestHead;
use crate::response::{Response, ResponseBody};
use crate::shared::Shared;

/// The header that says how many threads are free.
const FREE_THREADS: HeaderName = HeaderName::from_static("x-free-threads");

/// What the readiness answer reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Readiness {
    /// The worker (or the whole server) drains: send no more.
    draining: bool,
    /// Threads outside the app.
    free_threads: u32,
}

/// The readiness answer when `head` asks for `--health-path`; `None` for
/// every other request (and always when the option is off).
pub(crate) fn answer(head: &RequestHead, shared: &Shared) -> Option<Response> {
    let path = shared.config.health_path.as_deref()?;
    if head.path() != path.as_bytes() {
        return None;
    }
    Some(respond(head.method(), readiness(shared)))
}

fn readiness(shared: &Shared) -> Readiness {
    let slot = shared.board.slot(shared.slot);
    let threads = u32::try_from(shared.config.threads).unwrap_or(u32::MAX);
    let busy = slot.map_or(0, crate::board::Slot::busy);
    Readiness {
        draining: shared.stop.is_set()
            || shared.board.is_draining()
            || slot.is_some_and(crate::board::Slot::is_retiring),
        free_threads: threads.saturating_sub(busy),
    }
}

/// The answer to `method` in state `ready`.
fn respond(method: &[u8], ready: Readiness) -> Response {
    if method != b"GET" && method != b"HEAD" {
        let mut response = Response::plain(StatusCode::METHOD_NOT_ALLOWED);
        response
            .headers
            .push((ALLOW, HeaderValue::from_static("GET, HEAD")));
        return response;
    }
    let (status, text) = if ready.draining {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n")
    } else {
        (StatusCode::OK, "ready\n")
    };
    Response {
        status,
        reason: None,
        headers: vec![
            (
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            ),
            (CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (FREE_THREADS, HeaderValue::from(ready.free_threads)),
        ],
        body: ResponseBody::full(Bytes::from_static(text.as_bytes())),
    }
}

#[cfg(test)]
mod tests {
    use super::{respond, Readiness, FREE_THREADS};
    use crate::response::ResponseBody;
    use http::StatusCode;

    fn body(body: &ResponseBody) -> &[u8] {
        match body {
            ResponseBody::Full(bytes) => bytes,
            _ => b"",
        }
    }

    #[test]
    fn ready_draining_and_other_methods() {
        let serving = Readiness {
            draining: false,
            free_threads: 3,
        };
        let ready = respond(b"GET", serving);
        assert_eq!(ready.status, StatusCode::OK);
        assert_eq!(body(&ready.body), b"ready\n");
        let free = ready.headers.iter().find(|(name, _)| name == FREE_THREADS);
        assert_eq!(free.map(|(_, value)| value.as_bytes()), Some(&b"3"[..]));
        assert_eq!(respond(b"HEAD", serving).status, StatusCode::OK);
        let draining = respond(
            b"GET",
            Readiness {
                draining: true,
                ..serving
            },
        );
        assert_eq!(draining.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body(&draining.body), b"draining\n");
        let post = respond(b"POST", serving);
        assert_eq!(post.status, StatusCode::METHOD_NOT_ALLOWED);
        assert!(post
            .headers
            .iter()
            .any(|(name, _)| name == http::header::ALLOW));
        assert_eq!(
            respond(b"get", serving).status,
            StatusCode::METHOD_NOT_ALLOWED,
            "methods are case-sensitive"
        );
    }
}
