//! Who may use a server, kept with its approval: the roles it requires and
//! who created it. Written the same way as an approval:
//!
//! - in `registry.yaml`, on the server's entry:
//!   `fetch: {ref: "", required_roles: [dev], creator: ann}`;
//! - for catalog-only approval, on the catalog entry under the extension key
//!   [`EXTENSION_KEY`] (`x-mcp-fleet: {required_roles: [dev], creator: ann}`),
//!   which Docker's own tools ignore like any key they do not know.
//!
//! A registry entry's keys win over the catalog's. The rule itself (who may
//! use what) is the gateway's; this is only the data.
use serde::Deserialize;
use serde_json::Value;

use super::REGISTRY_FILE;
use crate::identity::ADMIN_ROLE;

/// The catalog entry key that holds mcp-fleet's own settings.
pub const EXTENSION_KEY: &str = "x-mcp-fleet";

/// One server's access rule. No required roles means "everyone" or "no one
/// but admins and the creator", as `--default-access` says.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccessRule {
    pub required_roles: Vec<String>,
    pub creator: Option<String>,
}

impl AccessRule {
    /// For an entry whose rule cannot be read: admins only (fail closed).
    pub fn admins_only() -> Self {
        AccessRule {
            required_roles: vec![ADMIN_ROLE.to_string()],
            creator: None,
        }
    }
}

/// The rule of server `name`: the catalog's extension, overridden key by key
/// by its `registry.yaml` entry. `Err` says what is wrong with the entry.
pub fn rule(
    name: &str,
    catalog: Option<&AccessRule>,
    registry_entry: Option<&Value>,
) -> Result<AccessRule, String> {
    let mut rule = catalog.cloned().unwrap_or_default();
    let Some(Value::Object(entry)) = registry_entry else {
        return Ok(rule);
    };
    let bad = |what: &str| {
        format!(
            "{REGISTRY_FILE}: server `{name}`: {what}; only admins may use it until this is fixed"
        )
    };
    match entry.get("required_roles") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            rule.required_roles = items
                .iter()
                .map(|r| r.as_str().map(str::to_string))
                .collect::<Option<_>>()
                .ok_or_else(|| bad("`required_roles` must be a list of role names"))?;
        }
        Some(_) => return Err(bad("`required_roles` must be a list of role names")),
    }
    match entry.get("creator") {
        None | Some(Value::Null) => {}
        Some(Value::String(c)) => rule.creator = Some(c.clone()),
        Some(_) => return Err(bad("`creator` must be a user id")),
    }
    Ok(rule)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn registry_keys_win_over_the_catalog_extension() {
        let cat = AccessRule {
            required_roles: vec!["dev".into()],
            creator: Some("ann".into()),
        };
        let r = rule(
            "s",
            Some(&cat),
            Some(&json!({"ref": "", "required_roles": ["ops"]})),
        )
        .unwrap();
        assert_eq!(r.required_roles, vec!["ops".to_string()]);
        assert_eq!(r.creator.as_deref(), Some("ann"));
        assert_eq!(rule("s", Some(&cat), None).unwrap(), cat);
        assert_eq!(
            rule("s", None, Some(&json!({"ref": ""}))).unwrap(),
            AccessRule::default()
        );
        let e = rule("s", None, Some(&json!({"required_roles": "dev"}))).unwrap_err();
        assert!(e.contains("registry.yaml: server `s`"), "{e}");
    }
}
