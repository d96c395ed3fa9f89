//! JWT bearer tokens (with the `jsonwebtoken` crate): HS256/384/512 with a
//! shared secret from a file, or RS*/PS*/ES256/ES384 with public keys from a
//! JWKS file or URL. `exp` is required; `exp`, `nbf`, `iss` and `aud` are
//! checked with a small leeway. Which claims give the caller's id, name and
//! roles is configurable (a dotted path reaches into nested claims, e.g.
//! `realm_access.roles`).
//!
//! A JWKS is fetched with a deadline, kept, refreshed periodically, and
//! re-read at once (at most every [`MIN_REFETCH`]) when a token names a `kid`
//! it does not hold: a rotated key is picked up without a restart.
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use crate::identity::Identity;

/// The fastest a JWKS is fetched again because of an unknown `kid`.
pub const MIN_REFETCH: Duration = Duration::from_secs(10);
/// Deadline of one JWKS fetch.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest JWKS document read.
const MAX_JWKS_BYTES: usize = 1 << 20;

const HMAC: [Algorithm; 3] = [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];
const PUBLIC: [Algorithm; 8] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
];

/// Where a JWKS comes from.
#[derive(Debug, Clone)]
pub enum JwksOrigin {
    File(PathBuf),
    Url(String),
}

/// Claims that make the identity.
#[derive(Debug, Clone)]
pub struct ClaimNames {
    pub id: String,
    pub name: String,
    pub roles: String,
}

/// What a token must satisfy besides its signature.
#[derive(Debug, Clone)]
pub struct Checks {
    pub issuers: Vec<String>,
    pub audiences: Vec<String>,
    pub leeway: Duration,
    pub claims: ClaimNames,
}

enum Keys {
    Secret(DecodingKey),
    Jwks(Jwks),
}

/// Keys by `kid`, each with the one algorithm it is for, if the JWKS says.
type KeyMap = HashMap<String, (DecodingKey, Option<Algorithm>)>;

struct Jwks {
    origin: JwksOrigin,
    client: reqwest::Client,
    /// Keys by `kid` (`""` for a key without one), with their algorithm if fixed.
    keys: RwLock<Arc<KeyMap>>,
    fetched: Mutex<Option<Instant>>,
    /// One fetch at a time; the others wait for its result.
    fetching: tokio::sync::Mutex<()>,
}

/// Verifies JWTs and turns their claims into identities.
pub struct Verifier {
    keys: Keys,
    checks: Checks,
}

/// A verified token: who, and until when it may be trusted.
pub struct Verified {
    pub identity: Identity,
    pub expires: SystemTime,
}

impl Verifier {
    /// HS256 (and HS384/512) with the secret in `path` (trimmed).
    pub fn with_secret_file(path: &std::path::Path, checks: Checks) -> Result<Self, String> {
        let secret = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read JWT secret file {}: {e}", path.display()))?;
        let secret = secret.trim();
        if secret.len() < 32 {
            return Err(format!(
                "JWT secret file {} holds {} bytes; use at least 32 (256 bits)",
                path.display(),
                secret.len()
            ));
        }
        Ok(Verifier {
            keys: Keys::Secret(DecodingKey::from_secret(secret.as_bytes())),
            checks,
        })
    }

