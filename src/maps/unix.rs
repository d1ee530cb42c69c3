//! `unix:passwd.byname` and `unix:group.byname`: the system's users and groups (through NSS,
//! so /etc/passwd, LDAP or whatever nsswitch.conf says), as Postfix's unix: table.
//!
//! Results have the /etc/passwd and /etc/group layouts:
//! `name:passwd:uid:gid:gecos:dir:shell` and `name:passwd:gid:member,member`. Keys are folded
//! to lower case like every exact table. A failing NSS lookup is Unavailable.

use std::sync::Arc;

use nix::unistd::{Group, User};

use super::source;
use super::{Map, MapError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Passwd,
    Group,
}

#[derive(Debug)]
struct Unix {
    spec: String,
    which: Which,
}

pub fn open(spec: &str, name: &str) -> Result<Arc<dyn Map>, MapError> {
    let which = match name {
        "passwd.byname" => Which::Passwd,
        "group.byname" => Which::Group,
        _ => return Err(MapError::UnknownType(format!("{spec} (unix: knows passwd.byname and group.byname)"))),
    };
    Ok(Arc::new(Unix { spec: spec.to_string(), which }))
}

impl Map for Unix {
    fn spec(&self) -> &str {
        &self.spec
    }

    fn lookup(&self, key: &str) -> Result<Option<String>, MapError> {
        let key = source::fold(key);
        // getpwnam would misread a NUL; no such name exists.
        if key.is_empty() || key.contains('\0') {
            return Ok(None);
        }
        let fail = |e: nix::Error| MapError::unavailable(&self.spec, e);
        Ok(match self.which {
            Which::Passwd => User::from_name(&key).map_err(fail)?.map(|u| {
                format!(
                    "{}:{}:{}:{}:{}:{}:{}",
                    u.name,
                    u.passwd.to_string_lossy(),
                    u.uid,
                    u.gid,
                    u.gecos.to_string_lossy(),
                    u.dir.display(),
                    u.shell.display()
                )
            }),
            Which::Group => Group::from_name(&key)
                .map_err(fail)?
                .map(|g| format!("{}:{}:{}:{}", g.name, g.passwd.to_string_lossy(), g.gid, g.mem.join(","))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_user_and_group() {
        let t = open("unix:passwd.byname", "passwd.byname").unwrap();
        let root = t.lookup("Root").unwrap().unwrap();
        assert!(root.starts_with("root:"), "{root}");
        let fields: Vec<&str> = root.split(':').collect();
        assert_eq!(fields.len(), 7, "{root}");
        assert_eq!((fields[2], fields[3]), ("0", "0"));
        assert_eq!(t.lookup("no-such-user-tidemail").unwrap(), None);
        let t = open("unix:group.byname", "group.byname").unwrap();
        let root = t.lookup("root").unwrap().unwrap();
        assert!(root.starts_with("root:") && root.split(':').nth(2) == Some("0"), "{root}");
    }

    #[test]
    fn unknown_table() {
        assert!(matches!(open("unix:shadow", "shadow"), Err(MapError::UnknownType(_))));
    }
}
