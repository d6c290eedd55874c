//! HTTP/1.1, implemented once: `codec.rs` parses request heads strictly
//! (pure, fuzzed), chunked bodies are decoded by the `chunked` codec, and
//! `connection.rs` says how the shared connection loop frames and answers
//! HTTP requests.

pub(crate) mod codec;
pub(crate) mod connection;
