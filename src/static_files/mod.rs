//! Static files, served by the I/O side with no Python and no GIL: URL
//! prefixes mounted on folders (`--static-map`), answered before the app
//! is asked, on every protocol; and the files an app hands over with
//! `X-Accel-Redirect` / `X-Sendfile` (`--internal-map`, in `accel.rs`).
//!
//! A request under a mount that names a regular file is answered here: GET
//! and HEAD with Content-Type, Content-Length, a strong ETag, Last-Modified,
//! `Accept-Ranges`, Cache-Control (`--static-expires`, or a year and
//! `immutable` for Django's hashed names), a precompressed sibling when the
//! client accepts one (`encoding.rs`), 304 and single ranges
//! (`conditional.rs`); other methods get 405. A path that is unsafe
//! (`resolve.rs`) is a 404; one that names no file goes on to the app, or
//! is a 404 with `--static-strict`.
//!
//! Files are opened and read on the runtime's thread: the page cache
//! answers in microseconds, and a hand-off to a blocking pool would cost
//! more than the read (small files are read whole into the response's head
//! write; large ones stream in bounded chunks).

pub(crate) mod accel;
mod cache;
mod conditional;
mod encoding;
mod headers;
mod resolve;
mod siblings;

use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use http::header::{
    ACCEPT_ENCODING, ACCEPT_RANGES, ALLOW, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_RANGE,
    CONTENT_TYPE, ETAG, LAST_MODIFIED, VARY,
};
use http::{HeaderName, HeaderValue, StatusCode};

use crate::config::Config;
use crate::request::RequestHead;
use crate::response::{FileBody, Response, ResponseBody};
use cache::{ContentCache, Loaded, Source};
use conditional::{Part, Validators};
use encoding::Coding;
use resolve::{Folder, Located};
use siblings::SiblingCache;

/// Cache-Control of a name that carries its content's hash.
const IMMUTABLE: HeaderValue = HeaderValue::from_static("public, max-age=31536000, immutable");

/// The worker's mounts and their settings, built once from the config.
pub(crate) struct StaticFiles {
    /// Deepest prefix first; a prefix given twice keeps its order.
    mounts: Vec<Folder>,
    internal: Vec<Folder>,
    expires: Option<HeaderValue>,
    strict: bool,
    confine: bool,
    /// Which files have precompressed siblings, as last looked up.
    siblings: SiblingCache,
    /// Small files' bytes.
    content: ContentCache,
}

/// A regular file found under a mount, open.
struct Found<'a> {
    path: PathBuf,
    source: Source,
    metadata: Metadata,
    /// With `--static-confine`: the folder its siblings must resolve into too.
    confined_to: Option<&'a Folder>,
}

/// What opening a path under a mount gave.
// Lives on the stack for one request and is moved once: boxing the found
// file would cost an allocation per request for nothing.
#[allow(clippy::large_enum_variant)]
enum Opened<'a> {
    Found(Found<'a>),
    /// No such file (or a folder): the app's, or a 404 if strict.
    Absent,
    /// Something never served (a fifo, a link out of a confined folder): a 404.
    Refused,
}

impl<'a> Opened<'a> {
    fn found(self) -> Option<Found<'a>> {
        match self {
            Self::Found(found) => Some(found),
            Self::Absent | Self::Refused => None,
        }
    }
}

impl StaticFiles {
    /// Mount the config's `--static-map` and `--internal-map` folders.
    pub(crate) fn new(config: &Config) -> Self {
        let folders = |mounts: &[crate::config::Mount]| {
            let mut folders: Vec<Folder> = mounts
                .iter()
                .map(|mount| Folder::new(&mount.prefix, mount.folder.clone()))
                .collect();
            folders.sort_by_key(|folder| std::cmp::Reverse(folder.depth()));
            folders
        };
        Self {
            mounts: folders(&config.static_map),
            internal: folders(&config.internal_map),
            expires: config.static_expires.map(|seconds| {
                HeaderValue::from_str(&format!("public, max-age={seconds}"))
                    .expect("digits make a valid header value")
            }),
            strict: config.static_strict,
            confine: config.static_confine,
            siblings: SiblingCache::default(),
            content: ContentCache::default(),
        }
    }

