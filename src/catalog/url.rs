//! Remote URLs may carry credentials (user info, a token in the query or the
//! fragment). Every message that names a remote server's URL is built here,
//! so that none of those parts ever reaches a log line, the status or an error.
use std::collections::BTreeMap;
use std::fmt;

use super::secrets::Secret;

/// A remote server's URL. It prints (`Display`, `Debug`) only its redacted
/// form; the whole URL is [`RemoteUrl::expose`]d to the HTTP client alone.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct RemoteUrl(Secret);

impl RemoteUrl {
    pub fn new(url: impl Into<String>) -> Self {
        RemoteUrl(Secret::new(url))
    }

    /// The whole URL, credentials included: for the HTTP client only.
    pub fn expose(&self) -> &str {
        self.0.expose()
    }
}

impl fmt::Display for RemoteUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_url(self.expose()))
    }
}

impl fmt::Debug for RemoteUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", redact_url(self.expose()))
    }
}

/// The URL without user info, query or fragment.
fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        }
        Err(_) => "(unparsable url)".to_string(),
    }
}

const MIN_SECRET_LEN: usize = 4;

/// The parts of `url` that may be secret: user name, password, every query
/// value and the fragment.
fn secret_parts(url: &str) -> Vec<String> {
    let Ok(u) = reqwest::Url::parse(url) else {
        return vec![url.to_string()];
    };
    let mut parts: Vec<String> = vec![u.username().to_string()];
    parts.extend(u.password().map(str::to_string));
    parts.extend(u.fragment().map(str::to_string));
    if let Some(query) = u.query() {
        parts.push(query.to_string());
        for pair in query.split('&') {
            parts.push(pair.split_once('=').map_or(pair, |(_, v)| v).to_string());
        }
    }
    // Too short to be a credential, and replacing it would garble the message
    // (a query `x=1` would eat every "1"); whole-URL quotes are replaced anyway.
    parts.retain(|p| p.len() >= MIN_SECRET_LEN);
    // Longest first, so a value inside the query is not left half-replaced.
    parts.sort_by_key(|p| std::cmp::Reverse(p.len()));
    parts
}

/// `message` with `url` shown redacted and every secret part of it removed
/// wherever a library quoted it (raw, or as its own URL serialisation).
pub fn redact_in(message: &str, url: &RemoteUrl) -> String {
    let url = url.expose();
    let mut out = message.replace(url, &redact_url(url));
    if let Ok(u) = reqwest::Url::parse(url) {
        out = out.replace(u.as_str(), &redact_url(url));
    }
    for part in secret_parts(url) {
        out = out.replace(&part, "<redacted>");
    }
    out
}

/// Why a remote server could not be reached, in words a person can act on:
/// the redacted URL, without the transport's type names, and without any of
/// the entry's header values, should the server have quoted one back.
pub fn remote_failure(url: &RemoteUrl, headers: &BTreeMap<String, Secret>, raw: &str) -> String {
    let mut out = plain_failure(url, raw);
    for value in headers.values() {
        let value = value.expose();
        // The whole value, and its credential alone (`Bearer <token>`).
        let token = value.rsplit(' ').next().unwrap_or(value);
        for part in [value, token] {
            if part.len() >= MIN_SECRET_LEN {
                out = out.replace(part, "<redacted>");
            }
        }
    }
    out
}

fn plain_failure(url: &RemoteUrl, raw: &str) -> String {
    let at = url.to_string();
    if raw.contains("error sending request") || raw.contains("tcp connect error") {
        return format!(
            "cannot reach {at}: the HTTP request got no answer (is the server running, and the URL right?)"
        );
    }
    format!(
        "{} (server at {at})",
        without_type_names(&redact_in(raw, url))
    )
}

/// Drops rmcp's `Transport [<rust type>] error:` framing from a message.
pub fn without_type_names(message: &str) -> String {
    let mut out = message.to_string();
    while let Some(start) = out.find("Transport [") {
        let Some(len) = out[start..].find("] error: ") else {
            break;
        };
        out.replace_range(start..start + len + "] error: ".len(), "");
    }
    out.replace("Send message error ", "")
}

#[cfg(test)]
mod tests {
    use super::*;

    const RAW: &str = "https://someone:pass-word@example.com/mcp?token=abc123&x=1#frag";

    fn url() -> RemoteUrl {
        RemoteUrl::new(RAW)
    }

    #[test]
    fn the_url_loses_its_credentials() {
        assert_eq!(url().to_string(), "https://example.com/mcp");
        assert_eq!(format!("{:?}", url()), "\"https://example.com/mcp\"");
        assert_eq!(url().expose(), RAW);
        assert_eq!(RemoteUrl::new("not a url").to_string(), "(unparsable url)");
    }

    #[test]
    fn messages_lose_every_secret_part() {
        let raw = format!(
            "error sending request for url ({RAW}); token=abc123 again; https://example.com/mcp?token=abc123&x=1#frag"
        );
        let out = redact_in(&raw, &url());
        for secret in ["abc123", "pass-word", "frag", "someone"] {
            assert!(!out.contains(secret), "{secret} in {out}");
        }
        assert!(out.contains("https://example.com/mcp"), "{out}");
        assert!(redact_in("at 127.0.0.1:9 x=1", &url()).contains("127.0.0.1:9 x=1"));
    }

    #[test]
    fn remote_failures_are_plain() {
        let raw = format!(
            "MCP handshake failed: Send message error Transport [mcp_fleet::upstream::inbound::Tap] error: Client error: error sending request for url ({RAW}), when send initialize request"
        );
        let none = BTreeMap::new();
        let out = remote_failure(&url(), &none, &raw);
        assert_eq!(
            out,
            "cannot reach https://example.com/mcp: the HTTP request got no answer (is the server running, and the URL right?)"
        );
        let other = remote_failure(
            &url(),
            &none,
            "Send message error Transport [a::b::C<d::E>] error: unexpected status 401 for https://example.com/mcp?token=abc123",
        );
        assert!(
            !other.contains("abc123") && !other.contains("a::b"),
            "{other}"
        );
        assert!(other.contains("unexpected status 401"), "{other}");
    }

    #[test]
    fn header_values_quoted_back_are_removed() {
        let headers = BTreeMap::from([
            ("Authorization".to_string(), Secret::new("Bearer tok-1234")),
            ("X-Key".to_string(), Secret::new("key-5678")),
        ]);
        let raw = "HTTP 500: bad token tok-1234 (Bearer tok-1234), key key-5678";
        let out = remote_failure(&url(), &headers, raw);
        assert_eq!(
            out,
            "HTTP 500: bad token <redacted> (<redacted>), key <redacted> (server at https://example.com/mcp)"
        );
    }
}
