//! The binary uwsgi protocol, for nginx's `uwsgi_pass`: `rwsgi_codec::uwsgi`
//! decodes packets and turns a vars block into the neutral request head
//! (pure, fuzzed), and `connection.rs` frames requests and answers for the
//! shared connection loop.

pub(crate) mod connection;
