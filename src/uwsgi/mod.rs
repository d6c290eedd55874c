//! The binary uwsgi protocol, for nginx's `uwsgi_pass`: `codec.rs` decodes
//! packets, `connection.rs` reads them from a socket with limits and timeouts
//! and writes the app's answer back as a plain HTTP/1.x response.

pub(crate) mod codec;
pub(crate) mod connection;
