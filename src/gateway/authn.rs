//! Who a request comes from: every bearer token resolves to an [`Identity`],
//! in this order:
//! 1. the operator token (`MCP_GATEWAY_AUTH_TOKEN`, token file, generated):
//!    the `operator` identity, with the admin role;
//! 2. a token whose SHA-256 is in `users.yaml` ([`super::users`]);
//! 3. a JWT, when a secret or JWKS is configured ([`super::jwt`]).
//!
//! Verified JWTs are cached by the SHA-256 of the token (bounded, each entry
//! kept no longer than the token is valid nor than [`CACHE_TTL`]), so a
//! session's later requests cost a hash and a map look-up.
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::auth::Auth;
use super::jwt::{Checks, ClaimNames, JwksOrigin, Verifier};
use super::users::{self, Users};
use crate::identity::{ADMIN_ROLE, Identity};
use crate::supervise::Supervisor;

/// Longest a verified JWT is trusted without checking it again (a key
/// removed from the JWKS stops working within this).
pub const CACHE_TTL: Duration = Duration::from_secs(60);
/// Most verified tokens cached at once.
pub const CACHE_CAPACITY: usize = 4096;

/// The identity, roles and JWT options of `mcp-fleet run`.
#[derive(Debug, Clone, clap::Args)]
pub struct IdentityArgs {
    /// Users file: id, name, roles and token_sha256 per user, re-read on change
    /// [default: CONFIG_DIR/users.yaml].
    #[arg(long)]
    pub users_file: Option<PathBuf>,
    /// Accept HS256 JWTs signed with the secret in this file.
    #[arg(long, conflicts_with_all = ["jwt_jwks_file", "jwt_jwks_url"])]
    pub jwt_secret_file: Option<PathBuf>,
    /// Accept RS256/ES256 JWTs signed by a key of this JWKS file.
    #[arg(long, conflicts_with = "jwt_jwks_url")]
    pub jwt_jwks_file: Option<PathBuf>,
    /// Accept RS256/ES256 JWTs signed by a key of the JWKS at this URL.
    #[arg(long)]
    pub jwt_jwks_url: Option<String>,
    /// Seconds between JWKS refreshes (an unknown `kid` also refreshes it).
    #[arg(long, default_value_t = 300.0)]
    pub jwt_jwks_refresh: f64,
    /// Accepted `iss` (repeatable; none: any issuer).
    #[arg(long = "jwt-issuer")]
    pub jwt_issuers: Vec<String>,
    /// Accepted `aud` (repeatable; none: `aud` is not checked).
    #[arg(long = "jwt-audience")]
    pub jwt_audiences: Vec<String>,
    /// Seconds of clock skew allowed on `exp` and `nbf`.
    #[arg(long, default_value_t = 30)]
    pub jwt_leeway: u64,
    /// Claim holding the caller's id (a dotted path reaches nested claims).
    #[arg(long, default_value = "sub")]
    pub jwt_id_claim: String,
    /// Claim holding the caller's display name (else the id).
    #[arg(long, default_value = "name")]
    pub jwt_name_claim: String,
    /// Claim holding the caller's roles (a list, or one space-separated string).
    #[arg(long, default_value = "roles")]
    pub jwt_roles_claim: String,
    /// Who may use a server that requires no role: everyone, or only admins
    /// and its creator.
    #[arg(long, value_enum, default_value = "all")]
    pub default_access: super::access::DefaultAccess,
    /// Role that mcp-add/mcp-remove need to approve under `--add-policy
    /// approve` (without it they record a request).
    #[arg(long, default_value = crate::identity::ADMIN_ROLE)]
    pub manage_role: String,
}

/// Why a request is refused; `message` is shown to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    pub message: String,
}

/// Resolves bearer tokens to identities.
pub struct Authenticator {
    operator: Auth,
    operator_digest: Option<[u8; 32]>,
    users: watch::Sender<Arc<Users>>,
    users_file: Option<PathBuf>,
    jwt: Option<Verifier>,
    jwks_refresh: Duration,
    cache: TokenCache,
}

impl Authenticator {
    /// `operator` alone: no users file, no JWTs.
    pub fn operator_only(operator: Auth) -> Self {
        Self::assemble(operator, Users::default(), None, None, Duration::MAX)
    }