    /// RS*/PS*/ES* with the public keys of a JWKS, fetched now (a failure is
    /// logged and retried when a token needs the keys).
    pub async fn with_jwks(origin: JwksOrigin, checks: Checks) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .build()
            .map_err(|e| format!("cannot make an HTTP client for the JWKS: {e}"))?;
        let jwks = Jwks {
            origin,
            client,
            keys: RwLock::default(),
            fetched: Mutex::new(None),
            fetching: tokio::sync::Mutex::new(()),
        };
        if let Err(e) = jwks.refresh().await {
            tracing::warn!(error = %e, "JWKS not loaded yet; it is fetched again when a token needs it");
        }
        Ok(Verifier {
            keys: Keys::Jwks(jwks),
            checks,
        })
    }

    /// Re-reads the JWKS (a no-op for a shared secret); for the periodic refresh.
    pub async fn refresh(&self) -> Result<(), String> {
        match &self.keys {
            Keys::Secret(_) => Ok(()),
            Keys::Jwks(j) => j.refresh().await,
        }
    }

    pub fn uses_jwks(&self) -> bool {
        matches!(self.keys, Keys::Jwks(_))
    }

    /// Verifies `token`; the error says why in words a person can act on,
    /// never quoting the token.
    pub async fn verify(&self, token: &str) -> Result<Verified, String> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| "the bearer token is not a valid JWT".to_string())?;
        let alg = header.alg;
        let key = match &self.keys {
            Keys::Secret(key) => {
                if !HMAC.contains(&alg) {
                    return Err(format!(
                        "token algorithm {alg:?} is not accepted (expected HS256)"
                    ));
                }
                key.clone()
            }
            Keys::Jwks(jwks) => {
                if !PUBLIC.contains(&alg) {
                    return Err(format!(
                        "token algorithm {alg:?} is not accepted (expected RS256 or ES256)"
                    ));
                }
                jwks.key(header.kid.as_deref(), alg).await?
            }
        };
        let claims = jsonwebtoken::decode::<Value>(token, &key, &self.validation(alg))
            .map_err(|e| reason(e.kind()))?
            .claims;
        self.identity(&claims)
    }

    fn validation(&self, alg: Algorithm) -> Validation {
        let mut v = Validation::new(alg);
        v.leeway = self.checks.leeway.as_secs();
        v.validate_nbf = true;
        v.set_required_spec_claims(&["exp"]);
        if self.checks.audiences.is_empty() {
            v.validate_aud = false;
        } else {
            v.set_audience(&self.checks.audiences);
        }
        if !self.checks.issuers.is_empty() {
            v.set_issuer(&self.checks.issuers);
        }
        v
    }

    fn identity(&self, claims: &Value) -> Result<Verified, String> {
        let names = &self.checks.claims;
        let id = match claim(claims, &names.id) {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => {
                return Err(format!(
                    "the token has no `{}` claim (the caller's id)",
                    names.id
                ));
            }
        };
        let name = match claim(claims, &names.name) {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => id.clone(),
        };
        let roles = match claim(claims, &names.roles) {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|r| r.as_str().map(str::to_string))
                .collect(),
            Some(Value::String(s)) => s
                .split([' ', ','])
                .filter(|r| !r.is_empty())
                .map(str::to_string)
                .collect(),
            _ => Vec::new(),
        };
        let exp = claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
        Ok(Verified {
            identity: Identity::new(id, name, roles),
            expires: UNIX_EPOCH + Duration::from_secs(exp) + self.checks.leeway,
        })
    }
}

/// A claim by a dotted path (`realm_access.roles`); a top-level claim whose
/// name holds dots (e.g. a URL-named claim) wins.
fn claim<'a>(claims: &'a Value, path: &str) -> Option<&'a Value> {
    claims
        .get(path)
        .or_else(|| path.split('.').try_fold(claims, |v, part| v.get(part)))
}

fn reason(kind: &ErrorKind) -> String {
    match kind {
        ErrorKind::ExpiredSignature => "the token has expired".into(),
        ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)".into(),
        ErrorKind::InvalidAudience => "the token's audience (aud) is not accepted here".into(),
        ErrorKind::InvalidIssuer => "the token's issuer (iss) is not accepted here".into(),
        ErrorKind::InvalidSignature => "the token's signature does not verify".into(),
        ErrorKind::InvalidAlgorithm => "the token's algorithm does not match its key".into(),
        ErrorKind::MissingRequiredClaim(c) => format!("the token has no `{c}` claim"),
        ErrorKind::InvalidClaimFormat(c) => format!("the token's `{c}` claim is malformed"),
        _ => "the bearer token is not a valid JWT".into(),
    }
}

