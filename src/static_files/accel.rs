//! `X-Accel-Redirect` and `X-Sendfile` from the app, as nginx's `internal`
//! locations and Apache's mod_xsendfile honour them: an app (django-sendfile2,
//! Werkzeug's `use_x_sendfile`) checks permissions, then names a file under
//! an `--internal-map` folder and lets the server send it. The app's
//! Content-Type, Content-Disposition, Cache-Control, Expires and Set-Cookie
//! are kept; its body is dropped (which closes its iterable) and the file's
//! own length, ETag and Last-Modified are sent, with ranges and conditional
//! requests as for any static file. Without `--internal-map` the headers
//! pass untouched (a real nginx may be in front).

use std::path::Path;

use http::header::{CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_TYPE, EXPIRES, SET_COOKIE};
use http::{HeaderName, StatusCode};

use super::resolve::Located;
use super::{Found, Handover, StaticFiles};
use crate::log;
use crate::request::RequestHead;
use crate::response::Response;

const X_ACCEL_REDIRECT: HeaderName = HeaderName::from_static("x-accel-redirect");
const X_SENDFILE: HeaderName = HeaderName::from_static("x-sendfile");

/// The app's headers that come with the file it hands over.
const KEPT: [HeaderName; 5] = [
    CONTENT_TYPE,
    CONTENT_DISPOSITION,
    CACHE_CONTROL,
    EXPIRES,
    SET_COOKIE,
];

/// What the app asked for.
enum Handed<'a> {
    /// A URL path under an internal prefix.
    Redirect(&'a [u8]),
    /// A filesystem path inside an internal folder.
    Sendfile(&'a [u8]),
}

impl StaticFiles {
    /// The response to send for the app's `response`: the file it names in
    /// `X-Accel-Redirect` / `X-Sendfile`, or the response as it is.
    pub(crate) fn hand_over(&self, head: &RequestHead, response: Response) -> Response {
        if self.internal.is_empty() {
            return response;
        }
        let Some(handed) = response.headers.iter().find_map(|(name, value)| {
            if *name == X_ACCEL_REDIRECT {
                Some(Handed::Redirect(value.as_bytes()))
            } else if *name == X_SENDFILE {
                Some(Handed::Sendfile(value.as_bytes()))
            } else {
                None
            }
        }) else {
            return response;
        };
        let found = match handed {
            Handed::Redirect(target) => self.internal_file(target),
            Handed::Sendfile(path) => self.sendfile_path(path),
        };
        let Some(found) = found else {
            log::warning(&format!(
                "{}: the app handed over a file that is not in an --internal-map folder, or does not exist ({}); answering 404",
                head.describe(),
                describe(&response)
            ));
            return Response::plain(StatusCode::NOT_FOUND);
        };
        let kept = response
            .headers
            .into_iter()
            .filter(|(name, _)| KEPT.contains(name))
            .collect();
        // The app's body (and with it its iterable) is dropped here.
        drop(response.body);
        self.serve(head, found, Handover::App(kept))
    }

    fn internal_file(&self, target: &[u8]) -> Option<Found<'_>> {
        let path = target
            .split(|&byte| byte == b'?')
            .next()
            .unwrap_or_default();
        self.internal
            .iter()
            .find_map(|folder| match folder.locate(path, true) {
                Located::File(path) => self.open(folder, path).found(),
                _ => None,
            })
    }

    fn sendfile_path(&self, path: &[u8]) -> Option<Found<'_>> {
        use std::os::unix::ffi::OsStrExt;
        let path = Path::new(std::ffi::OsStr::from_bytes(path.trim_ascii()));
        self.internal
            .iter()
            .filter(|folder| folder.holds_path(path))
            .find_map(|folder| self.open(folder, path.to_path_buf()).found())
    }
}

fn describe(response: &Response) -> String {
    response
        .headers
        .iter()
        .find(|(name, _)| *name == X_ACCEL_REDIRECT || *name == X_SENDFILE)
        .map(|(name, value)| format!("{name}: {}", String::from_utf8_lossy(value.as_bytes())))
        .unwrap_or_default()
}
