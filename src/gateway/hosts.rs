//! Which `Host` and `Origin` headers the gateway accepts (DNS-rebinding
//! protection): loopback plus the configured names, ports ignored.
use axum::http::{HeaderMap, StatusCode, Uri, header};

/// Hosts always accepted in `Host` and `Origin` (normalized: no brackets).
pub const LOOPBACK_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// Why a request was refused by [`HostPolicy::check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub status: StatusCode,
    pub kind: &'static str,
    pub message: String,
}

impl Rejection {
    fn forbidden(message: String) -> Self {
        Self {
            status: StatusCode::FORBIDDEN,
            kind: "forbidden",
            message,
        }
    }
}

/// Which `Host` and `Origin` hosts are accepted: loopback plus the
/// configured names, compared case-insensitively, ports ignored.
#[derive(Debug, Clone)]
pub struct HostPolicy {
    hosts: Vec<String>,
}

impl HostPolicy {
    pub fn new(allowed_hosts: &[String]) -> Self {
        let mut hosts: Vec<String> = LOOPBACK_HOSTS.iter().map(|h| h.to_string()).collect();
        for entry in allowed_hosts {
            if let Some(host) = normalize_configured_host(entry)
                && !hosts.contains(&host)
            {
                hosts.push(host);
            }
        }
        Self { hosts }
    }

    /// The accepted hosts, normalized (lowercase, IPv6 without brackets).
    pub fn hosts(&self) -> &[String] {
        &self.hosts
    }

    /// Whether a `Host` header value (or request authority) is accepted.
    pub fn host_allowed(&self, authority: &str) -> bool {
        authority_host(authority).is_some_and(|h| self.hosts.contains(&h))
    }