impl Jwks {
    /// The key for `kid`; an unknown one triggers a (rate-limited) refetch.
    async fn key(&self, kid: Option<&str>, alg: Algorithm) -> Result<DecodingKey, String> {
        if let Some(k) = self.lookup(kid, alg) {
            return Ok(k);
        }
        let due = self
            .fetched
            .lock()
            .expect("jwks lock")
            .is_none_or(|t| t.elapsed() >= MIN_REFETCH);
        if due {
            let _one = self.fetching.lock().await;
            // Another request may have fetched while this one waited.
            if let Some(k) = self.lookup(kid, alg) {
                return Ok(k);
            }
            if let Err(e) = self.refresh().await {
                tracing::warn!(error = %e, "JWKS refresh for an unknown key failed");
                return Err(format!("the token's signing key is not available: {e}"));
            }
        }
        self.lookup(kid, alg).ok_or_else(|| match kid {
            Some(_) => "the token's key id (kid) is not in the JWKS".to_string(),
            None => format!("no key in the JWKS fits a token without a kid ({alg:?})"),
        })
    }

    fn lookup(&self, kid: Option<&str>, alg: Algorithm) -> Option<DecodingKey> {
        let keys = self.keys.read().expect("jwks lock").clone();
        let fits = |(key, fixed): &(DecodingKey, Option<Algorithm>)| {
            fixed.is_none_or(|a| a == alg).then(|| key.clone())
        };
        match kid {
            Some(kid) => keys.get(kid).and_then(fits),
            None if keys.len() == 1 => keys.values().next().and_then(fits),
            None => keys.get("").and_then(fits),
        }
    }

    async fn refresh(&self) -> Result<(), String> {
        *self.fetched.lock().expect("jwks lock") = Some(Instant::now());
        let text = match &self.origin {
            JwksOrigin::File(path) => tokio::fs::read_to_string(path)
                .await
                .map_err(|e| format!("cannot read JWKS file {}: {e}", path.display()))?,
            JwksOrigin::Url(url) => self.fetch(url).await?,
        };
        let set: JwkSet =
            serde_json::from_str(&text).map_err(|e| format!("the JWKS is not valid: {e}"))?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let alg = jwk
                .common
                .key_algorithm
                .and_then(|a| Algorithm::try_from(a).ok());
            match DecodingKey::from_jwk(jwk) {
                Ok(k) => {
                    keys.insert(jwk.common.key_id.clone().unwrap_or_default(), (k, alg));
                }
                Err(e) => tracing::warn!(kid = ?jwk.common.key_id, error = %e,
                    "JWKS key skipped: not usable"),
            }
        }
        tracing::debug!(keys = keys.len(), "JWKS loaded");
        *self.keys.write().expect("jwks lock") = Arc::new(keys);
        Ok(())
    }

    async fn fetch(&self, url: &str) -> Result<String, String> {
        let shown = crate::catalog::url::RemoteUrl::new(url).to_string();
        let response = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| format!("cannot fetch JWKS from {shown}: {}", plain(&e)))?;
        if !response.status().is_success() {
            return Err(format!("JWKS {shown} answered {}", response.status()));
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| format!("cannot read JWKS from {shown}: {}", plain(&e)))?;
        if bytes.len() > MAX_JWKS_BYTES {
            return Err(format!(
                "JWKS {shown} is larger than {MAX_JWKS_BYTES} bytes"
            ));
        }
        String::from_utf8(bytes.to_vec()).map_err(|_| format!("JWKS {shown} is not UTF-8"))
    }
}

/// A reqwest error in words, without the URL it carries.
fn plain(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "no answer in time"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_by_dotted_path() {
        let c = serde_json::json!({"sub": "u1", "realm_access": {"roles": ["a"]}, "x.y": 1});
        assert_eq!(
            claim(&c, "realm_access.roles"),
            Some(&serde_json::json!(["a"]))
        );
        assert_eq!(claim(&c, "x.y"), Some(&serde_json::json!(1)));
        assert_eq!(claim(&c, "nope.no"), None);
    }
}
