//! Bearer-token authentication for the gateway's HTTP endpoints.
//!
//! The token is never logged: `Debug` redacts it, and the only place it is
//! ever printed is [`resolve`] announcing a freshly generated token on stderr
//! (once, by design, so the operator can hand it to clients).

use std::fmt;
use std::io::Write;
use std::path::Path;

use axum::http::Method;
use sha2::{Digest, Sha256};

/// The environment variable Docker's MCP gateway reads its token from; kept.
pub const TOKEN_ENV: &str = "MCP_GATEWAY_AUTH_TOKEN";

/// Random bytes in a generated token (256 bits, printed as 64 hex digits).
const GENERATED_TOKEN_BYTES: usize = 32;

/// How requests to the gateway are authenticated.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    /// Every request (except `/health`) must carry `Authorization: Bearer <token>`.
    Token(String),
    /// `--no-auth`: no token is required.
    Disabled,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::Token(_) => f.write_str("Auth::Token(<redacted>)"),
            Auth::Disabled => f.write_str("Auth::Disabled"),
        }
    }
}

impl Auth {
    /// Whether an `Authorization` header value grants access. Always true when
    /// auth is disabled. The token comparison takes constant time.
    pub fn allows(&self, authorization: Option<&str>) -> bool {
        match self {
            Auth::Disabled => true,
            Auth::Token(expected) => authorization
                .and_then(bearer_token)
                .is_some_and(|presented| tokens_match(presented, expected)),
        }
    }
}

/// The token from an `Authorization: Bearer <token>` header value (the scheme
/// is case-insensitive, RFC 9110 section 11.1), or `None` for any other form.
pub fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, rest) = authorization.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = rest.trim();
    (!token.is_empty()).then_some(token)
}

/// The cookie the status page's login (`GET /?token=…`) sets. It holds a
/// digest of the token, never the token itself.
pub const COOKIE: &str = "mcp_fleet_page";

/// Where the page cookie stands in for the bearer header: read-only GETs of the
/// status page, its event stream and the server logs. Never `/mcp`, `/sse` or
/// anything that acts, so a cookie cannot be used to call tools.
pub fn cookie_allowed(method: &Method, path: &str) -> bool {
    method == Method::GET
        && (matches!(path, "/" | "/status" | "/status/events") || path.starts_with("/servers/"))
}

impl Auth {
    /// The cookie value that a browser presents after logging in with `token`.
    pub fn page_cookie(token: &str) -> String {
        let digest = Sha256::digest(format!("mcp-fleet page\0{token}").as_bytes());
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Whether the page cookie (from a `Cookie` header value) grants access.
    pub fn allows_cookie(&self, cookie_header: Option<&str>) -> bool {
        match self {
            Auth::Disabled => true,
            Auth::Token(expected) => cookie_header
                .and_then(|h| cookie_value(h, COOKIE))
                .is_some_and(|v| tokens_match(v, &Self::page_cookie(expected))),
        }
    }

    /// Whether a bare token (the page login's `?token=`) is the gateway's.
    pub fn allows_token(&self, token: &str) -> bool {
        match self {
            Auth::Disabled => true,
            Auth::Token(expected) => tokens_match(token, expected),
        }
    }
}

/// The value of cookie `name` in a `Cookie` header value.
fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
}

/// `token` from a URL query (percent-decoded), for the page login.
pub fn query_token(query: &str) -> Option<String> {
    let raw = query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == "token")?
        .1;
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok().filter(|t| !t.is_empty())
}

/// Compares two tokens in time independent of where they differ and of their
/// lengths: both are hashed to fixed-size digests, which are compared without
/// an early exit.
pub fn tokens_match(presented: &str, expected: &str) -> bool {
    let a = Sha256::digest(presented.as_bytes());
    let b = Sha256::digest(expected.as_bytes());
    constant_time_eq(&a, &b)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // black_box keeps the optimiser from turning the fold into an early exit.
    std::hint::black_box(diff) == 0
}

/// Resolves the gateway's authentication, in this order:
/// 1. `no_auth` (`--no-auth`): [`Auth::Disabled`];
/// 2. `MCP_GATEWAY_AUTH_TOKEN`, when set and non-empty;
/// 3. the trimmed content of `token_file`, when given (unreadable or empty is an error);
/// 4. a freshly generated random token (256 bits, hex), printed once on stderr.
pub fn resolve(token_file: Option<&Path>, no_auth: bool) -> Result<Auth, String> {
    let env = std::env::var(TOKEN_ENV).ok();
    resolve_from(env.as_deref(), token_file, no_auth, &mut std::io::stderr())
}

/// [`resolve`] with the environment value and the announcement sink passed in.
fn resolve_from(
    env: Option<&str>,
    token_file: Option<&Path>,
    no_auth: bool,
    announce: &mut dyn Write,
) -> Result<Auth, String> {
    if no_auth {
        return Ok(Auth::Disabled);
    }
    if let Some(token) = env.map(str::trim).filter(|t| !t.is_empty()) {
        return validated(token, TOKEN_ENV).map(Auth::Token);
    }
    if let Some(path) = token_file {
        let content = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read token file {}: {e}", path.display()))?;
        let token = content.trim();
        if token.is_empty() {
            return Err(format!("token file {} is empty", path.display()));
        }
        return validated(token, &format!("token file {}", path.display())).map(Auth::Token);
    }
    let token = generate_token()?;
    // The one place a secret is printed, by design: the operator needs it.
    // Not through tracing, so it never lands in structured logs.
    writeln!(
        announce,
        "mcp-fleet: generated gateway token: {token} (set {TOKEN_ENV} or use a token file to choose one)"
    )
    .map_err(|e| format!("cannot print the generated token: {e}"))?;
    Ok(Auth::Token(token))
}

