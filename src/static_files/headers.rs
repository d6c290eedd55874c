//! The headers a file's name decides: its Content-Type, and whether it is
//! one of Django's hashed names (`app.3f2a9c1b8e7d.css`, as
//! ManifestStaticFilesStorage writes them), whose content never changes.

/// The Content-Type for a file named `name`: from its extension, with
/// `charset=utf-8` on text (browsers otherwise guess).
pub(crate) fn content_type(name: &str) -> String {
    let essence = mime_guess::from_path(name)
        .first_raw()
        .unwrap_or("application/octet-stream");
    if is_text(essence) {
        format!("{essence}; charset=utf-8")
    } else {
        essence.to_owned()
    }
}

fn is_text(essence: &str) -> bool {
    essence.starts_with("text/")
        || matches!(
            essence,
            "application/javascript" | "application/json" | "application/xml" | "image/svg+xml"
        )
}

/// Whether `name` carries a content hash before its extension: exactly 12
/// lowercase hex digits as its last-but-one dot-separated part.
pub(crate) fn is_hashed(name: &str) -> bool {
    let mut parts = name.rsplit('.');
    let (Some(_extension), Some(hash), Some(stem)) = (parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    !stem.is_empty()
        && hash.len() == 12
        && hash
            .bytes()
            .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
}

#[cfg(test)]
mod tests {
    use super::{content_type, is_hashed};

    #[test]
    fn types_and_charsets() {
        assert_eq!(content_type("a.css"), "text/css; charset=utf-8");
        assert_eq!(content_type("a.html"), "text/html; charset=utf-8");
        assert!(content_type("a.js").ends_with("javascript; charset=utf-8"));
        assert_eq!(content_type("a.json"), "application/json; charset=utf-8");
        assert_eq!(content_type("a.svg"), "image/svg+xml; charset=utf-8");
        assert_eq!(content_type("a.png"), "image/png");
        assert_eq!(content_type("a.gz"), "application/gzip");
        assert_eq!(content_type("a.unknownext"), "application/octet-stream");
        assert_eq!(content_type("noextension"), "application/octet-stream");
    }

    #[test]
    fn hashed_names_are_django_s_twelve_hex_digits() {
        assert!(is_hashed("app.3f2a9c1b8e7d.css"));
        assert!(is_hashed("app.css.3f2a9c1b8e7d.map"));
        assert!(!is_hashed("app.3f2a9c1b8e7.css"), "11 digits");
        assert!(!is_hashed("app.3f2a9c1b8e7d0.css"), "13 digits");
        assert!(!is_hashed("app.3F2A9C1B8E7D.css"), "upper case");
        assert!(!is_hashed("3f2a9c1b8e7d.css"), "no stem");
        assert!(!is_hashed("app.css"));
    }
}
