//! HTTP/1.1 as a protocol of the shared connection loop: a head from the
//! codec becomes the neutral request; its body is a length or chunked;
//! the answer is HTTP/1.1 with keep-alive as the client asked (HTTP/1.0
//! only with `Connection: keep-alive`), `100 Continue` when expected, and
//! chunked responses only to HTTP/1.1 clients.

use bytes::BytesMut;
use rwsgi_codec::chunked::{Chunk, ChunkError, ChunkedDecoder};
use rwsgi_codec::http::{self as codec, BodyKind, Parsed};

use crate::body_reader::{BodyDecoder, Framing, Piece};
use crate::connection::{Cut, Incoming, Parse, Protocol};
use crate::request::{Field, Protocol as Version, RequestHead};
use crate::response::encode::Exchange;

/// The interim answer to `Expect: 100-continue`.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// One HTTP/1.1 connection's protocol state.
#[derive(Default)]
pub(crate) struct Http1 {
    /// The last request's field list, reused by the next parse.
    spare_fields: Vec<Field>,
}

/// A chunked request body.
pub(crate) struct ChunkedBody(ChunkedDecoder);

impl BodyDecoder for ChunkedBody {
    type Error = ChunkError;

    fn next_piece(&mut self, input: &mut BytesMut) -> Result<Piece, ChunkError> {
        Ok(match self.0.decode(input)? {
            Chunk::Data(data) => Piece::Data(data),
            Chunk::NeedMore => Piece::NeedMore,
            Chunk::End => Piece::End,
        })
    }
}

impl Protocol for Http1 {
    type Decoder = ChunkedBody;
    const NAME: &'static str = "HTTP";

    fn parse(&mut self, buffer: &mut BytesMut) -> Parse<ChunkedBody> {
        let parsed = match codec::parse(buffer, std::mem::take(&mut self.spare_fields)) {
            Parsed::Partial => return Parse::Partial,
            Parsed::Error(error) => {
                return Parse::Refuse {
                    status: error.status(),
                    drain: false,
                    log: None,
                }
            }
            Parsed::Complete(parsed) => parsed,
        };
        let http11 = parsed.protocol == Version::Http11;
        let bytes = buffer.split_to(parsed.length).freeze();
        let framing = match parsed.body {
            BodyKind::None => Framing::None,
            BodyKind::Length(length) => Framing::Length(length),
            BodyKind::Chunked => Framing::Decoded(ChunkedBody(ChunkedDecoder::new())),
        };
        let exchange = Exchange {
            version: b"HTTP/1.1",
            is_head: parsed.is_head,
            keep_alive: parsed.keep_alive,
            chunked: http11,
            date: true,
            announce_close: true,
            announce_keep_alive: !http11,
        };
        Parse::Request(Incoming {
            head: RequestHead {
                bytes,
                method: parsed.method,
                uri: parsed.uri,
                path: parsed.path,
                query: parsed.query,
                protocol: parsed.protocol,
                script_name: 0..0,
                fields: parsed.fields,
                cgi: Vec::new(),
                https: false,
                from_proxy: false,
            },
            framing,
            exchange,
            continue_line: parsed.expects_continue.then_some(CONTINUE),
            counted_length: parsed.body == BodyKind::Chunked,
        })
    }

    fn refusal_exchange(&self) -> Exchange {
        Exchange::refusal(true)
    }

    fn incomplete(&self, _cut: Cut, _buffered: &[u8]) -> Option<String> {
        // A client that stops halfway through a head is routine.
        None
    }

    fn recycle(&mut self, head: RequestHead) {
        self.spare_fields = head.into_fields();
    }
}