/// A token must fit in an `Authorization` header: visible ASCII, no spaces.
fn validated(token: &str, source: &str) -> Result<String, String> {
    if token.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(token.to_owned())
    } else {
        Err(format!(
            "the token from {source} contains whitespace or non-ASCII characters; \
             it could not be sent in an Authorization header"
        ))
    }
}

fn generate_token() -> Result<String, String> {
    random_hex(GENERATED_TOKEN_BYTES)
}

/// `bytes` random bytes from the operating system's CSPRNG, as lowercase hex.
pub(crate) fn random_hex(bytes: usize) -> Result<String, String> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| format!("no randomness from the OS: {e}"))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_cookie_and_query_token() {
        let auth = Auth::Token("s3cret&x".into());
        assert_eq!(
            query_token("a=1&token=s3cret%26x").as_deref(),
            Some("s3cret&x")
        );
        assert_eq!(query_token("token="), None);
        assert_eq!(query_token("token=%zz"), None);
        assert!(auth.allows_token("s3cret&x"));
        assert!(!auth.allows_token("s3cret"));
        let cookie = Auth::page_cookie("s3cret&x");
        assert!(!cookie.contains("s3cret"));
        assert!(auth.allows_cookie(Some(&format!("other=1; {COOKIE}={cookie}"))));
        assert!(!auth.allows_cookie(Some(&format!("{COOKIE}={}", Auth::page_cookie("x")))));
        assert!(!auth.allows_cookie(None));
        assert!(cookie_allowed(&Method::GET, "/status/events"));
        assert!(cookie_allowed(&Method::GET, "/servers/fetch/logs"));
        assert!(!cookie_allowed(&Method::POST, "/"));
        assert!(!cookie_allowed(&Method::GET, "/mcp"));
        assert!(!cookie_allowed(&Method::GET, "/sse"));
    }

    fn resolve_quiet(
        env: Option<&str>,
        file: Option<&Path>,
        no_auth: bool,
    ) -> (Result<Auth, String>, String) {
        let mut out = Vec::new();
        let r = resolve_from(env, file, no_auth, &mut out);
        (r, String::from_utf8(out).unwrap())
    }

    #[test]
    fn no_auth_wins_over_everything() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "from-file").unwrap();
        let (r, out) = resolve_quiet(Some("from-env"), Some(&file), true);
        assert_eq!(r.unwrap(), Auth::Disabled);
        assert!(out.is_empty());
    }

    #[test]
    fn env_wins_over_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "from-file").unwrap();
        let (r, out) = resolve_quiet(Some(" from-env\n"), Some(&file), false);
        assert_eq!(r.unwrap(), Auth::Token("from-env".into()));
        assert!(out.is_empty());
    }

    #[test]
    fn empty_env_falls_through_to_trimmed_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "  from-file\n\n").unwrap();
        let (r, out) = resolve_quiet(Some(""), Some(&file), false);
        assert_eq!(r.unwrap(), Auth::Token("from-file".into()));
        assert!(out.is_empty());
        let (r, _) = resolve_quiet(Some("  "), Some(&file), false);
        assert_eq!(r.unwrap(), Auth::Token("from-file".into()));
    }

    #[test]
    fn missing_or_empty_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let (r, _) = resolve_quiet(None, Some(&missing), false);
        assert!(r.unwrap_err().contains("cannot read token file"));
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let (r, _) = resolve_quiet(None, Some(&empty), false);
        assert!(r.unwrap_err().contains("is empty"));
    }

    #[test]
    fn token_with_inner_whitespace_is_rejected() {
        let (r, _) = resolve_quiet(Some("two words"), None, false);
        let err = r.unwrap_err();
        assert!(err.contains(TOKEN_ENV), "{err}");
        assert!(!err.contains("two words"), "error must not echo the token");
    }

    #[test]
    fn generated_token_is_random_and_announced_once() {
        let (r1, out1) = resolve_quiet(None, None, false);
        let (r2, _) = resolve_quiet(None, None, false);
        let Auth::Token(t1) = r1.unwrap() else {
            panic!("expected a token")
        };
        let Auth::Token(t2) = r2.unwrap() else {
            panic!("expected a token")
        };
        assert_eq!(t1.len(), 64);
        assert!(t1.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(t1, t2);
        assert_eq!(out1.lines().count(), 1);
        assert!(out1.starts_with("mcp-fleet: generated gateway token: "));
        assert!(out1.contains(&t1));
    }

    #[test]
    fn debug_redacts_the_token() {
        let auth = Auth::Token("s3cret-value".into());
        let shown = format!("{auth:?} {auth:#?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("redacted"));
        assert_eq!(format!("{:?}", Auth::Disabled), "Auth::Disabled");
    }

    #[test]
    fn token_comparison() {
        assert!(tokens_match("abc", "abc"));
        assert!(!tokens_match("abc", "abd"));
        assert!(!tokens_match("abc", "abcd"));
        assert!(!tokens_match("", "abc"));
        assert!(constant_time_eq(b"", b""));
        assert!(!constant_time_eq(b"a", b"ab"));
    }

    #[test]
    fn bearer_header_parsing() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("BEARER abc"), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer"), None);
        assert_eq!(bearer_token("Bearer   "), None);
        assert_eq!(bearer_token("abc"), None);
    }

    #[test]
    fn allows() {
        let auth = Auth::Token("tok".into());
        assert!(auth.allows(Some("Bearer tok")));
        assert!(!auth.allows(Some("Bearer nope")));
        assert!(!auth.allows(Some("tok")));
        assert!(!auth.allows(None));
        assert!(Auth::Disabled.allows(None));
    }
}
