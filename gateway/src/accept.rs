//! Content negotiation on the `Accept` header (RFC 9110 §12.5.1), for the one route
//! that answers both a program and a browser: the OAuth callback.

/// Whether `accept` ranks `text/html` above `application/json`.
///
/// Each of the two gets the quality of the most specific media range that matches it
/// (`text/html` before `text/*` before `*/*`); a missing header, a tie or an
/// unreadable header means JSON, the answer of the original service.
pub fn prefers_html(accept: Option<&str>) -> bool {
    let Some(accept) = accept else {
        return false;
    };
    quality(accept, "text", "html") > quality(accept, "application", "json")
}

/// The quality `accept` gives `kind/subtype`: 0 when no range matches it.
fn quality(accept: &str, kind: &str, subtype: &str) -> f32 {
    let mut best: Option<(u8, f32)> = None;
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let Some((range_kind, range_subtype)) = parts.next().and_then(|r| r.trim().split_once('/'))
        else {
            continue;
        };
        let (range_kind, range_subtype) = (range_kind.trim(), range_subtype.trim());
        let specificity = match (range_kind, range_subtype) {
            ("*", "*") => 0,
            (k, "*") if k.eq_ignore_ascii_case(kind) => 1,
            (k, s) if k.eq_ignore_ascii_case(kind) && s.eq_ignore_ascii_case(subtype) => 2,
            _ => continue,
        };
        let mut q = 1.0;
        for parameter in parts {
            if let Some((name, value)) = parameter.split_once('=')
                && name.trim().eq_ignore_ascii_case("q")
            {
                q = match value.trim().parse::<f32>() {
                    Ok(q) if (0.0..=1.0).contains(&q) => q,
                    _ => 0.0,
                };
            }
        }
        if best.is_none_or(|(most_specific, _)| specificity > most_specific) {
            best = Some((specificity, q));
        }
    }
    best.map_or(0.0, |(_, q)| q)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_browser_gets_html() {
        for accept in [
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
            "text/html",
            "TEXT/HTML",
            "text/*",
            "application/json;q=0.5, text/html",
            "text/html;level=1;q=0.9, application/json;q=0.8",
        ] {
            assert!(prefers_html(Some(accept)), "{accept}");
        }
    }

    #[test]
    fn programs_ties_and_odd_headers_get_json() {
        for accept in [
            None,
            Some("*/*"),
            Some("application/json"),
            Some("application/*"),
            Some("text/html;q=0.5, application/json"),
            Some("text/html, application/json"),
            Some("text/html;q=0, */*"),
            Some("text/plain"),
            Some(""),
            Some("garbage"),
            Some("text/html;q=2"),
        ] {
            assert!(!prefers_html(accept), "{accept:?}");
        }
    }

    #[test]
    fn the_most_specific_range_decides_not_the_highest_quality() {
        // text/html is refused outright although text/* would take it.
        assert!(!prefers_html(Some("text/*, text/html;q=0")));
        assert!(prefers_html(Some("*/*;q=0.1, text/html;q=0.2")));
    }
}
