//! Object name rules of the API server: names of namespaced custom resources and
//! Leases must be DNS subdomains (RFC 1123), as `k8s.io/apimachinery/pkg/util/validation`
//! `IsDNS1123Subdomain` checks them.

/// Why `name` is no valid DNS subdomain, in the API server's words; `None` when it is.
pub fn subdomain_problem(name: &str) -> Option<&'static str> {
    const TOO_LONG: &str = "must be no more than 253 characters";
    const SHAPE: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
    if name.len() > 253 {
        return Some(TOO_LONG);
    }
    let label_ok = |label: &str| {
        let bytes = label.as_bytes();
        let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        !bytes.is_empty()
            && bytes.first().is_some_and(alnum)
            && bytes.last().is_some_and(alnum)
            && bytes.iter().all(|b| alnum(b) || *b == b'-')
    };
    if name.split('.').all(label_ok) {
        None
    } else {
        Some(SHAPE)
    }
}

#[cfg(test)]
mod tests {
    use super::subdomain_problem;

    #[test]
    fn dns_subdomains_pass_and_everything_else_is_named() {
        for good in ["concierge", "team-a", "a.b-c.d", "x1"] {
            assert_eq!(subdomain_problem(good), None, "{good}");
        }
        for bad in ["", "Concierge", "-a", "a-", "a..b", "a_b", &"a".repeat(254)] {
            assert!(subdomain_problem(bad).is_some(), "{bad}");
        }
    }
}
