//! The `--stats` listener, served by the master's own poll loop (the
//! master forks, so it starts no thread): every socket is non-blocking,
//! a client that stalls is dropped at its deadline, and nothing here ever
//! waits. Plain, a connection gets the stats JSON at once and is closed,
//! as uWSGI does. With `--stats-http`, the request head is read first
//! (bounded in size and time): `GET /metrics` gets Prometheus text, any
//! other GET the JSON, anything else an error status.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use socket2::Socket;

use crate::config::{Address, Config, ListenerProtocol, ListenerSpec};
use crate::error::{Error, Result};
use crate::net::{self, UnixSocketFile};

/// Longest a stats client may take to send its request and read the answer.
const CLIENT_DEADLINE: Duration = Duration::from_secs(5);
/// Longest request head `--stats-http` reads.
const MAX_HEAD: usize = 8 * 1024;
/// Most clients served at once; more wait in the listen queue.
const MAX_CLIENTS: usize = 64;

/// What a stats client asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Page {
    /// uWSGI's stats JSON.
    Json,
    /// Prometheus text.
    Metrics,
}

struct Client {
    socket: Socket,
    deadline: Instant,
    /// The request head read so far (`--stats-http`).
    inbox: Vec<u8>,
    /// The answer, once known, and how much of it is sent.
    outbox: Option<(Vec<u8>, usize)>,
}

/// The bound stats listener and the clients being served.
pub(crate) struct StatsServer {
    listener: Socket,
    address: Address,
    http: bool,
    /// The socket file to remove when the master exits.
    file: Option<UnixSocketFile>,
    clients: Vec<Client>,
}

impl StatsServer {
    /// Bind `address` (`--stats`) as the other listeners are bound (a stale
    /// socket file replaced, `--chmod-socket`...); an error names the option.
    pub(crate) fn bind(address: &Address, http: bool, config: &Config) -> Result<Self> {
        let spec = ListenerSpec {
            protocol: ListenerProtocol::Http,
            address: address.clone(),
        };
        let (bound, file) = net::bind(&spec, 1, config).map_err(|error| match error {
            Error::Bind { address, source } => Error::Config {
                option: "stats",
                message: format!("cannot listen on {address}: {source}"),
            },
            other => other,
        })?;
        let listener = bound
            .per_slot
            .into_iter()
            .next()
            .map(Socket::from)
            .ok_or_else(|| Error::Config {
                option: "stats",
                message: format!("cannot listen on {address}: no socket was made"),
            })?;
        Ok(Self {
            listener,
            address: bound.address,
            http,
            file,
            clients: Vec::new(),
        })
    }

    /// How the banner shows it.
    pub(crate) fn describe(&self) -> String {
        let kind = if self.http {
            "stats (HTTP, /metrics)"
        } else {
            "stats"
        };
        format!("{kind} on {}", self.address)
    }

    /// The descriptors the master's loop polls for reading.
    pub(crate) fn fds(&self) -> Vec<RawFd> {
        let mut fds = Vec::with_capacity(1 + self.clients.len());
        if self.clients.len() < MAX_CLIENTS {
            fds.push(self.listener.as_raw_fd());
        }
        fds.extend(
            self.clients
                .iter()
                .filter(|client| client.outbox.is_none())
                .map(|client| client.socket.as_raw_fd()),
        );
        fds
    }

    /// When the loop should come back for clients it could not finish
    /// writing to (poll only watches for input).
    pub(crate) fn next_wake(&self) -> Option<Duration> {
        self.clients
            .iter()
            .any(|client| client.outbox.is_some())
            .then_some(Duration::from_millis(10))
    }

    /// Accept, read, answer and close what can be, without waiting;
    /// `render` makes a page's body.
    pub(crate) fn turn(&mut self, mut render: impl FnMut(Page) -> Vec<u8>) {
        let now = Instant::now();
        while self.clients.len() < MAX_CLIENTS {
            let Ok((socket, _)) = self.listener.accept() else {
                break;
            };
            if socket.set_nonblocking(true).is_err() {
                continue;
            }
            let outbox = (!self.http).then(|| (render(Page::Json), 0));
            self.clients.push(Client {
                socket,
                deadline: now + CLIENT_DEADLINE,
                inbox: Vec::new(),
                outbox,
            });
        }
        let http = self.http;
        self.clients.retain_mut(|client| {
            if client.outbox.is_none() && http {
                match read_head(client) {
                    Head::More => {}
                    Head::Closed => return false,
                    Head::Done(answer) => {
                        let body = answer.page.map(&mut render);
                        client.outbox = Some((http_answer(&answer, body), 0));
                    }
                }
            }
            if let Some((bytes, sent)) = &mut client.outbox {
                match (&client.socket).write(&bytes[*sent..]) {
                    Ok(written) => *sent += written,
                    Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => return false,
                }
                if *sent >= bytes.len() {
                    let _ = client.socket.shutdown(std::net::Shutdown::Write);
                    return false;
                }
            }
            now < client.deadline
        });
    }