    /// The answer to a request under a static mount; `None` when the app
    /// should answer (no mount matches, or no file and not strict).
    pub(crate) fn answer(&self, head: &RequestHead) -> Option<Response> {
        if self.mounts.is_empty() {
            return None;
        }
        let (path, encoded) = raw_path(head);
        let path = &*path;
        let mut under_a_mount = false;
        for folder in &self.mounts {
            match folder.locate(path, encoded) {
                Located::Elsewhere => {}
                Located::Refused => return Some(Response::plain(StatusCode::NOT_FOUND)),
                Located::Folder => under_a_mount = true,
                Located::File(path) => {
                    under_a_mount = true;
                    match self.open(folder, path) {
                        Opened::Found(found) => {
                            if !matches!(head.method(), b"GET" | b"HEAD") {
                                return Some(method_not_allowed());
                            }
                            return Some(self.serve(head, found, Handover::Static));
                        }
                        Opened::Absent => {}
                        Opened::Refused => return Some(Response::plain(StatusCode::NOT_FOUND)),
                    }
                }
            }
        }
        (under_a_mount && self.strict).then(|| Response::plain(StatusCode::NOT_FOUND))
    }

    /// Open the file `path` below `folder`, as `--static-confine` allows.
    fn open<'a>(&self, folder: &'a Folder, path: PathBuf) -> Opened<'a> {
        let confined_to = self.confine.then_some(folder);
        if confined_to.is_some_and(|folder| !folder.contains_real(&path)) {
            return if path.exists() {
                Opened::Refused
            } else {
                Opened::Absent
            };
        }
        match self.content.load(&path) {
            Loaded::File(source, metadata) => Opened::Found(Found {
                path,
                source,
                metadata,
                confined_to,
            }),
            Loaded::Absent => Opened::Absent,
            Loaded::Unservable => Opened::Refused,
        }
    }

    /// The response for a file: conditional, ranged and precompressed as
    /// the request asks. `handover` says whose headers come with it.
    fn serve(&self, head: &RequestHead, found: Found<'_>, handover: Handover) -> Response {
        let name = found
            .path
            .file_name()
            .map(|name| String::from_utf8_lossy(name.as_bytes()).into_owned())
            .unwrap_or_default();
        let siblings = self.siblings.find(&found.path, found.confined_to);
        let chosen = siblings
            .candidates(head.header(ACCEPT_ENCODING.as_str().as_bytes()))
            .into_iter()
            .find_map(|(coding, path)| match self.content.load(&path) {
                Loaded::File(source, metadata) => Some((coding, source, metadata)),
                Loaded::Absent | Loaded::Unservable => None,
            });
        let (coding, source, metadata) = match chosen {
            Some((coding, source, metadata)) => (Some(coding), source, metadata),
            None => (None, found.source, found.metadata),
        };
        let size = metadata.len();
        let validators = Validators::of(
            size,
            metadata.modified().unwrap_or(std::time::UNIX_EPOCH),
            coding.map_or("", Coding::token),
        );
        let mut headers: Vec<(HeaderName, HeaderValue)> = Vec::with_capacity(10);
        let (from_app, mut app_headers) = match handover {
            Handover::Static => (false, Vec::new()),
            Handover::App(kept) => (true, kept),
        };
        if !app_headers.iter().any(|(name, _)| name == CONTENT_TYPE) {
            headers.push((CONTENT_TYPE, header_value(&headers::content_type(&name))));
        }
        headers.append(&mut app_headers);
        if let Some(coding) = coding {
            headers.push((CONTENT_ENCODING, HeaderValue::from_static(coding.token())));
        }
        headers.push((ETAG, header_value(&validators.etag)));
        headers.push((LAST_MODIFIED, header_value(&validators.last_modified())));
        // A handed-over file's caching is the app's to say.
        if !from_app {
            if let Some(cache) = self.cache_control(&name) {
                headers.push((CACHE_CONTROL, cache));
            }
        }
        if siblings.any {
            headers.push((VARY, HeaderValue::from_static("Accept-Encoding")));
        }
        let header = |name: &HeaderName| head.header(name.as_str().as_bytes());
        if conditional::not_modified(
            header(&http::header::IF_NONE_MATCH),
            header(&http::header::IF_MODIFIED_SINCE),
            &validators,
        ) {
            headers.retain(|(name, _)| name != CONTENT_TYPE && name != CONTENT_ENCODING);
            return response(StatusCode::NOT_MODIFIED, headers, ResponseBody::Empty);
        }
        headers.push((ACCEPT_RANGES, HeaderValue::from_static("bytes")));
        match conditional::part(
            header(&http::header::RANGE),
            header(&http::header::IF_RANGE),
            &validators,
            size,
        ) {
            Part::Whole => response(StatusCode::OK, headers, body(source, 0, size)),
            Part::Range { first, last } => {
                let range = format!("bytes {first}-{last}/{size}");
                headers.push((CONTENT_RANGE, header_value(&range)));
                let part = body(source, first, last - first + 1);
                response(StatusCode::PARTIAL_CONTENT, headers, part)
            }
            Part::Unsatisfiable => {
                headers.push((CONTENT_RANGE, header_value(&format!("bytes */{size}"))));
                response(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    headers,
                    ResponseBody::Empty,
                )
            }
        }
    }
}

