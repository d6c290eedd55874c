//! The protocol-neutral request every listener hands the WSGI bridge: the
//! head a codec made (`rwsgi_codec::head`, re-exported here because a
//! request is where the rest of the server meets it), the body read before
//! Python runs, and who sent it. Nothing in this module knows which protocol
//! made a request.

use std::net::SocketAddr;

pub(crate) use rwsgi_codec::head::{Field, Protocol, RequestHead};

use crate::body::RequestBody;

/// The far end of a connection.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Peer {
    Tcp(SocketAddr),
    /// A unix socket client: it has no address worth showing.
    Unix,
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tcp(address) => write!(f, "{address}"),
            Self::Unix => f.write_str("a unix socket client"),
        }
    }
}

/// One request, ready for the app.
pub(crate) struct Request {
    pub head: RequestHead,
    pub body: RequestBody,
    /// True when the body's length came from counting it (chunked), so
    /// CONTENT_LENGTH is set from what arrived.
    pub counted_length: bool,
    pub peer: Peer,
    /// The listener's address (TCP), for SERVER_NAME/SERVER_PORT when no Host is sent.
    pub local: Option<SocketAddr>,
}
