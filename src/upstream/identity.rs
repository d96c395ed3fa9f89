//! Who a remote upstream is told it is called for: the headers a per-user
//! session sends (`X-Mcp-UserId`, `X-Mcp-UserName`, `X-Mcp-Roles` and, when
//! configured, a shared secret so the upstream can trust them).
//!
//! Only these and the catalog entry's own headers are ever sent: the gateway
//! never forwards a client's headers, so a client's `Authorization`, `Cookie`,
//! `X-CSRF-Token` or a spoofed `X-Mcp-UserId` cannot reach an upstream. A
//! catalog header with one of the names set here is replaced, never doubled
//! (other `X-Mcp-*` catalog headers, e.g. GitHub's `X-MCP-Toolsets`, stay).
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use crate::catalog::Secret;
use crate::identity::Identity;

pub const USER_ID: &str = "X-Mcp-UserId";
pub const USER_NAME: &str = "X-Mcp-UserName";
pub const ROLES: &str = "X-Mcp-Roles";
/// Carries the shared secret of `--upstream-identity-secret-file`.
pub const SECRET: &str = "X-Mcp-Gateway-Secret";

/// The shared secret sent to remote upstreams; `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct SharedSecret(Arc<str>);

impl fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedSecret(<redacted>)")
    }
}

impl SharedSecret {
    /// Reads the secret from `path` (surrounding whitespace trimmed). The
    /// error names the file, never its content.
    pub fn read(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let secret = text.trim();
        if secret.is_empty() {
            return Err(format!("{} is empty", path.display()));
        }
        if !secret.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!(
                "{} must hold one line of printable ASCII without spaces (it is sent as a header value)",
                path.display()
            ));
        }
        Ok(SharedSecret(secret.into()))
    }
}

/// The headers of a remote session: the catalog entry's own, then, for a
/// user's session, who the user is, then the shared secret if configured.
/// The listing session (no identity) carries no user headers.
/// Every value is held as a [`Secret`] until the HTTP client sends it.
pub fn headers(
    catalog: &BTreeMap<String, Secret>,
    identity: Option<&Identity>,
    secret: Option<&SharedSecret>,
) -> BTreeMap<String, Secret> {
    let ours = [USER_ID, USER_NAME, ROLES, SECRET];
    let mut out: BTreeMap<String, Secret> = catalog
        .iter()
        .filter(|(k, _)| !ours.iter().any(|o| o.eq_ignore_ascii_case(k)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if let Some(who) = identity {
        out.insert(USER_ID.into(), Secret::new(encode(&who.id, false)));
        out.insert(USER_NAME.into(), Secret::new(encode(&who.name, false)));
        let roles: Vec<String> = who.roles.iter().map(|r| encode(r, true)).collect();
        out.insert(ROLES.into(), Secret::new(roles.join(",")));
    }
    if let Some(secret) = secret {
        out.insert(SECRET.into(), Secret::new(&*secret.0));
    }
    out
}

/// A header value for any text: UTF-8, percent-encoded outside printable
/// ASCII (and `%` itself; `,` too inside a role, the list separator), so a
/// name like `José` or a crafted `a\r\nX: y` arrives as one plain value.
fn encode(text: &str, in_list: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        let plain = (b' '..=b'~').contains(&b) && b != b'%' && !(in_list && b == b',');
        if plain {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog(pairs: &[(&str, &str)]) -> BTreeMap<String, Secret> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Secret::new(*v)))
            .collect()
    }

    #[test]
    fn a_users_session_says_who_it_is_for_over_the_catalogs_own_headers() {
        let who = Identity::new("u1", "Ann", vec!["dev".into(), "ops".into()]);
        let secret = SharedSecret("s3cret".into());
        let cat = catalog(&[
            ("Authorization", "Bearer upstream-key"),
            ("x-mcp-userid", "forged"),
            ("X-MCP-Toolsets", "repos"),
        ]);
        let h: BTreeMap<_, _> = headers(&cat, Some(&who), Some(&secret))
            .into_iter()
            .map(|(k, v)| (k, v.expose().to_string()))
            .collect();
        assert_eq!(h["Authorization"], "Bearer upstream-key");
        assert_eq!(h["X-MCP-Toolsets"], "repos");
        assert_eq!(h[USER_ID], "u1");
        assert_eq!(h[USER_NAME], "Ann");
        assert_eq!(h[ROLES], "dev,ops");
        assert_eq!(h[SECRET], "s3cret");
        assert!(!h.contains_key("x-mcp-userid"), "replaced, not doubled");
        assert_eq!(h.len(), 6);
    }

    #[test]
    fn the_listing_session_carries_no_user() {
        let h = headers(&catalog(&[("X-Mcp-Roles", "admin")]), None, None);
        assert!(h.is_empty(), "{h:?}");
    }

    #[test]
    fn any_text_becomes_one_header_value() {
        assert_eq!(encode("José", false), "Jos%C3%A9");
        assert_eq!(encode("a\r\nX: y", false), "a%0D%0AX: y");
        assert_eq!(encode("100%", false), "100%25");
        assert_eq!(encode("a,b", true), "a%2Cb");
        assert_eq!(encode("a,b", false), "a,b");
        for v in ["Jos%C3%A9", "a%0D%0AX: y"] {
            assert!(reqwest::header::HeaderValue::from_str(v).is_ok());
        }
    }

    #[test]
    fn the_secret_is_read_trimmed_and_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "  k3y-material\n").unwrap();
        let s = SharedSecret::read(&path).unwrap();
        assert_eq!(&*s.0, "k3y-material");
        assert!(!format!("{s:?}").contains("k3y"));
        std::fs::write(&path, "two words").unwrap();
        let e = SharedSecret::read(&path).unwrap_err();
        assert!(!e.contains("words"), "{e}");
        std::fs::write(&path, "\n").unwrap();
        assert!(SharedSecret::read(&path).is_err());
    }
}