impl StaticFiles {
    fn cache_control(&self, name: &str) -> Option<HeaderValue> {
        if headers::is_hashed(name) {
            Some(IMMUTABLE)
        } else {
            self.expires.clone()
        }
    }
}

/// Whose response a file is.
pub(crate) enum Handover {
    /// A static mount's: the server's headers only.
    Static,
    /// The app's (`X-Accel-Redirect`): the app's headers it keeps.
    App(Vec<(HeaderName, HeaderValue)>),
}

/// `length` bytes of the file from `offset`: a slice of the bytes in
/// memory (they go out with the head), or streamed from the open file.
fn body(source: Source, offset: u64, length: u64) -> ResponseBody {
    match source {
        Source::Memory(bytes) => {
            let start = usize::try_from(offset)
                .unwrap_or(usize::MAX)
                .min(bytes.len());
            let end = usize::try_from(offset + length)
                .unwrap_or(usize::MAX)
                .min(bytes.len());
            ResponseBody::full(bytes.slice(start..end))
        }
        Source::File(mut file) => {
            if offset > 0 {
                use std::io::Seek;
                if file.seek(std::io::SeekFrom::Start(offset)).is_err() {
                    return ResponseBody::Empty;
                }
            }
            ResponseBody::File(Box::new(FileBody::new(file, length, None)))
        }
    }
}

fn response(
    status: StatusCode,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: ResponseBody,
) -> Response {
    Response {
        status,
        reason: None,
        headers,
        body,
    }
}

fn method_not_allowed() -> Response {
    let mut response = Response::plain(StatusCode::METHOD_NOT_ALLOWED);
    response
        .headers
        .push((ALLOW, HeaderValue::from_static("GET, HEAD")));
    response
}

/// A header value from text the server made (file names are lossily
/// decoded, so nothing here holds a control byte but by a bug).
fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text)
        .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"))
}

/// The request's path as the client wrote it (still percent-encoded), and
/// whether it is: the target's path for HTTP and a proxy's REQUEST_URI;
/// else SCRIPT_NAME + PATH_INFO, already decoded.
fn raw_path(head: &RequestHead) -> (std::borrow::Cow<'_, [u8]>, bool) {
    let uri = head.uri();
    let path = uri.split(|&byte| byte == b'?').next().unwrap_or_default();
    if path.starts_with(b"/") {
        return (std::borrow::Cow::Borrowed(path), true);
    }
    // Absolute form (`http://host/path`): the path after the authority.
    if let Some(after) = path.windows(3).position(|window| window == b"://") {
        let rest = &path[after + 3..];
        if let Some(slash) = rest.iter().position(|&byte| byte == b'/') {
            return (std::borrow::Cow::Borrowed(&rest[slash..]), true);
        }
    }
    let mut decoded = head.script_name().to_vec();
    decoded.extend_from_slice(head.path());
    (std::borrow::Cow::Owned(decoded), false)
}
