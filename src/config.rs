//! The typed configuration the Rust side receives from the Python option
//! table (`python/rwsgi/options.py`), which has already validated it.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::PyDict;

pub(crate) use crate::access_log::Format as AccessLogFormat;
use crate::error::{Error, Result};
use crate::log::Level;

/// What a listener speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ListenerProtocol {
    /// HTTP/1.1.
    Http,
    /// The binary uwsgi protocol of nginx's `uwsgi_pass`.
    Uwsgi,
}

/// Where a listener is bound.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Address {
    Tcp(SocketAddr),
    /// A unix socket file.
    Unix(PathBuf),
    /// A Linux abstract socket name (given as `@name`), without the leading NUL.
    Abstract(Vec<u8>),
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tcp(address) => write!(f, "{address}"),
            Self::Unix(path) => write!(f, "unix:{}", path.display()),
            Self::Abstract(name) => write!(f, "@{}", String::from_utf8_lossy(name)),
        }
    }
}

/// One listener to bind.
#[derive(Clone, Debug)]
pub(crate) struct ListenerSpec {
    pub protocol: ListenerProtocol,
    pub address: Address,
}

/// An IP network (`10.0.0.0/8`, or one address) allowed to reach a uwsgi listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Network {
    address: IpAddr,
    prefix: u8,
}

impl Network {
    /// Parse `ADDRESS` or `ADDRESS/PREFIX`.
    pub(crate) fn parse(text: &str) -> Option<Self> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (
                address.parse::<IpAddr>().ok()?,
                Some(prefix.parse::<u8>().ok()?),
            ),
            None => (text.parse::<IpAddr>().ok()?, None),
        };
        let max = if address.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Self { address, prefix })
    }

    /// Whether `peer` is inside this network (IPv4-mapped IPv6 peers count as IPv4).
    pub(crate) fn contains(&self, peer: IpAddr) -> bool {
        let peer = match peer {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer, IpAddr::V4),
            IpAddr::V4(_) => peer,
        };
        match (self.address, peer) {
            (IpAddr::V4(net), IpAddr::V4(peer)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(peer) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(peer)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(peer) & mask
            }
            _ => false,
        }
    }
}

