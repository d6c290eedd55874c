//! HTTP/1.1, implemented once: `codec.rs` parses request heads strictly
//! (pure), `chunked.rs` decodes chunked bodies (pure, fuzzed), and
//! `connection.rs` says how the shared connection loop frames and answers
//! HTTP requests.

pub(crate) mod chunked;
pub(crate) mod codec;
pub(crate) mod connection;
