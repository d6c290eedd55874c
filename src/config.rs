//! The typed configuration the Rust side receives from the Python option
//! table (`python/rwsgi/options.py`), which has already validated it.

use std::net::SocketAddr;
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::error::{Error, Result};

/// Largest request head (request line plus headers) accepted; more gets 431.
pub(crate) const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Most header fields accepted in one request; more gets 431.
pub(crate) const MAX_HEADERS: usize = 100;

/// Everything the master and its workers need to know, read once at start-up.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub http: Vec<SocketAddr>,
    pub workers: usize,
    pub threads: usize,
    pub backlog: i32,
    pub graceful_timeout: Duration,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub max_body_size: u64,
    /// Shown in the banner: what the user asked us to serve.
    pub app_label: String,
}

fn item<'py, T>(dict: &Bound<'py, PyDict>, option: &'static str) -> Result<T>
where
    T: FromPyObjectOwned<'py>,
    for<'a> <T as FromPyObject<'a, 'py>>::Error: Into<PyErr>,
{
    let value = dict
        .get_item(option)
        .ok()
        .flatten()
        .ok_or_else(|| Error::Config {
            option,
            message: "missing".into(),
        })?;
    value.extract::<T>().map_err(|error| Error::Config {
        option,
        message: Into::<PyErr>::into(error).to_string(),
    })
}

fn seconds(dict: &Bound<'_, PyDict>, option: &'static str) -> Result<Duration> {
    let value: f64 = item(dict, option)?;
    Duration::try_from_secs_f64(value).map_err(|error| Error::Config {
        option,
        message: error.to_string(),
    })
}

fn parse_address(option: &'static str, text: &str) -> Result<SocketAddr> {
    let normalized = text
        .strip_prefix(':')
        .map_or_else(|| text.to_owned(), |port| format!("0.0.0.0:{port}"));
    normalized.parse().map_err(|_| Error::Config {
        option,
        message: format!("{text:?} is not an IP address and port"),
    })
}

impl Config {
    /// Read the dict produced by `rwsgi.options.normalize`.
    pub(crate) fn from_dict(dict: &Bound<'_, PyDict>, app_label: String) -> Result<Self> {
        let http: Vec<String> = item(dict, "http")?;
        let socket: Vec<String> = item(dict, "socket")?;
        if !socket.is_empty() {
            return Err(Error::Config {
                option: "socket",
                message: "the uwsgi protocol listener is not yet supported".into(),
            });
        }
        let http = http
            .iter()
            .map(|text| parse_address("http", &rewrite_host(text)))
            .collect::<Result<Vec<_>>>()?;
        if http.is_empty() {
            return Err(Error::Config {
                option: "http",
                message: "no listener given".into(),
            });
        }
        let workers: usize = item(dict, "workers")?;
        let threads: usize = item(dict, "threads")?;
        let backlog: i64 = item(dict, "backlog")?;
        if workers == 0 || threads == 0 {
            return Err(Error::Config {
                option: if workers == 0 { "workers" } else { "threads" },
                message: "must be at least 1".into(),
            });
        }
        Ok(Self {
            http,
            workers,
            threads,
            backlog: i32::try_from(backlog.clamp(1, i64::from(i32::MAX))).unwrap_or(i32::MAX),
            graceful_timeout: seconds(dict, "graceful_timeout")?,
            header_timeout: seconds(dict, "header_timeout")?,
            body_timeout: seconds(dict, "body_timeout")?,
            max_body_size: item(dict, "max_body_size")?,
            app_label,
        })
    }
}

fn rewrite_host(text: &str) -> String {
    text.strip_prefix("localhost:")
        .map_or_else(|| text.to_owned(), |port| format!("127.0.0.1:{port}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_v4_v6_and_bare_port() {
        assert_eq!(parse_address("http", "127.0.0.1:80").unwrap().port(), 80);
        assert!(parse_address("http", "[::1]:8000").unwrap().is_ipv6());
        assert_eq!(
            parse_address("http", ":9000").unwrap().to_string(),
            "0.0.0.0:9000"
        );
        assert!(parse_address("http", "nonsense").is_err());
        assert_eq!(rewrite_host("localhost:1"), "127.0.0.1:1");
    }
}
