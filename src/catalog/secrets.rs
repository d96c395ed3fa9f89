//! Secret values from an env file (`mcp.env`: `KEY=value` a line), and the
//! [`Secret`] type that holds them (and every other value that may carry one)
//! from the moment they are read until they are handed to the engine or the
//! HTTP client.
use std::collections::BTreeMap;
use std::fmt;

/// A value that must never be printed: its `Debug` shows `<redacted>`, it has
/// no `Display` and no `Serialize`. [`Secret::expose`] is called only where
/// the value leaves mcp-fleet on purpose: a container's env or command
/// (`runtime::docker`; `runtime::kubernetes` puts them in a Kubernetes
/// Secret), an HTTP request's headers or URL (`upstream`), and
/// the spec hash (a digest); and where a server's stderr is searched for it,
/// to redact it (`controller::logbuf`).
#[derive(Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value itself, for the engine or the HTTP client only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secrets(BTreeMap<String, Secret>);

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl Secrets {
    /// Parses `KEY=value` lines. Blank lines and `#` comments are skipped, an
    /// optional `export ` prefix is allowed, and one level of matching single
    /// or double quotes around the value is removed.
    pub fn parse(text: &str) -> Self {
        let map = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter_map(|l| {
                let l = l.strip_prefix("export ").unwrap_or(l);
                let (k, v) = l.split_once('=')?;
                Some((k.trim().to_string(), Secret::new(unquote(v.trim()))))
            })
            .collect();
        Secrets(map)
    }

    /// A catalog secret is looked up by its env var name (PocketCoder's
    /// `mcp.env`), then by its catalog name (Docker's `slack.bot_token=` form).
    pub fn lookup(&self, env: &str, name: &str) -> Option<&Secret> {
        self.0.get(env).or_else(|| self.0.get(name))
    }

    pub fn get(&self, key: &str) -> Option<&Secret> {
        self.0.get(key)
    }
}

fn unquote(v: &str) -> &str {
    for q in ['"', '\''] {
        if let Some(inner) = v.strip_prefix(q).and_then(|s| s.strip_suffix(q)) {
            return inner;
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_env_file_forms() {
        let s = Secrets::parse(
            "# comment\nFETCH_TOKEN=abc\nexport B = \"x y\"\nslack.bot_token='t'\n\nbad line\n",
        );
        let get = |k: &str| s.get(k).map(Secret::expose);
        assert_eq!(get("FETCH_TOKEN"), Some("abc"));
        assert_eq!(get("B"), Some("x y"));
        assert_eq!(get("bad line"), None);
        let lookup = |env: &str, name: &str| s.lookup(env, name).map(Secret::expose);
        assert_eq!(lookup("SLACK_BOT_TOKEN", "slack.bot_token"), Some("t"));
        assert_eq!(lookup("FETCH_TOKEN", "fetch.token"), Some("abc"));
    }

    #[test]
    fn debug_never_shows_values() {
        let s = Secrets::parse("TOKEN=hunter2\n");
        let shown = format!("{s:?}");
        assert!(shown.contains("TOKEN"));
        assert!(!shown.contains("hunter2"));
        let one = Secret::new("hunter2");
        assert_eq!(
            format!("{one:?} {:?}", Some(&one)),
            "<redacted> Some(<redacted>)"
        );
    }
}
