//! Which web pages may open a WebSocket (`[server] allowed_origins`), decided from the
//! upgrade request's `Origin` and `Host` headers.
//!
//! Browsers let any page open a WebSocket to any address, the user's cookies and network
//! position included; the `Origin` header they attach (and a page cannot forge) is the only
//! sign of which page asked. Clients that are not browsers send no `Origin` and are never
//! refused here: they are not the page-driven attacker this check stops. Pure code.

/// The `allowed_origins` policy, parsed once at startup.
#[derive(Debug, Clone, Default)]
pub(crate) struct OriginPolicy {
    /// `"*"` was listed: every origin is allowed.
    any: bool,
    /// The listed origins; empty (and not `any`) means the request's own host and loopback.
    listed: Vec<Origin>,
}

/// An origin as a browser serializes it (`scheme://host[:port]`), with the port made explicit
/// so `https://a.example` and `https://a.example:443` compare equal.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin {
    https: bool,
    /// Lowercase; an IPv6 address keeps its brackets (`[::1]`).
    host: String,
    port: u16,
    /// The port was written out rather than implied by the scheme.
    explicit_port: bool,
}

impl OriginPolicy {
    /// Parses `allowed_origins`; fails with the entry that is neither `"*"` nor an origin.
    pub(crate) fn new(entries: &[String]) -> Result<Self, String> {
        let mut policy = OriginPolicy::default();
        for entry in entries {
            if entry == "*" {
                policy.any = true;
            } else {
                let origin = Origin::parse(entry).ok_or_else(|| {
                    format!(
                        "{entry:?} is not an origin: write scheme://host[:port] with scheme \
                         http or https and no path, such as \"https://app.example.com\""
                    )
                })?;
                policy.listed.push(origin);
            }
        }
        Ok(policy)
    }

    /// Whether a request whose `Origin` header is `origin` may upgrade. `host` is the
    /// request's `Host` header, used only when no origins are listed. An origin that does not
    /// parse (`null` from sandboxed pages and `file://`) is refused unless `"*"` is listed.
    pub(crate) fn allows(&self, origin: &str, host: Option<&str>) -> bool {
        if self.any {
            return true;
        }
        let Some(origin) = Origin::parse(origin) else {
            return false;
        };
        if !self.listed.is_empty() {
            return self.listed.contains(&origin);
        }
        origin.is_loopback() || host.is_some_and(|host| origin.is_host(host))
    }
}

impl Origin {
    fn parse(text: &str) -> Option<Origin> {
        let (scheme, authority) = text.split_once("://")?;
        let https = match scheme.to_ascii_lowercase().as_str() {
            "http" => false,
            "https" => true,
            _ => return None,
        };
        let (host, port) = split_authority(authority)?;
        let default_port = if https { 443 } else { 80 };
        Some(Origin {
            https,
            host,
            port: port.unwrap_or(default_port),
            explicit_port: port.is_some_and(|p| p != default_port),
        })
    }

    fn is_loopback(&self) -> bool {
        matches!(self.host.as_str(), "localhost" | "127.0.0.1" | "[::1]")
    }

    /// Whether this origin names the host and port of a `Host` header. Without a port there,
    /// the origin must not name one either (the request came on its scheme's default port).
    fn is_host(&self, host: &str) -> bool {
        match split_authority(host) {
            Some((name, Some(port))) => name == self.host && port == self.port,
            Some((name, None)) => name == self.host && !self.explicit_port,
            None => false,
        }
    }
}

/// `host[:port]` (the host lowercased, an IPv6 address in brackets), refusing paths, user
/// info and anything else an origin or a `Host` header cannot hold.
fn split_authority(authority: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = if authority.starts_with('[') {
        let end = authority.find(']')?;
        let (host, rest) = authority.split_at(end + 1);
        let inside = &host[1..host.len() - 1];
        if inside.is_empty()
            || !inside
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        {
            return None;
        }
        match rest {
            "" => (host, None),
            _ => (host, Some(rest.strip_prefix(':')?)),
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let plain = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '.';
    if host.is_empty() || (!host.starts_with('[') && !host.chars().all(plain)) {
        return None;
    }
    let port = match port {
        None => None,
        Some(digits) if !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()) => {
            Some(digits.parse().ok()?)
        }
        Some(_) => return None,
    };
    Some((host.to_ascii_lowercase(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(entries: &[&str]) -> OriginPolicy {
        let entries: Vec<String> = entries.iter().map(|e| (*e).to_owned()).collect();
        OriginPolicy::new(&entries).unwrap()
    }

    #[test]
    fn by_default_the_own_host_and_loopback_are_allowed() {
        let p = policy(&[]);
        assert!(p.allows("http://app.example.com:3000", Some("app.example.com:3000")));
        assert!(p.allows("https://App.Example.com", Some("app.example.com")));
        assert!(p.allows("http://app.example.com", Some("app.example.com:80")));
        assert!(p.allows("http://localhost:5173", Some("app.example.com")));
        assert!(p.allows("https://127.0.0.1:1", None));
        assert!(p.allows("http://[::1]:8080", Some("[::1]:3000")));
        assert!(!p.allows("https://evil.example", Some("app.example.com")));
        assert!(!p.allows("http://app.example.com:3001", Some("app.example.com:3000")));
        assert!(!p.allows("http://app.example.com:8080", Some("app.example.com")));
        assert!(!p.allows(
            "http://app.example.com.evil.example",
            Some("app.example.com")
        ));
        assert!(!p.allows("http://evil.example", None));
        assert!(!p.allows("null", Some("app.example.com")));
        assert!(!p.allows("file://", Some("app.example.com")));
        assert!(!p.allows("http://localhost.evil.example", Some("app.example.com")));
    }

    #[test]
    fn a_list_replaces_the_default() {
        let p = policy(&["https://app.example.com", "http://10.0.0.7:8080"]);
        assert!(p.allows("https://app.example.com", Some("internal:3000")));
        assert!(p.allows("https://app.example.com:443", None));
        assert!(p.allows("http://10.0.0.7:8080", None));
        assert!(!p.allows("http://app.example.com", Some("app.example.com")));
        assert!(!p.allows("http://localhost:3000", Some("localhost:3000")));
        assert!(!p.allows("http://10.0.0.7", None));
    }

    #[test]
    fn a_star_allows_any_origin() {
        let p = policy(&["https://app.example.com", "*"]);
        assert!(p.allows("https://evil.example", Some("app.example.com")));
        assert!(p.allows("null", None));
    }

    #[test]
    fn entries_that_are_not_origins_are_refused() {
        for bad in [
            "app.example.com",
            "https://app.example.com/",
            "https://app.example.com/path",
            "ws://app.example.com",
            "https://user@app.example.com",
            "https://app.example.com:99999",
            "https://app.example.com:",
            "https://",
            "null",
            "https://[nothex]",
        ] {
            let error = OriginPolicy::new(&[bad.to_owned()]).unwrap_err();
            assert!(error.contains(bad), "{bad}: {error}");
        }
    }
}
