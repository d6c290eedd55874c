//! The record every answered request leaves, whatever its protocol or
//! transport: what the access log writes and the stats count. Both
//! connection loops (the shared one and the uwsgi unix fast path) make one
//! and hand it to `connection::account`, on the I/O side with no GIL, once
//! the answer is on its way.

use std::time::{Duration, Instant};

use crate::counters::Answered;
use crate::request::{Peer, Request, RequestHead};
use crate::response::encode::{Encoded, Framing};

/// What an answered request leaves behind for the log and the counters.
pub(crate) struct Finished<'a> {
    pub head: &'a RequestHead,
    pub peer: Peer,
    /// The listener's protocol (`Protocol::NAME`: "HTTP" or "uwsgi").
    pub protocol: &'static str,
    pub status: u16,
    /// Body bytes sent, when the framing knew them (not for chunked or
    /// close-delimited bodies).
    pub sent: Option<u64>,
    /// The response head as written (status line and header lines, maybe
    /// followed by a small body), for a template asking for a response header.
    pub response: &'a [u8],
    /// When the request's head had been read.
    pub started: Instant,
    /// When its answer was ready (body read, then static file or app).
    pub answered: Instant,
}

impl<'a> Finished<'a> {
    /// The record of `request`, answered with `status` and encoded as
    /// `encoded`, for a `protocol` listener.
    pub(crate) fn new(
        request: &'a Request,
        protocol: &'static str,
        status: u16,
        encoded: &'a Encoded,
        (started, answered): (Instant, Instant),
    ) -> Self {
        Self {
            head: &request.head,
            peer: request.peer,
            protocol,
            status,
            sent: match encoded.framing {
                Framing::Length(length) => Some(length),
                Framing::Bodiless => Some(0),
                Framing::Chunked | Framing::Close => None,
            },
            response: &encoded.head,
            started,
            answered,
        }
    }

    /// What the worker's counters add for this request, `took` from its
    /// head read to its answer handed to the socket.
    pub(crate) fn counted(&self, took: Duration) -> Answered {
        // A small body travels inside `response`, after the head's blank line.
        let body = if self.response.ends_with(b"\r\n\r\n") {
            self.sent.unwrap_or(0)
        } else {
            0
        };
        Answered {
            protocol: self.protocol,
            status: self.status,
            received: self.head.bytes.len() as u64,
            sent: self.response.len() as u64 + body,
            app: self.answered.saturating_duration_since(self.started),
            total: took,
        }
    }
}