/// Everything the master and its workers need to know, read once at start-up.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub listeners: Vec<ListenerSpec>,
    /// Mode of the unix socket files created.
    pub chmod_socket: Option<u32>,
    /// `USER[:GROUP]` owning the unix socket files created.
    pub chown_socket: Option<String>,
    /// `--uid`: the user the loaders and workers switch to (resolved to a number).
    pub uid: Option<u32>,
    /// `--gid`: their group; without it, the `--uid` user's primary group.
    pub gid: Option<u32>,
    /// Who may connect to TCP uwsgi listeners; empty means loopback only.
    pub uwsgi_allow_from: Vec<Network>,
    pub workers: usize,
    pub threads: usize,
    pub backlog: i32,
    pub graceful_timeout: Duration,
    // -- static files, internal redirects and autoreload (issue 14) --
    /// `--static-map`: URL prefixes served from folders, in the order given.
    pub static_map: Vec<Mount>,
    /// `--static-expires`: `max-age` of static files (`None`: no Cache-Control).
    pub static_expires: Option<u64>,
    /// `--static-strict`: a missing file is a 404, not a call to the app.
    pub static_strict: bool,
    /// `--static-confine`: links resolving outside their folder are refused.
    pub static_confine: bool,
    /// `--internal-map`: folders an app may name in `X-Accel-Redirect`.
    pub internal_map: Vec<Mount>,
    /// `--autoreload`: how often the loader looks for changed sources (zero: never).
    pub autoreload: Duration,
    /// `--touch-reload`: files whose modification reloads the code (uWSGI's touch-reload).
    pub touch_reload: Vec<String>,
    /// `--access-log`: `-` or a file (`None`: off).
    pub access_log: Option<String>,
    /// `--access-log-format`, parsed once here.
    pub access_log_format: AccessLogFormat,
    // -- the error log (issue 16) --
    /// `--log-file`: where fd 2 points (`None`: stderr as inherited).
    pub log_file: Option<PathBuf>,
    /// `--log-level`.
    pub log_level: Level,
    /// `--log-format json`.
    pub log_json: bool,
    // Request timeouts (harakiri).
    /// `--harakiri`: longest an app call (and the pulls of its streamed
    /// body) may run before the watchdog answers 504; zero: off.
    pub harakiri: Duration,
    /// `--harakiri-grace`: how long a timed-out thread gets to unwind
    /// before the worker asks to be replaced.
    pub harakiri_grace: Duration,
    // -- systemd, pidfile, process titles (issue 13)
    /// `--pidfile`: where the master writes its pid (absolute, resolved by the option table).
    pub pidfile: Option<PathBuf>,
    // -- stats and metrics (issue 16) --
    /// `--stats`: where the master serves uWSGI's stats JSON.
    pub stats: Option<Address>,
    /// `--stats-http`: the stats listener speaks HTTP (and serves /metrics).
    pub stats_http: bool,
    // -- connection timeouts, draining and readiness (issue 13, connection side) --
    /// Longest idle wait for the next request on a kept-alive connection.
    pub keepalive_timeout: Duration,
    /// Longest a write to a client may make no progress before the connection ends.
    pub write_timeout: Duration,
    /// The readiness path answered without the app (`None`: off).
    pub health_path: Option<String>,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub max_body_size: u64,
    /// Bodies larger than this are spooled to a file instead of memory.
    pub post_buffering: u64,
    /// Where spooled bodies go: an absolute folder, resolved by the option table.
    pub spool_dir: PathBuf,
    /// Shown in the banner: what the user asked us to serve.
    pub app_label: String,
    // -- loading and recycling --
    /// Import the app once per generation, in its loader (not in each worker).
    pub preload: bool,
    /// Requests after which a worker asks to be replaced; 0 for never.
    pub max_requests: u64,
    pub max_requests_jitter: u64,
    /// Age after which a worker is replaced; zero for never.
    pub max_lifetime: Duration,
    pub max_lifetime_jitter: Duration,
    /// Resident bytes past which a worker asks to be replaced; 0 for never.
    pub reload_on_rss: u64,
    /// How long a stop keeps serving with readiness answering 503.
    pub health_drain_delay: Duration,
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

/// The longest duration handed on (about 34,800 years): the option table's
/// one-year cap is the policy; this only keeps `Instant + Duration`, which
/// panics on overflow, safe for any deadline computed from a timeout.
const LONGEST_DURATION: Duration = Duration::from_secs(1 << 40);

fn seconds(dict: &Bound<'_, PyDict>, option: &'static str) -> Result<Duration> {
    to_duration(option, item(dict, option)?)
}

/// Convert a number of seconds, refusing what no deadline could be built from.
fn to_duration(option: &'static str, value: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|duration| *duration <= LONGEST_DURATION)
        .ok_or_else(|| Error::Config {
            option,
            message: format!("{value} is not a number of seconds from 0 to {LONGEST_DURATION:?}"),
        })
}

/// A URL prefix served from a folder (`--static-map`, `--internal-map`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Mount {
    /// Starts with `/` and has no trailing `/` (except `/` itself).
    pub prefix: String,
    /// Absolute, resolved by the option table.
    pub folder: PathBuf,
}