    /// Remove the socket file (the master, as it exits).
    pub(crate) fn remove_file(&self) {
        if let Some(file) = &self.file {
            file.remove();
        }
    }
}

/// How an HTTP stats request is answered.
struct Answer {
    status: &'static str,
    page: Option<Page>,
    head_only: bool,
}

enum Head {
    More,
    Closed,
    Done(Answer),
}

fn read_head(client: &mut Client) -> Head {
    let mut chunk = [0u8; 2048];
    let mut ended = false;
    loop {
        match (&client.socket).read(&mut chunk) {
            // A client may send its request, then shut down its side.
            Ok(0) => {
                ended = true;
                break;
            }
            Ok(read) => client.inbox.extend_from_slice(&chunk[..read]),
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return Head::Closed,
        }
        if client.inbox.len() > MAX_HEAD {
            break;
        }
    }
    if let Some(end) = find(&client.inbox, b"\r\n\r\n").or_else(|| find(&client.inbox, b"\n\n")) {
        return Head::Done(route(&client.inbox[..end]));
    }
    if ended {
        // What came before the end is all the request there will be.
        return if client.inbox.is_empty() {
            Head::Closed
        } else {
            Head::Done(route(&client.inbox))
        };
    }
    if client.inbox.len() > MAX_HEAD {
        return Head::Done(Answer {
            status: "431 Request Header Fields Too Large",
            page: None,
            head_only: false,
        });
    }
    Head::More
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// What the request line `head` starts with asks for.
fn route(head: &[u8]) -> Answer {
    let line = head.split(|&byte| byte == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.trim_end().split(' ');
    let (method, target, version) = (parts.next(), parts.next(), parts.next());
    let fail = |status| Answer {
        status,
        page: None,
        head_only: false,
    };
    let (Some(method), Some(target), Some(version)) = (method, target, version) else {
        return fail("400 Bad Request");
    };
    if !version.starts_with("HTTP/1.") || parts.next().is_some() || !target.starts_with('/') {
        return fail("400 Bad Request");
    }
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return fail("405 Method Not Allowed"),
    };
    let path = target.split('?').next().unwrap_or(target);
    Answer {
        status: "200 OK",
        page: Some(if path == "/metrics" {
            Page::Metrics
        } else {
            Page::Json
        }),
        head_only,
    }
}

fn http_answer(answer: &Answer, body: Option<Vec<u8>>) -> Vec<u8> {
    let (content_type, body) = match (answer.page, body) {
        (Some(Page::Metrics), Some(body)) => (super::metrics::CONTENT_TYPE, body),
        (Some(Page::Json), Some(body)) => ("application/json", body),
        _ => (
            "text/plain; charset=utf-8",
            format!("{}\n", answer.status).into_bytes(),
        ),
    };
    let mut bytes = format!(
        "HTTP/1.0 {}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n{}connection: close\r\n\r\n",
        answer.status,
        body.len(),
        if answer.status.starts_with("405") {
            "allow: GET, HEAD\r\n"
        } else {
            ""
        },
    )
    .into_bytes();
    if !answer.head_only {
        bytes.extend_from_slice(&body);
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::{route, Page};

    #[test]
    fn routes_request_lines() {
        assert_eq!(route(b"GET /metrics HTTP/1.1").page, Some(Page::Metrics));
        assert_eq!(
            route(b"GET /metrics?x=1 HTTP/1.0").page,
            Some(Page::Metrics)
        );
        assert_eq!(route(b"GET / HTTP/1.1\r\nHost: x").page, Some(Page::Json));
        assert!(route(b"HEAD / HTTP/1.1").head_only);
        assert!(route(b"POST / HTTP/1.1").status.starts_with("405"));
        assert!(route(b"GET /").status.starts_with("400"));
        assert!(route(b"\x00\x01garbage").status.starts_with("400"));
        assert!(route(b"GET / SPDY/3").status.starts_with("400"));
    }
}