    /// Whether an `Origin` header value is accepted: `http` or `https` with an
    /// accepted host (`null` and other schemes are refused).
    pub fn origin_allowed(&self, origin: &str) -> bool {
        let Ok(uri) = origin.trim().parse::<Uri>() else {
            return false;
        };
        let scheme_ok = matches!(uri.scheme_str(), Some(s) if s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https"));
        scheme_ok
            && uri
                .authority()
                .is_some_and(|a| self.hosts.contains(&normalize_host(a.host())))
    }

    /// Checks a request's `Host` (or, for HTTP/2, its `:authority`) and `Origin`.
    pub fn check(&self, uri: &Uri, headers: &HeaderMap) -> Result<(), Rejection> {
        let host = match headers.get(header::HOST) {
            Some(value) => value.to_str().ok().map(str::to_owned),
            None => uri.authority().map(|a| a.as_str().to_owned()),
        };
        let Some(host) = host else {
            return Err(Rejection {
                status: StatusCode::BAD_REQUEST,
                kind: "bad_request",
                message: "missing or unreadable Host header".into(),
            });
        };
        if !self.host_allowed(&host) {
            return Err(Rejection::forbidden(format!(
                "Host {host:?} is not allowed: use a loopback address or a host in the \
                 gateway's allowed hosts"
            )));
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or("<not text>");
            if !self.origin_allowed(origin) {
                return Err(Rejection::forbidden(format!(
                    "Origin {origin:?} is not allowed: only http(s) origins on a loopback \
                     address or an allowed host may call the gateway"
                )));
            }
        }
        Ok(())
    }

    /// The same hosts for rmcp's own `Host` check (portless entries match any port).
    pub fn rmcp_allowed_hosts(&self) -> Vec<String> {
        self.hosts.clone()
    }

    /// The same hosts for rmcp's own `Origin` check: `http`/`https`, any port.
    pub fn rmcp_allowed_origins(&self) -> Vec<String> {
        self.hosts
            .iter()
            .flat_map(|h| {
                let h = if h.contains(':') {
                    format!("[{h}]")
                } else {
                    h.clone()
                };
                [format!("http://{h}:*"), format!("https://{h}:*")]
            })
            .collect()
    }
}

fn normalize_host(host: &str) -> String {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase()
}

/// The host part of a `host[:port]` authority, normalized.
fn authority_host(authority: &str) -> Option<String> {
    let authority: axum::http::uri::Authority = authority.trim().parse().ok()?;
    // Userinfo has no place in a Host header.
    if authority.as_str().contains('@') {
        return None;
    }
    Some(normalize_host(authority.host()))
}

/// A configured allowed host: `name`, `name:port`, `[v6]`, `[v6]:port` or a bare `v6`.
fn normalize_configured_host(entry: &str) -> Option<String> {
    let entry = entry.trim();
    if entry.is_empty() {
        return None;
    }
    if entry.matches(':').count() > 1 && !entry.starts_with('[') {
        return Some(entry.to_ascii_lowercase()); // bare IPv6 literal
    }
    authority_host(entry).or_else(|| Some(normalize_host(entry)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn policy(extra: &[&str]) -> HostPolicy {
        HostPolicy::new(&extra.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn loopback_hosts_with_and_without_ports() {
        let p = policy(&[]);
        for host in [
            "localhost",
            "localhost:8811",
            "LOCALHOST:1",
            "127.0.0.1",
            "127.0.0.1:8811",
            "[::1]",
            "[::1]:8811",
        ] {
            assert!(p.host_allowed(host), "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:8811",
            "localhost.evil.example",
            "127.0.0.2",
            "0.0.0.0:8811",
            "user@localhost",
            "",
            "[::2]:80",
        ] {
            assert!(!p.host_allowed(host), "{host}");
        }
    }

    #[test]
    fn configured_hosts_ignore_ports_and_case() {
        let p = policy(&[
            "mcp-fleet",
            "Gateway.Example:8443",
            "[fd00::1]",
            "fd00::2",
            " ",
        ]);
        assert!(p.host_allowed("mcp-fleet:8811"));
        assert!(p.host_allowed("gateway.example"));
        assert!(p.host_allowed("gateway.example:1234"));
        assert!(p.host_allowed("[fd00::1]:8811"));
        assert!(p.host_allowed("[FD00::2]"));
        assert!(!p.host_allowed("other"));
        assert_eq!(
            p.hosts(),
            [
                "localhost",
                "127.0.0.1",
                "::1",
                "mcp-fleet",
                "gateway.example",
                "fd00::1",
                "fd00::2"
            ]
        );
    }

    #[test]
    fn origins() {
        let p = policy(&["mcp-fleet"]);
        for origin in [
            "http://localhost",
            "http://localhost:6274",
            "https://127.0.0.1:8443",
            "http://[::1]:3000",
            "http://mcp-fleet:8811",
            "HTTP://LOCALHOST",
        ] {
            assert!(p.origin_allowed(origin), "{origin}");
        }
        for origin in [
            "http://evil.example",
            "https://localhost.evil.example",
            "null",
            "file://localhost",
            "chrome-extension://abcdef",
            "localhost",
            "",
        ] {
            assert!(!p.origin_allowed(origin), "{origin}");
        }
    }

    #[test]
    fn check_host_then_origin() {
        let p = policy(&[]);
        let uri: Uri = "/mcp".parse().unwrap();
        let mut headers = HeaderMap::new();
        assert_eq!(
            p.check(&uri, &headers).unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
        // HTTP/2: no Host header, the authority is in the URI.
        let h2: Uri = "http://127.0.0.1:8811/mcp".parse().unwrap();
        assert!(p.check(&h2, &headers).is_ok());
        headers.insert(header::HOST, HeaderValue::from_static("localhost:8811"));
        assert!(p.check(&uri, &headers).is_ok());
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://evil.example"),
        );
        let r = p.check(&uri, &headers).unwrap_err();
        assert_eq!((r.status, r.kind), (StatusCode::FORBIDDEN, "forbidden"));
        assert!(r.message.contains("Origin"));
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://localhost:5173"),
        );
        assert!(p.check(&uri, &headers).is_ok());
        headers.insert(header::HOST, HeaderValue::from_static("attacker.example"));
        let r = p.check(&uri, &headers).unwrap_err();
        assert!(r.message.contains("Host"));
    }

    #[test]
    fn rmcp_lists_match_ours() {
        let p = policy(&["mcp-fleet", "[fd00::1]"]);
        assert_eq!(
            p.rmcp_allowed_hosts(),
            ["localhost", "127.0.0.1", "::1", "mcp-fleet", "fd00::1"]
        );
        let origins = p.rmcp_allowed_origins();
        assert!(origins.contains(&"http://[::1]:*".to_string()));
        assert!(origins.contains(&"https://mcp-fleet:*".to_string()));
        assert!(origins.contains(&"http://[fd00::1]:*".to_string()));
        assert_eq!(origins.len(), 10);
    }
}
