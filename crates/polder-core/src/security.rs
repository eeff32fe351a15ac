//! Who is asking: built-in roles, privileges and the principal every request runs as.

use std::fmt;
use std::str::FromStr;

/// The built-in roles (issue "Security"): what a data team already uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Everything, including users, grants and configuration.
    Admin,
    /// Creates and changes schemas, tables and views; runs ingestion and transformations;
    /// reads all data.
    Engineer,
    /// Reads what it is granted; creates views in its own schema.
    Analyst,
    /// Opens dashboards shared with it; no direct SQL.
    Viewer,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Admin, Role::Engineer, Role::Analyst, Role::Viewer];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Engineer => "engineer",
            Role::Analyst => "analyst",
            Role::Viewer => "viewer",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                format!("unknown role '{s}'; roles are admin, engineer, analyst, viewer")
            })
    }
}

/// A privilege of `GRANT`. `All` includes the others; writes other than `INSERT` need `All`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Privilege {
    Select,
    Insert,
    All,
}

impl Privilege {
    pub fn as_str(self) -> &'static str {
        match self {
            Privilege::Select => "SELECT",
            Privilege::Insert => "INSERT",
            Privilege::All => "ALL",
        }
    }

    /// Whether holding `self` allows an action that needs `needed`.
    pub fn covers(self, needed: Privilege) -> bool {
        self == Privilege::All || self == needed
    }
}

impl fmt::Display for Privilege {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Privilege {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().as_str() {
            "SELECT" => Ok(Privilege::Select),
            "INSERT" => Ok(Privilege::Insert),
            "ALL" | "ALL PRIVILEGES" => Ok(Privilege::All),
            other => Err(format!(
                "unknown privilege '{other}'; privileges are SELECT, INSERT, ALL"
            )),
        }
    }
}

/// The user a request runs as, with the client it came from (for the audit log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user: String,
    pub role: Role,
    /// `http 127.0.0.1:50412`, `postgres ...`, `flight ...`, `cli`.
    pub client: String,
}

impl Principal {
    /// The principal of local, trusted work: the CLI on the data directory, the demo loader,
    /// and every request when authentication is off.
    pub fn system() -> Principal {
        Principal {
            user: "system".to_string(),
            role: Role::Admin,
            client: "local".to_string(),
        }
    }

    pub fn new(user: &str, role: Role, client: &str) -> Principal {
        Principal {
            user: user.to_string(),
            role,
            client: client.to_string(),
        }
    }

    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// Admins and engineers read everything and change the catalog.
    pub fn is_engineer_or_admin(&self) -> bool {
        matches!(self.role, Role::Admin | Role::Engineer)
    }

    /// Viewers only open dashboards.
    pub fn may_run_sql(&self) -> bool {
        self.role != Role::Viewer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_and_privileges_parse() {
        assert_eq!("Engineer".parse::<Role>().unwrap(), Role::Engineer);
        assert!("root".parse::<Role>().is_err());
        assert!(Privilege::All.covers(Privilege::Insert));
        assert!(!Privilege::Select.covers(Privilege::Insert));
        assert_eq!(
            "all privileges".parse::<Privilege>().unwrap(),
            Privilege::All
        );
    }
}
