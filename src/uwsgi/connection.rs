//! The uwsgi protocol in the shared connection loop: one request per
//! connection — the 4-byte packet header, the vars block and CONTENT_LENGTH
//! bytes of body — answered in HTTP/1.x, the end of the answer marked by
//! closing. Malformed packets and unsupported modifiers are logged and the
//! connection closed; they never reach the app. Also here: who may connect
//! over TCP (`--uwsgi-allow-from`), and the unregistered fast path for unix
//! sockets.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use http::StatusCode;
use rwsgi_codec::uwsgi::head::request_head;
use rwsgi_codec::uwsgi::packet::{PacketHeader, Vars, HEADER_LEN};

use crate::body::RequestBody;
use crate::body_reader::{Framing, NoDecoder};
use crate::config::Network;
use crate::connection::{self, Cut, Incoming, Parse, Protocol};
use crate::finished::Finished;
use crate::harakiri::Client;
use crate::log;
use crate::request::{Peer, Protocol as Version, Request, RequestHead};
use crate::response::encode::{encode, Exchange};
use crate::response::write;
use crate::shared::Shared;
use crate::shutdown::ConnectionGuard;
use crate::wsgi::environ::ConnectionCache;

/// What the unregistered first read of a unix connection asks for: nginx's
/// vars block (about 1 KiB) and a small body arrive in one read.
const FAST_READ: usize = 16 * 1024;

/// The uwsgi protocol (no state between requests: one per connection).
#[derive(Default)]
pub(crate) struct Uwsgi;

/// How a uwsgi answer is framed: nginx reads it to the close.
fn exchange(head: &RequestHead) -> Exchange {
    Exchange {
        version: if head.protocol == Version::Http10 {
            b"HTTP/1.0"
        } else {
            b"HTTP/1.1"
        },
        is_head: head.method() == b"HEAD",
        keep_alive: false,
        chunked: false,
        date: false,
        announce_close: false,
        announce_keep_alive: false,
    }
}

fn content_length(vars: &Vars) -> Result<u64, String> {
    match vars.get(b"CONTENT_LENGTH").map(<[u8]>::trim_ascii) {
        None | Some(b"") => Ok(0),
        Some(text) => std::str::from_utf8(text)
            .ok()
            .and_then(|text| text.parse::<u64>().ok())
            .ok_or_else(|| {
                format!(
                    "CONTENT_LENGTH {:?} is not a number",
                    String::from_utf8_lossy(text)
                )
            }),
    }
}

impl Protocol for Uwsgi {
    type Decoder = NoDecoder;
    const NAME: &'static str = "uwsgi";

    fn parse(&mut self, buffer: &mut BytesMut) -> Parse<NoDecoder> {
        let Some(first) = buffer.first_chunk::<HEADER_LEN>() else {
            return Parse::Partial;
        };
        let header = PacketHeader::parse(*first);
        if !header.is_supported() {
            return Parse::Drop {
                log: format!(
                    "unsupported modifier1 {} (modifier2 {}): only 0 (WSGI) and 30 are served",
                    header.modifier1, header.modifier2
                ),
            };
        }
        let head_length = HEADER_LEN + usize::from(header.datasize);
        if buffer.len() < head_length {
            return Parse::Partial;
        }
        let mut packet = buffer.split_to(head_length);
        packet.advance(HEADER_LEN);
        let vars = match Vars::parse(packet.freeze()) {
            Ok(vars) => vars,
            Err(error) => {
                return Parse::Drop {
                    log: format!("malformed vars block: {error}"),
                }
            }
        };
        let length = match content_length(&vars) {
            Ok(length) => length,
            Err(why) => {
                return Parse::Refuse {
                    status: StatusCode::BAD_REQUEST,
                    drain: true,
                    log: Some(why),
                }
            }
        };
        let head = request_head(&vars, header.modifier1);
        Parse::Request(Incoming {
            exchange: exchange(&head),
            head,
            framing: Framing::Length(length),
            continue_line: None,
            counted_length: false,
        })
    }

    fn refusal_exchange(&self) -> Exchange {
        Exchange::refusal(false)
    }

    fn incomplete(&self, cut: Cut, buffered: &[u8]) -> Option<String> {
        let part = if buffered.len() < HEADER_LEN {
            "packet header"
        } else {
            "vars block"
        };
        match cut {
            // Closed before sending anything: routine.
            Cut::Closed if buffered.is_empty() => None,
            Cut::Closed => Some(format!("the connection closed in the middle of the {part}")),
            Cut::TimedOut => Some(format!("timed out waiting for the {part}")),
        }
    }

