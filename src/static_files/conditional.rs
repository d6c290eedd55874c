//! Conditional and partial requests on a file (RFC 9110 §13 and §14), as
//! pure functions of the request's header values and the file's validators:
//! `If-None-Match` / `If-Modified-Since` decide a 304, then `Range` with
//! `If-Range` decides 206, 416 or the whole file. Reading the headers and
//! the file is left to the caller (`mod.rs`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What identifies one version of a file's bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Validators {
    /// A strong entity tag, with its quotes.
    pub etag: String,
    /// The modification time, in whole seconds since the epoch (what an
    /// HTTP date can say).
    pub modified: u64,
}

impl Validators {
    /// The validators of a file of `size` bytes modified at `mtime`; `tag`
    /// tells apart the representations of one file (a precompressed sibling's
    /// own size and time usually do already, the tag makes it certain).
    pub(crate) fn of(size: u64, mtime: SystemTime, tag: &str) -> Self {
        let since = mtime.duration_since(UNIX_EPOCH).unwrap_or_default();
        Self {
            etag: format!(
                "\"{size:x}-{:x}{}{tag}\"",
                since.as_nanos(),
                if tag.is_empty() { "" } else { "-" }
            ),
            modified: since.as_secs(),
        }
    }

    /// `Last-Modified`'s value.
    pub(crate) fn last_modified(&self) -> String {
        httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(self.modified))
    }
}

/// Whether the client's copy is current: a 304 for a GET or HEAD.
/// `If-None-Match`, when sent, decides alone (RFC 9110 §13.2.2).
pub(crate) fn not_modified(
    if_none_match: Option<&[u8]>,
    if_modified_since: Option<&[u8]>,
    validators: &Validators,
) -> bool {
    if let Some(list) = if_none_match {
        return matches_any(list, &validators.etag);
    }
    if_modified_since
        .and_then(http_date_seconds)
        .is_some_and(|since| validators.modified <= since)
}

/// Whether an `If-None-Match` list names `etag`: `*`, or any tag equal to
/// it under the weak comparison (a `W/` prefix ignored).
fn matches_any(list: &[u8], etag: &str) -> bool {
    if list.trim_ascii() == b"*" {
        return true;
    }
    let mut rest = list;
    loop {
        rest = rest.trim_ascii_start();
        while let Some(after) = rest.strip_prefix(b",") {
            rest = after.trim_ascii_start();
        }
        if rest.is_empty() {
            return false;
        }
        let unweak = rest.strip_prefix(b"W/").unwrap_or(rest);
        let Some(body) = unweak.strip_prefix(b"\"") else {
            return false;
        };
        let Some(end) = body.iter().position(|&byte| byte == b'"') else {
            return false;
        };
        let tag = &unweak[..end + 2];
        if tag == etag.as_bytes() {
            return true;
        }
        rest = &unweak[end + 2..];
    }
}

fn http_date_seconds(value: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(value).ok()?;
    let time = httpdate::parse_http_date(text.trim()).ok()?;
    Some(time.duration_since(UNIX_EPOCH).ok()?.as_secs())
}

/// How much of the file to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Part {
    /// All of it, as a 200.
    Whole,
    /// Bytes `first..=last`, as a 206.
    Range { first: u64, last: u64 },
    /// A 416 with `Content-Range: bytes */SIZE`.
    Unsatisfiable,
}

/// The part a `Range` header asks of a `size`-byte file, `If-Range` and
/// validators considered. Several ranges, a header that does not parse or
/// another unit are answered with the whole file (RFC 9110 §14.2 lets a
/// server ignore them).
pub(crate) fn part(
    range: Option<&[u8]>,
    if_range: Option<&[u8]>,
    validators: &Validators,
    size: u64,
) -> Part {
    let Some(range) = range else {
        return Part::Whole;
    };
    if let Some(condition) = if_range {
        if !if_range_holds(condition.trim_ascii(), validators) {
            return Part::Whole;
        }
    }
    let Some(spec) = parse_single_range(range) else {
        return Part::Whole;
    };
    satisfy(spec, size)
}

/// `If-Range` holds for the current strong tag, or a date equal to the
/// modification time (a weak tag never does: §13.1.5).
fn if_range_holds(condition: &[u8], validators: &Validators) -> bool {
    if condition.starts_with(b"\"") {
        return condition == validators.etag.as_bytes();
    }
    if condition.starts_with(b"W/") {
        return false;
    }
    http_date_seconds(condition) == Some(validators.modified)
}

/// One range as written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Spec {
    /// `A-B` or `A-` (`last` is `None`).
    From { first: u64, last: Option<u64> },
    /// `-N`: the last N bytes.
    Suffix(u64),
}

fn parse_single_range(value: &[u8]) -> Option<Spec> {
    let value = value.trim_ascii();
    let (unit, set) = value.split_at(value.iter().position(|&byte| byte == b'=')?);
    if !unit.trim_ascii().eq_ignore_ascii_case(b"bytes") {
        return None;
    }
    let mut specs = set[1..]
        .split(|&byte| byte == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|spec| !spec.is_empty());
    let spec = specs.next()?;
    if specs.next().is_some() {
        return None;
    }
    let dash = spec.iter().position(|&byte| byte == b'-')?;
    let (first, last) = (spec[..dash].trim_ascii(), spec[dash + 1..].trim_ascii());
    if first.is_empty() {
        return Some(Spec::Suffix(number(last)?));
    }
    let first = number(first)?;
    let last = if last.is_empty() {
        None
    } else {
        Some(number(last)?)
    };
    if last.is_some_and(|last| last < first) {
        return None;
    }
    Some(Spec::From { first, last })
}