    /// Everything `args` asks for. The users file is read now; a bad one is
    /// logged and leaves no users until it is fixed (later, a bad one keeps
    /// the last good set).
    pub async fn new(
        operator: Auth,
        args: &IdentityArgs,
        config_dir: &Path,
    ) -> Result<Self, String> {
        let users_file = args
            .users_file
            .clone()
            .unwrap_or_else(|| config_dir.join(users::USERS_FILE));
        let users = users::load(&users_file).unwrap_or_else(|e| {
            tracing::error!(error = %e, "users file not loaded; no user token is accepted until it is fixed");
            None
        });
        let users = users.unwrap_or_default();
        let checks = Checks {
            issuers: args.jwt_issuers.clone(),
            audiences: args.jwt_audiences.clone(),
            leeway: Duration::from_secs(args.jwt_leeway),
            claims: ClaimNames {
                id: args.jwt_id_claim.clone(),
                name: args.jwt_name_claim.clone(),
                roles: args.jwt_roles_claim.clone(),
            },
        };
        let jwt = if let Some(path) = &args.jwt_secret_file {
            Some(Verifier::with_secret_file(path, checks)?)
        } else if let Some(path) = &args.jwt_jwks_file {
            Some(Verifier::with_jwks(JwksOrigin::File(path.clone()), checks).await?)
        } else if let Some(url) = &args.jwt_jwks_url {
            Some(Verifier::with_jwks(JwksOrigin::Url(url.clone()), checks).await?)
        } else {
            None
        };
        let refresh = Duration::try_from_secs_f64(args.jwt_jwks_refresh)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or("--jwt-jwks-refresh must be a positive number of seconds")?;
        Ok(Self::assemble(
            operator,
            users,
            Some(users_file),
            jwt,
            refresh,
        ))
    }

    fn assemble(
        operator: Auth,
        users: Users,
        users_file: Option<PathBuf>,
        jwt: Option<Verifier>,
        jwks_refresh: Duration,
    ) -> Self {
        let operator_digest = match &operator {
            Auth::Token(t) => Some(digest(t)),
            Auth::Disabled => None,
        };
        Authenticator {
            operator,
            operator_digest,
            users: watch::Sender::new(Arc::new(users)),
            users_file,
            jwt,
            jwks_refresh,
            cache: TokenCache::default(),
        }
    }

    /// The operator's token check (the status page's login uses it).
    pub fn operator(&self) -> &Auth {
        &self.operator
    }

    /// The users file in force; a receiver sees each change.
    pub fn users(&self) -> watch::Receiver<Arc<Users>> {
        self.users.subscribe()
    }

    /// Starts the users file watch and the JWKS refresh, under `tasks`.
    pub fn spawn_background(self: &Arc<Self>, tasks: &Supervisor, shutdown: CancellationToken) {
        if let Some(path) = &self.users_file {
            tasks.spawn(
                "users",
                users::watch(path.clone(), self.users.clone(), shutdown.clone()),
            );
        }
        if self.jwt.as_ref().is_some_and(Verifier::uses_jwks) {
            let me = self.clone();
            tasks.spawn("jwks", async move {
                let mut tick = tokio::time::interval(me.jwks_refresh);
                tick.tick().await;
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tick.tick() => {}
                    }
                    let Some(jwt) = &me.jwt else { return };
                    if let Err(e) = jwt.refresh().await {
                        tracing::warn!(error = %e, "JWKS refresh failed; the keys in hand stay in use");
                    }
                }
            });
        }
    }

    /// The identity of a request: `authorization` is its `Authorization`
    /// header value. With `--no-auth` every request is an admin.
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Arc<Identity>, Denied> {
        if self.operator == Auth::Disabled {
            return Ok(anonymous());
        }
        let denied = |message: &str| {
            Err(Denied {
                message: message.to_string(),
            })
        };
        let Some(header) = authorization else {
            return denied(
                "missing Authorization: Bearer <token> header (a browser opens /?token=<token> once)",
            );
        };
        let Some(token) = super::auth::bearer_token(header) else {
            return denied("the Authorization header must be `Bearer <token>`");
        };
        let d = digest(token);
        if self
            .operator_digest
            .is_some_and(|op| constant_time_eq(&op, &d))
        {
            return Ok(operator());
        }
        if let Some(user) = self.users.borrow().get(&d) {
            return Ok(user.clone());
        }
        if let Some(identity) = self.cache.get(&d) {
            return Ok(identity);
        }
        let Some(jwt) = &self.jwt else {
            return denied("invalid bearer token");
        };
        if token.split('.').count() != 3 {
            return denied("invalid bearer token");
        }
        match jwt.verify(token).await {
            Ok(v) => {
                let identity = Arc::new(v.identity);
                self.cache.insert(d, identity.clone(), v.expires);
                Ok(identity)
            }
            Err(message) => Err(Denied { message }),
        }
    }
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("operator", &self.operator)
            .field("users", &self.users.borrow().len())
            .field("jwt", &self.jwt.is_some())
            .finish_non_exhaustive()
    }
}

