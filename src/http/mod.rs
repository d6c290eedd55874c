//! HTTP/1.1, implemented once: `rwsgi_codec::http` parses request heads
//! strictly and `rwsgi_codec::chunked` decodes chunked bodies (pure, fuzzed),
//! and `connection.rs` says how the shared connection loop frames and
//! answers HTTP requests.

pub(crate) mod connection;
