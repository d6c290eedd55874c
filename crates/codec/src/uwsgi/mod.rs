//! The binary uwsgi protocol, for nginx's `uwsgi_pass`: `packet.rs` decodes
//! the packet header and vars block, `head.rs` turns a vars block into the
//! neutral request head. Reading packets off a socket is the server's job.

pub mod head;
pub mod packet;
