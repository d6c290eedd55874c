//! rwsgi's wire codecs, pure: bytes in, spans and typed errors out, no I/O,
//! no interpreter, no runtime. The server (the `rwsgi` crate) reads sockets,
//! applies its limits and timeouts and answers; the fuzz targets and benches
//! link this crate the same way it does, so what they exercise is what runs.
//!
//! - [`head`]: the protocol-neutral request head both protocols produce;
//! - [`http`]: the HTTP/1.1 request head, strict, with its size limits;
//! - [`chunked`]: the chunked transfer coding of request bodies;
//! - [`uwsgi`]: the uwsgi packet and its vars block as a request head.

pub mod chunked;
pub mod head;
pub mod http;
pub mod uwsgi;
