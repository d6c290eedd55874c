//! Choosing a precompressed sibling (`FILE.br`, `FILE.zst`, `FILE.gz`)
//! from a request's `Accept-Encoding` (RFC 9110 §12.5.3): q-values honoured,
//! `q=0` refusing a coding, `*` standing for the codings not named. Pure:
//! which siblings exist is the caller's business.

/// A content coding a sibling file may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Coding {
    Brotli,
    Zstd,
    Gzip,
}

impl Coding {
    /// Every coding, in the order preferred when the client weighs them alike.
    pub(crate) const ALL: [Self; 3] = [Self::Brotli, Self::Zstd, Self::Gzip];

    /// The sibling's file name suffix.
    pub(crate) fn suffix(self) -> &'static str {
        match self {
            Self::Brotli => ".br",
            Self::Zstd => ".zst",
            Self::Gzip => ".gz",
        }
    }

    /// The `Content-Encoding` token.
    pub(crate) fn token(self) -> &'static str {
        match self {
            Self::Brotli => "br",
            Self::Zstd => "zstd",
            Self::Gzip => "gzip",
        }
    }

    fn named(token: &[u8]) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|coding| token.eq_ignore_ascii_case(coding.token().as_bytes()))
            .or_else(|| token.eq_ignore_ascii_case(b"x-gzip").then_some(Self::Gzip))
    }
}

/// The codings `accept` allows, best first (q-values in thousandths,
/// ties in `Coding::ALL` order); empty when it allows none or is absent.
pub(crate) fn acceptable(accept: Option<&[u8]>) -> Vec<Coding> {
    let Some(accept) = accept else {
        return Vec::new();
    };
    let mut weights: [Option<u16>; 3] = [None; 3];
    let mut star: Option<u16> = None;
    for element in accept.split(|&byte| byte == b',') {
        let mut params = element.split(|&byte| byte == b';');
        let token = params.next().unwrap_or_default().trim_ascii();
        let mut quality = Some(1000);
        for param in params {
            let param = param.trim_ascii();
            if let Some(value) = param
                .strip_prefix(b"q=")
                .or_else(|| param.strip_prefix(b"Q="))
            {
                quality = qvalue(value.trim_ascii());
            }
        }
        // A malformed q-value makes the element say nothing.
        let Some(quality) = quality else { continue };
        if token == b"*" {
            star = Some(quality);
        } else if let Some(coding) = Coding::named(token) {
            weights[coding as usize] = Some(quality);
        }
    }
    let mut chosen: Vec<(Coding, u16)> = Coding::ALL
        .into_iter()
        .filter_map(|coding| {
            let weight = weights[coding as usize].or(star)?;
            (weight > 0).then_some((coding, weight))
        })
        .collect();
    // Stable: equal weights keep Coding::ALL's order.
    chosen.sort_by_key(|&(_, weight)| std::cmp::Reverse(weight));
    chosen.into_iter().map(|(coding, _)| coding).collect()
}

/// A qvalue (`0`, `0.5`, `1.000`) in thousandths.
fn qvalue(text: &[u8]) -> Option<u16> {
    let (whole, fraction) = match text.iter().position(|&byte| byte == b'.') {
        Some(dot) => (&text[..dot], &text[dot + 1..]),
        None => (text, &b""[..]),
    };
    if fraction.len() > 3 || !fraction.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut thousandths: u16 = 0;
    for index in 0..3 {
        let digit = fraction
            .get(index)
            .map_or(0, |digit| u16::from(digit - b'0'));
        thousandths = thousandths * 10 + digit;
    }
    match whole {
        b"0" => Some(thousandths),
        b"1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::{acceptable, Coding};

    fn pick(accept: &str) -> Vec<Coding> {
        acceptable(Some(accept.as_bytes()))
    }

    #[test]
    fn q_values_order_and_refuse() {
        use Coding::{Brotli, Gzip, Zstd};
        assert_eq!(pick("gzip, deflate, br, zstd"), vec![Brotli, Zstd, Gzip]);
        assert_eq!(pick("br;q=0, gzip"), vec![Gzip]);
        assert_eq!(pick("gzip;q=0.5, br;q=0.4"), vec![Gzip, Brotli]);
        assert_eq!(pick("*"), vec![Brotli, Zstd, Gzip]);
        assert_eq!(pick("*;q=0"), Vec::<Coding>::new());
        assert_eq!(pick("gzip, *;q=0"), vec![Gzip]);
        assert_eq!(pick("br;q=0.1, *;q=0.5"), vec![Zstd, Gzip, Brotli]);
        assert_eq!(pick("identity"), Vec::<Coding>::new());
        assert_eq!(pick("x-gzip"), vec![Gzip]);
        assert_eq!(pick("GZIP;Q=1.0"), vec![Gzip]);
        assert_eq!(pick("zstd"), vec![Zstd]);
        // Malformed q-values: the element says nothing.
        assert_eq!(
            pick("br;q=2, gzip;q=0.0001, zstd;q=abc"),
            Vec::<Coding>::new()
        );
        assert_eq!(pick(""), Vec::<Coding>::new());
        assert_eq!(acceptable(None), Vec::<Coding>::new());
    }
}
