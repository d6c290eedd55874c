//! A bare hyper server with no Python: `Hello, world!\n` for every request.
//!
//! The ceiling the Python servers are measured against in benches/compare.py.
//! `hyper_bare ADDR [THREADS]` serves on one multi-thread tokio runtime with
//! THREADS worker threads (default 2), HTTP/1.1 keep-alive, nothing else.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

const BODY: &[u8] = b"Hello, world!\n";

async fn hello(_: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut response = Response::new(Full::new(Bytes::from_static(BODY)));
    response
        .headers_mut()
        .insert("content-type", "text/plain".parse().expect("static header"));
    Ok(response)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let addr: SocketAddr = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:8000".into())
        .parse()
        .expect("usage: hyper_bare ADDR [THREADS]");
    let threads: usize = args
        .next()
        .map_or(2, |t| t.parse().expect("THREADS is a number"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async move {
        let listener = TcpListener::bind(addr).await.expect("bind");
        eprintln!("hyper_bare listening on {addr} with {threads} threads");
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service_fn(hello))
                    .await;
            });
        }
    });
}
