//! Who a request is made on behalf of. Lives below every other module so the
//! gateway (which resolves it) and the upstream pool (which forwards it to
//! remote servers) share one type without importing each other.

/// The role that may do anything: every server, every management tool.
pub const ADMIN_ROLE: &str = "mcp.admin";

/// A resolved caller: a stable id, a display name and the roles it holds.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Identity {
    pub id: String,
    pub name: String,
    pub roles: Vec<String>,
}

impl Identity {
    pub fn new(id: impl Into<String>, name: impl Into<String>, roles: Vec<String>) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
            roles,
        }
    }

    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    pub fn is_admin(&self) -> bool {
        self.has_role(ADMIN_ROLE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_is_a_role_like_any_other() {
        let user = Identity::new("u1", "Ann", vec!["dev".into()]);
        assert!(user.has_role("dev") && !user.is_admin());
        let op = Identity::new("operator", "operator", vec![ADMIN_ROLE.into()]);
        assert!(op.is_admin());
    }
}