/// The identity of the operator token (one for the process: a session's
/// caller check then finds it the same by address).
pub fn operator() -> Arc<Identity> {
    static OPERATOR: LazyLock<Arc<Identity>> = LazyLock::new(|| admin("operator"));
    OPERATOR.clone()
}

/// The identity of every request under `--no-auth`.
fn anonymous() -> Arc<Identity> {
    static ANONYMOUS: LazyLock<Arc<Identity>> = LazyLock::new(|| admin("anonymous"));
    ANONYMOUS.clone()
}

fn admin(name: &str) -> Arc<Identity> {
    Arc::new(Identity::new(name, name, vec![ADMIN_ROLE.into()]))
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// Verified tokens by digest, each until it expires (bounded).
#[derive(Default)]
struct TokenCache(Mutex<HashMap<[u8; 32], Cached>>);

/// A verified token's identity, and until when it may be served.
type Cached = (Arc<Identity>, Instant);

impl TokenCache {
    fn get(&self, d: &[u8; 32]) -> Option<Arc<Identity>> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.get(d)
            .filter(|(_, until)| *until > Instant::now())
            .map(|(i, _)| i.clone())
    }

    fn insert(&self, d: [u8; 32], identity: Arc<Identity>, expires: SystemTime) {
        let left = expires
            .duration_since(SystemTime::now())
            .unwrap_or_default()
            .min(CACHE_TTL);
        let now = Instant::now();
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= CACHE_CAPACITY {
            map.retain(|_, (_, until)| *until > now);
            if map.len() >= CACHE_CAPACITY {
                map.clear(); // every entry is still valid: start over, bounded
            }
        }
        map.insert(d, (identity, now + left));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn operator_users_and_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let token = "ann-token";
        let hex: String = digest(token).iter().map(|b| format!("{b:02x}")).collect();
        std::fs::write(
            dir.path().join("users.yaml"),
            format!("users:\n  - id: ann\n    roles: [dev]\n    token_sha256: {hex}\n"),
        )
        .unwrap();
        let args = IdentityArgs {
            users_file: None,
            jwt_secret_file: None,
            jwt_jwks_file: None,
            jwt_jwks_url: None,
            jwt_jwks_refresh: 300.0,
            jwt_issuers: vec![],
            jwt_audiences: vec![],
            jwt_leeway: 30,
            jwt_id_claim: "sub".into(),
            jwt_name_claim: "name".into(),
            jwt_roles_claim: "roles".into(),
            default_access: Default::default(),
            manage_role: ADMIN_ROLE.into(),
        };
        let a = Authenticator::new(Auth::Token("op".into()), &args, dir.path())
            .await
            .unwrap();
        assert!(a.authenticate(Some("Bearer op")).await.unwrap().is_admin());
        let ann = a.authenticate(Some("Bearer ann-token")).await.unwrap();
        assert_eq!((ann.id.as_str(), ann.is_admin()), ("ann", false));
        let e = a.authenticate(Some("Bearer a.b.c")).await.unwrap_err();
        assert_eq!(e.message, "invalid bearer token");
        assert!(
            a.authenticate(None)
                .await
                .unwrap_err()
                .message
                .contains("missing")
        );
        // An invalid file at start-up: the gateway starts, with no users.
        std::fs::write(dir.path().join("users.yaml"), "users:\n  - id: ann\n").unwrap();
        let a = Authenticator::new(Auth::Token("op".into()), &args, dir.path())
            .await
            .unwrap();
        assert!(a.authenticate(Some("Bearer ann-token")).await.is_err());
        assert!(a.authenticate(Some("Bearer op")).await.is_ok());
    }

    #[test]
    fn cache_entries_end_with_the_token_and_the_cache_is_bounded() {
        let c = TokenCache::default();
        let who = operator();
        c.insert(
            [1; 32],
            who.clone(),
            SystemTime::now() - Duration::from_secs(1),
        );
        assert!(c.get(&[1; 32]).is_none(), "an expired token is not served");
        c.insert(
            [2; 32],
            who.clone(),
            SystemTime::now() + Duration::from_secs(3600),
        );
        assert!(c.get(&[2; 32]).is_some());
        for i in 0..CACHE_CAPACITY + 10 {
            let mut d = [0u8; 32];
            d[..8].copy_from_slice(&(i as u64).to_le_bytes());
            c.insert(d, who.clone(), SystemTime::now() + Duration::from_secs(60));
        }
        assert!(c.0.lock().unwrap().len() <= CACHE_CAPACITY);
    }
}
