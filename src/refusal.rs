//! Refusing a request: one plain answer (400, 408, 413, 431, 503...) with
//! `connection: close`, then, for a body we will not read, reading and
//! dropping what the client is still sending (bounded) before closing. A
//! proxy such as nginx sends the whole body before it reads the answer;
//! closing with input unread resets the connection and the proxy answers 502
//! instead of relaying ours. Every protocol refuses through here. The
//! answer's write is bounded by `--write-timeout` like any other.

use std::time::Duration;

use bytes::BytesMut;
use http::StatusCode;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::time::Instant;

use crate::config::Config;
use crate::response::encode::{encode, Exchange};
use crate::response::{write, Response};

/// Most bytes read and dropped.
pub(crate) const LIMIT: u64 = 1 << 30;
/// Longest the discarding may take in all.
pub(crate) const TOTAL_TIME: Duration = Duration::from_secs(30);
/// Without a framing to say where the body ends, this much silence ends it.
const QUIET: Duration = Duration::from_secs(1);

/// Answer `status` and close; with `drain`, first read and drop what the
/// client still sends when its framing is not known (a body whose framing is
/// known is discarded by `body_reader::discard_body` instead), until it is
/// quiet for a second or `--body-timeout`, whichever is shorter.
pub(crate) async fn refuse<S>(
    stream: &mut S,
    status: StatusCode,
    exchange: Exchange,
    drain: bool,
    config: &Config,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let exchange = Exchange {
        keep_alive: false,
        ..exchange
    };
    let encoded = encode(Response::plain(status), exchange, BytesMut::new());
    if write::write_all(stream, &encoded.head, config.write_timeout)
        .await
        .is_err()
    {
        return;
    }
    if drain {
        discard_input(stream, config.body_timeout).await;
    }
}

/// Read and drop input until the client stops, the byte budget or the time runs out.
async fn discard_input<S: AsyncRead + Unpin>(stream: &mut S, idle: Duration) {
    let idle = if idle.is_zero() {
        QUIET
    } else {
        idle.min(QUIET)
    };
    let deadline = Instant::now() + TOTAL_TIME;
    let mut read_total: u64 = 0;
    let mut sink = vec![0u8; 64 * 1024];
    while read_total < LIMIT {
        let wait = idle.min(deadline.saturating_duration_since(Instant::now()));
        match tokio::time::timeout(wait, stream.read(&mut sink)).await {
            Ok(Ok(read)) if read > 0 => read_total += read as u64,
            _ => return,
        }
    }
}