    fn recycle(&mut self, _head: RequestHead) {}
}

/// Whether `peer` may use a TCP uwsgi listener: the listed networks, or
/// loopback when none are listed (the protocol trusts what its peer says).
pub(crate) fn allowed(allow: &[Network], peer: SocketAddr) -> bool {
    if allow.is_empty() {
        let ip = match peer.ip() {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 @ IpAddr::V4(_) => v4,
        };
        return ip.is_loopback();
    }
    allow.iter().any(|network| network.contains(peer.ip()))
}

/// Serve a uwsgi connection accepted from a unix socket, without registering
/// it with the event loop when it can be helped: nginx writes the request as
/// soon as it connects, so it is usually readable at once and a small answer
/// fits in the socket buffer. That saves the two `epoll_ctl` calls per
/// request which, behind nginx (a new connection per request), were a
/// quarter of the worker's system calls. Anything slower goes to the shared
/// connection loop with what was read so far.
/// `guard` counts the connection open until the fast path is done with it.
pub(crate) async fn serve_unix(
    stream: std::os::unix::net::UnixStream,
    shared: Arc<Shared>,
    guard: ConnectionGuard,
) {
    let mut buffer = BytesMut::zeroed(FAST_READ);
    match std::io::Read::read(&mut &stream, &mut buffer) {
        Ok(0) => return,
        Ok(read) => buffer.truncate(read),
        Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => buffer.clear(),
        Err(_) => return,
    }
    let received = buffer.freeze();
    let mut unsent = None;
    if let Some((vars, header, body)) = complete_packet(&received, &shared) {
        let started = Instant::now();
        let head = request_head(&vars, header.modifier1);
        drop(vars);
        let exchange = exchange(&head);
        let mut request = Request {
            head,
            body: if body.is_empty() {
                RequestBody::Empty
            } else {
                RequestBody::Memory(body)
            },
            counted_length: false,
            peer: Peer::Unix,
            local: None,
        };
        let client = Client {
            fd: stream.as_raw_fd(),
            exchange,
        };
        let Some(response) = connection::route(
            &shared,
            &mut request,
            &mut ConnectionCache::default(),
            client,
        ) else {
            // The watchdog answered (504) and shut the socket down.
            return;
        };
        let answered = Instant::now();
        let status = response.status.as_u16();
        let mut encoded = encode(response, exchange, BytesMut::new());
        connection::account(
            &shared,
            &Finished::new(&request, Uwsgi::NAME, status, &encoded, (started, answered)),
        );
        if encoded.body.is_none() {
            match std::io::Write::write(&mut &stream, &encoded.head) {
                Ok(written) if written == encoded.head.len() => return,
                Ok(written) => encoded.head.advance(written),
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
        unsent = Some((encoded, request.head));
    }
    let mut stream = match tokio::net::UnixStream::from_std(stream) {
        Ok(stream) => stream,
        Err(error) => {
            log::warning(&format!("cannot register a uwsgi connection: {error}"));
            return;
        }
    };
    match unsent {
        Some((mut encoded, head)) => {
            let limit = shared.config.write_timeout;
            if let Err(error) =
                write::send(&mut stream, &mut encoded, limit, || head.describe()).await
            {
                if write::is_stalled(&error) {
                    write::log_stalled(&error, limit, || head.describe());
                } else {
                    log::warning(&format!("uwsgi response cut short: {error}"));
                }
            }
        }
        None => {
            let buffer = BytesMut::from(&received[..]);
            connection::serve(stream, Uwsgi, Peer::Unix, None, shared, buffer, guard).await;
        }
    }
}

/// The packet's vars, header and body when `received` holds all of a
/// well-formed packet whose body is small enough to keep in memory; `None`
/// otherwise (the connection loop then reads the rest, or reports it).
fn complete_packet(received: &Bytes, shared: &Shared) -> Option<(Vars, PacketHeader, Bytes)> {
    let header = PacketHeader::parse(*received.first_chunk::<HEADER_LEN>()?);
    let end = HEADER_LEN + usize::from(header.datasize);
    if !header.is_supported() || received.len() < end {
        return None;
    }
    let vars = Vars::parse(received.slice(HEADER_LEN..end)).ok()?;
    let length = content_length(&vars).ok()?;
    let limit = shared
        .config
        .max_body_size
        .min(shared.config.post_buffering);
    if length > limit || (received.len() - end) as u64 != length {
        return None;
    }
    Some((vars, header, received.slice(end..)))
}
