//! What the app answered, in a form no protocol owns: the direct HTTP path
//! and the uwsgi path encode it straight from the header list
//! `start_response` made, and only hyper's connections convert it to hyper's
//! types (building a header map per response was a measurable cost).

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Response, StatusCode};

use super::output::ResponseBody;

/// A response head and body, as the app (or the server, for errors) gave it.
pub(crate) struct AppResponse {
    pub status: StatusCode,
    /// Set only when the app's reason phrase differs from the standard one.
    pub reason: Option<Bytes>,
    /// In the app's order, repeated names kept.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: ResponseBody,
}

impl AppResponse {
    /// A plain-text response the server makes itself (errors).
    pub(crate) fn plain(status: StatusCode, close: bool) -> Self {
        let text = format!("{}\n", status.canonical_reason().unwrap_or("Error"));
        let mut headers = vec![(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )];
        if close {
            headers.push((http::header::CONNECTION, HeaderValue::from_static("close")));
        }
        Self {
            status,
            reason: None,
            headers,
            body: ResponseBody::full(Bytes::from(text)),
        }
    }

    /// The reason phrase to send: the app's own, or the standard one.
    pub(crate) fn reason_phrase(&self) -> &[u8] {
        self.reason.as_deref().unwrap_or_else(|| {
            self.status
                .canonical_reason()
                .unwrap_or("Unknown")
                .as_bytes()
        })
    }

    /// Whether the app set a header of this name.
    pub(crate) fn has_header(&self, name: &HeaderName) -> bool {
        self.headers.iter().any(|(known, _)| known == name)
    }

    /// hyper's form, for connections hyper serves.
    pub(crate) fn into_http(self) -> Response<ResponseBody> {
        let mut response = Response::new(self.body);
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.reserve(self.headers.len());
        for (name, value) in self.headers {
            headers.append(name, value);
        }
        if let Some(reason) = self.reason {
            if let Ok(reason) = hyper::ext::ReasonPhrase::try_from(reason) {
                response.extensions_mut().insert(reason);
            }
        }
        response
    }
}
