//! The binary uwsgi protocol, for nginx's `uwsgi_pass`: `codec.rs` decodes
//! packets (pure, fuzzed), `head.rs` turns a vars block into the neutral
//! request head, and `connection.rs` frames requests and answers for the
//! shared connection loop.

pub(crate) mod codec;
pub(crate) mod connection;
pub(crate) mod head;