/// Read `PREFIX=DIR` entries the option table has checked.
fn mounts(dict: &Bound<'_, PyDict>, option: &'static str) -> Result<Vec<Mount>> {
    let texts: Vec<String> = item(dict, option)?;
    texts
        .iter()
        .map(|text| {
            let (prefix, folder) = text.split_once('=').ok_or_else(|| Error::Config {
                option,
                message: format!("{text:?} is not PREFIX=DIR"),
            })?;
            Ok(Mount {
                prefix: prefix.to_owned(),
                folder: PathBuf::from(folder),
            })
        })
        .collect()
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
        let mut listeners = Vec::new();
        for (option, protocol, unix_allowed) in [
            ("http", ListenerProtocol::Http, false),
            ("http_socket", ListenerProtocol::Http, true),
            ("socket", ListenerProtocol::Uwsgi, true),
        ] {
            let texts: Vec<String> = item(dict, option)?;
            for text in texts {
                let address = parse_listener(option, &text, unix_allowed)?;
                listeners.push(ListenerSpec { protocol, address });
            }
        }
        // No listener is fine here: systemd may pass them (`net::listen` checks).
        let allow: Vec<String> = item(dict, "uwsgi_allow_from")?;
        let uwsgi_allow_from = allow
            .iter()
            .map(|text| {
                Network::parse(text).ok_or_else(|| Error::Config {
                    option: "uwsgi_allow_from",
                    message: format!("{text:?} is not an IP address or CIDR network"),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        for listener in &listeners {
            if let (ListenerProtocol::Uwsgi, Address::Tcp(address)) =
                (listener.protocol, &listener.address)
            {
                if uwsgi_allow_from.is_empty() && !address.ip().is_loopback() {
                    return Err(Error::Config {
                        option: "socket",
                        message: format!(
                            "{address} is not a loopback address and no --uwsgi-allow-from is given"
                        ),
                    });
                }
            }
        }
        let chmod_socket: Option<u32> = item(dict, "chmod_socket")?;
        let chown_socket: Option<String> = item(dict, "chown_socket")?;
        let uid: Option<u32> = item(dict, "uid")?;
        let gid: Option<u32> = item(dict, "gid")?;
        // Ranges are the option table's to check (once, at the front door);
        // a value that does not fit its type here is still a config error.
        let workers: usize = item(dict, "workers")?;
        let threads: usize = item(dict, "threads")?;
        Ok(Self {
            listeners,
            chmod_socket,
            chown_socket,
            uid,
            gid,
            uwsgi_allow_from,
            workers,
            threads,
            backlog: item(dict, "backlog")?,
            graceful_timeout: seconds(dict, "graceful_timeout")?,
            // -- static files, internal redirects and autoreload (issue 14) --
            static_map: mounts(dict, "static_map")?,
            static_expires: item(dict, "static_expires")?,
            static_strict: item(dict, "static_strict")?,
            static_confine: item(dict, "static_confine")?,
            internal_map: mounts(dict, "internal_map")?,
            autoreload: seconds(dict, "autoreload")?,
            touch_reload: item(dict, "touch_reload")?,
            access_log: access_log(dict)?,
            access_log_format: {
                let text: String = item(dict, "access_log_format")?;
                AccessLogFormat::parse(&text).map_err(|message| Error::Config {
                    option: "access_log_format",
                    message,
                })?
            },
            log_file: item(dict, "log_file")?,
            log_level: log_level(dict)?,
            log_json: log_json(dict)?,
            // Request timeouts (harakiri).
            harakiri: seconds(dict, "harakiri")?,
            harakiri_grace: seconds(dict, "harakiri_grace")?,
            // -- systemd, pidfile, process titles (issue 13)
            pidfile: item(dict, "pidfile")?,
            // -- stats and metrics (issue 16) --
            stats: item::<Option<String>>(dict, "stats")?
                .map(|text| parse_listener("stats", &text, true))
                .transpose()?,
            stats_http: item(dict, "stats_http")?,
            // -- connection timeouts, draining and readiness (issue 13) --
            keepalive_timeout: seconds(dict, "keepalive_timeout")?,
            write_timeout: seconds(dict, "write_timeout")?,
            health_path: item(dict, "health_path")?,
            header_timeout: seconds(dict, "header_timeout")?,
            body_timeout: seconds(dict, "body_timeout")?,
            max_body_size: item(dict, "max_body_size")?,
            post_buffering: item(dict, "post_buffering")?,
            spool_dir: item(dict, "spool_dir")?,
            app_label,
            preload: item(dict, "preload")?,
            max_requests: item(dict, "max_requests")?,
            max_requests_jitter: item(dict, "max_requests_jitter")?,
            max_lifetime: seconds(dict, "max_lifetime")?,
            max_lifetime_jitter: seconds(dict, "max_lifetime_jitter")?,
            reload_on_rss: item::<u64>(dict, "reload_on_rss")?.saturating_mul(1 << 20),
            health_drain_delay: seconds(dict, "health_drain_delay")?,
        })
    }
}

/// `--access-log`, unless `--disable-access-log`, which wins over every
/// way of turning it on (the Django development mode, an ini file).
fn access_log(dict: &Bound<'_, PyDict>) -> Result<Option<String>> {
    if item(dict, "disable_access_log")? {
        return Ok(None);
    }
    item(dict, "access_log")
}

fn log_level(dict: &Bound<'_, PyDict>) -> Result<Level> {
    let name: String = item(dict, "log_level")?;
    Level::named(&name).ok_or_else(|| Error::Config {
        option: "log_level",
        message: format!("{name:?} is not debug, info, warning or error"),
    })
}

/// `--log-format`: true for json, false for text.
fn log_json(dict: &Bound<'_, PyDict>) -> Result<bool> {
    let name: String = item(dict, "log_format")?;
    match name.as_str() {
        "text" => Ok(false),
        "json" => Ok(true),
        _ => Err(Error::Config {
            option: "log_format",
            message: format!("{name:?} is not text or json"),
        }),
    }
}

fn parse_listener(option: &'static str, text: &str, unix_allowed: bool) -> Result<Address> {
    let is_unix =
        text.starts_with(['/', '.', '@']) || text.starts_with("unix:") || !text.contains(':');
    if !is_unix {
        return parse_address(option, &rewrite_host(text)).map(Address::Tcp);
    }
    if !unix_allowed {
        return Err(Error::Config {
            option,
            message: format!("{text:?} is not HOST:PORT (unix sockets go to --http-socket)"),
        });
    }
    let path = text.strip_prefix("unix:").unwrap_or(text);
    if let Some(name) = path.strip_prefix('@') {
        if name.is_empty() {
            return Err(Error::Config {
                option,
                message: "an abstract socket needs a name after @".into(),
            });
        }
        return Ok(Address::Abstract(name.as_bytes().to_vec()));
    }
    if path.is_empty() {
        return Err(Error::Config {
            option,
            message: format!("{text:?} names no socket path"),
        });
    }
    Ok(Address::Unix(PathBuf::from(path)))
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

    #[test]
    fn parses_listener_kinds() {
        assert_eq!(
            parse_listener("socket", "/run/app.sock", true).unwrap(),
            Address::Unix("/run/app.sock".into())
        );
        assert_eq!(
            parse_listener("socket", "unix:app.sock", true).unwrap(),
            Address::Unix("app.sock".into())
        );
        assert_eq!(
            parse_listener("socket", "@rwsgi", true).unwrap(),
            Address::Abstract(b"rwsgi".to_vec())
        );
        assert!(matches!(
            parse_listener("socket", "127.0.0.1:3031", true).unwrap(),
            Address::Tcp(_)
        ));
        assert!(parse_listener("http", "/run/app.sock", false).is_err());
        assert!(parse_listener("socket", "@", true).is_err());
    }

    #[test]
    fn durations_out_of_the_clock_range_are_config_errors() {
        assert_eq!(
            to_duration("graceful_timeout", 31_536_000.0).unwrap(),
            Duration::from_secs(31_536_000)
        );
        assert_eq!(
            to_duration("body_timeout", 0.25).unwrap(),
            Duration::from_millis(250)
        );
        for value in [1e19, f64::INFINITY, f64::NAN, -1.0, 2e12] {
            let Err(Error::Config { option, .. }) = to_duration("graceful_timeout", value) else {
                panic!("{value} was accepted");
            };
            assert_eq!(option, "graceful_timeout");
        }
        // The longest accepted duration still makes a deadline.
        assert!(std::time::Instant::now()
            .checked_add(LONGEST_DURATION + Duration::from_secs(1))
            .is_some());
    }

    #[test]
    fn networks_match_their_members() {
        let net = Network::parse("10.1.0.0/16").unwrap();
        assert!(net.contains("10.1.200.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.0.9".parse().unwrap()));
        let one = Network::parse("192.168.1.5").unwrap();
        assert!(one.contains("192.168.1.5".parse().unwrap()));
        assert!(!one.contains("192.168.1.6".parse().unwrap()));
        assert!(Network::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        assert!(Network::parse("::1/128")
            .unwrap()
            .contains("::1".parse().unwrap()));
        assert!(Network::parse("10.0.0.0/33").is_none());
        assert!(Network::parse("nonsense").is_none());
    }
}
