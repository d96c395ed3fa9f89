//! Secret values from an env file (`mcp.env`: `KEY=value` a line). Values are
//! held in a type whose `Debug` never shows them, so they cannot leak through
//! logs or error messages by accident.
use std::collections::BTreeMap;
use std::fmt;

#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secrets(BTreeMap<String, String>);

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
                Some((k.trim().to_string(), unquote(v.trim()).to_string()))
            })
            .collect();
        Secrets(map)
    }

    /// A catalog secret is looked up by its env var name (PocketCoder's
    /// `mcp.env`), then by its catalog name (Docker's `slack.bot_token=` form).
    pub fn lookup(&self, env: &str, name: &str) -> Option<&str> {
        self.0
            .get(env)
            .or_else(|| self.0.get(name))
            .map(String::as_str)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
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
        assert_eq!(s.get("FETCH_TOKEN"), Some("abc"));
        assert_eq!(s.get("B"), Some("x y"));
        assert_eq!(s.lookup("SLACK_BOT_TOKEN", "slack.bot_token"), Some("t"));
        assert_eq!(s.lookup("FETCH_TOKEN", "fetch.token"), Some("abc"));
        assert_eq!(s.get("bad line"), None);
    }

    #[test]
    fn debug_never_shows_values() {
        let s = Secrets::parse("TOKEN=hunter2\n");
        let shown = format!("{s:?}");
        assert!(shown.contains("TOKEN"));
        assert!(!shown.contains("hunter2"));
    }
}