fn number(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

fn satisfy(spec: Spec, size: u64) -> Part {
    if size == 0 {
        return Part::Unsatisfiable;
    }
    match spec {
        Spec::Suffix(0) => Part::Unsatisfiable,
        Spec::Suffix(count) => Part::Range {
            first: size.saturating_sub(count),
            last: size - 1,
        },
        Spec::From { first, .. } if first >= size => Part::Unsatisfiable,
        Spec::From { first, last } => Part::Range {
            first,
            last: last.map_or(size - 1, |last| last.min(size - 1)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::{not_modified, part, Part, Validators};
    use std::time::{Duration, UNIX_EPOCH};

    fn validators() -> Validators {
        Validators::of(1234, UNIX_EPOCH + Duration::new(1_700_000_000, 5), "")
    }

    #[test]
    fn etags_are_strong_and_tell_versions_and_codings_apart() {
        let one = validators();
        assert!(one.etag.starts_with('"') && one.etag.ends_with('"'));
        let touched = Validators::of(1234, UNIX_EPOCH + Duration::new(1_700_000_000, 6), "");
        assert_ne!(one.etag, touched.etag);
        let gzip = Validators::of(1234, UNIX_EPOCH + Duration::new(1_700_000_000, 5), "gzip");
        assert_ne!(one.etag, gzip.etag);
        assert_eq!(one.last_modified(), "Tue, 14 Nov 2023 22:13:20 GMT");
    }

    #[test]
    fn if_none_match_lists_weak_tags_and_star() {
        let v = validators();
        let tag = v.etag.clone();
        assert!(not_modified(Some(tag.as_bytes()), None, &v));
        assert!(not_modified(Some(format!("W/{tag}").as_bytes()), None, &v));
        assert!(not_modified(
            Some(format!("\"a\", W/\"b\",{tag}").as_bytes()),
            None,
            &v
        ));
        assert!(not_modified(Some(b" * "), None, &v));
        assert!(!not_modified(Some(b"\"other\""), None, &v));
        assert!(!not_modified(Some(b"garbage"), None, &v));
        assert!(!not_modified(Some(b"\"unterminated"), None, &v));
        // If-None-Match decides alone, even against a matching date.
        let date = v.last_modified();
        assert!(!not_modified(Some(b"\"other\""), Some(date.as_bytes()), &v));
    }

    #[test]
    fn if_modified_since_compares_whole_seconds() {
        let v = validators();
        let same = v.last_modified();
        assert!(not_modified(None, Some(same.as_bytes()), &v));
        assert!(not_modified(
            None,
            Some(b"Wed, 15 Nov 2023 00:00:00 GMT"),
            &v
        ));
        assert!(!not_modified(
            None,
            Some(b"Mon, 13 Nov 2023 00:00:00 GMT"),
            &v
        ));
        assert!(!not_modified(None, Some(b"yesterday"), &v));
        assert!(!not_modified(None, None, &v));
    }

    #[test]
    fn single_ranges_in_every_form() {
        let v = validators();
        let range = |text: &str| part(Some(text.as_bytes()), None, &v, 100);
        assert_eq!(range("bytes=0-9"), Part::Range { first: 0, last: 9 });
        assert_eq!(
            range("bytes=90-"),
            Part::Range {
                first: 90,
                last: 99
            }
        );
        assert_eq!(
            range("bytes=-10"),
            Part::Range {
                first: 90,
                last: 99
            }
        );
        assert_eq!(range("bytes=-500"), Part::Range { first: 0, last: 99 });
        assert_eq!(
            range("bytes=50-500"),
            Part::Range {
                first: 50,
                last: 99
            }
        );
        assert_eq!(range("Bytes = 1-2"), Part::Range { first: 1, last: 2 });
        assert_eq!(range("bytes=100-"), Part::Unsatisfiable);
        assert_eq!(range("bytes=-0"), Part::Unsatisfiable);
        assert_eq!(part(Some(b"bytes=0-0"), None, &v, 0), Part::Unsatisfiable);
        // Ignored: several ranges, bad syntax, other units.
        for ignored in [
            "bytes=0-1,5-6",
            "bytes=5-1",
            "bytes=a-b",
            "bytes=",
            "bytes=1",
            "items=0-1",
            "bytes=-",
            "bytes=+1-2",
        ] {
            assert_eq!(range(ignored), Part::Whole, "{ignored}");
        }
        assert_eq!(part(None, None, &v, 100), Part::Whole);
    }

    #[test]
    fn if_range_needs_the_current_strong_tag_or_the_exact_date() {
        let v = validators();
        let with = |condition: &str| part(Some(b"bytes=0-0"), Some(condition.as_bytes()), &v, 10);
        let hit = Part::Range { first: 0, last: 0 };
        assert_eq!(with(&v.etag.clone()), hit);
        assert_eq!(with(&v.last_modified()), hit);
        assert_eq!(with("\"stale\""), Part::Whole);
        assert_eq!(with(&format!("W/{}", v.etag)), Part::Whole);
        assert_eq!(with("Wed, 15 Nov 2023 00:00:00 GMT"), Part::Whole);
        assert_eq!(with("nonsense"), Part::Whole);
    }
}
