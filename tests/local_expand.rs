//! Local recipient expansion against real files: a texthash: alias table, .forward and
//! :include: files with real owners and modes, read through a Lookups that asks the file
//! system (passwd is the test's own list, since tests cannot add accounts).

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tidemail::config::Config;
use tidemail::deliver::local::expand::{Expansion, Lookups, Target, expand};
use tidemail::deliver::local::{LocalError, Privs};
use tidemail::maps::MapList;

/// A scratch system: aliases, home directories, and the uids the files belong to. As an
/// ordinary user every file is ours, so "tom" is given our uid; as root, files are handed to
/// made-up uids so that no test runs with root's special case by accident.
struct World {
    _dir: tempfile::TempDir,
    root: PathBuf,
    cfg: Config,
    passwd: Vec<Privs>,
    aliases: MapList,
    alias_file: PathBuf,
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn tom_uid() -> u32 {
    if is_root() { 5000 } else { nix::unistd::geteuid().as_raw() }
}

fn jane_uid() -> u32 {
    tom_uid() + 1
}

fn account(name: &str, uid: u32, home: &Path) -> Privs {
    Privs { user: name.into(), uid, gid: uid, groups: vec![], home: home.into(), shell: "/bin/sh".into() }
}

/// Write a file owned by `uid` (when we can give files away) with `mode`.
fn write(path: &Path, text: &str, uid: u32, mode: u32) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    if is_root() {
        std::os::unix::fs::chown(path, Some(uid), None).unwrap();
    }
}

impl World {
    /// `aliases` in postmap text form (`name value, value`); `$DIR` stands for the scratch dir.
    fn new(aliases: &str, extra: &str) -> World {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let alias_file = root.join("aliases");
        write(&alias_file, &aliases.replace("$DIR", &root.display().to_string()), tom_uid(), 0o644);
        let text = format!(
            "myhostname = \"mail.example.com\"\nrecipient_delimiter = \"+\"\nalias_maps = [\"texthash:{}\"]\n{extra}",
            alias_file.display()
        );
        let cfg = Config::from_toml_str(&text, &root.join("tidemail.toml")).unwrap();
        let aliases = MapList::open(cfg.alias_maps()).unwrap();
        let passwd = vec![
            account("root", 0, Path::new("/root")),
            account("tom", tom_uid(), &root.join("home/tom")),
            account("jane", jane_uid(), &root.join("home/jane")),
            account("nobody", 65534, Path::new("/nonexistent")),
        ];
        for home in ["home/tom", "home/jane"] {
            fs::create_dir_all(root.join(home)).unwrap();
        }
        World { _dir: dir, root, cfg, passwd, aliases, alias_file }
    }

    fn user(&self, name: &str) -> Privs {
        self.passwd.iter().find(|p| p.user == name).unwrap().clone()
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.root.join(relative)
    }

    fn expand(&self, recipient: &str) -> Result<Expansion, LocalError> {
        expand(&self.cfg, recipient, self)
    }

    fn targets(&self, recipient: &str) -> Vec<Target> {
        let expansion = self.expand(recipient).unwrap_or_else(|e| panic!("{recipient}: {e:?}"));
        expansion.deliveries.into_iter().map(|d| d.target).collect()
    }

    fn mailbox(&self, name: &str) -> Target {
        Target::Mailbox { user: self.user(name), extension: None }
    }
}

impl Lookups for World {
    fn alias(&self, name: &str) -> Result<Option<(String, u32)>, LocalError> {
        let value = self.aliases.lookup(name).map_err(|e| LocalError::temporary("4.3.0", e.to_string()))?;
        let owner = fs::metadata(&self.alias_file).map_err(|e| LocalError::temporary("4.3.0", e.to_string()))?.uid();
        Ok(value.map(|v| (v, owner)))
    }

    fn user(&self, name: &str) -> Result<Option<Privs>, LocalError> {
        Ok(self.passwd.iter().find(|p| p.user == name).cloned())
    }

    fn user_by_uid(&self, uid: u32) -> Result<Option<Privs>, LocalError> {
        Ok(self.passwd.iter().find(|p| p.uid == uid).cloned())
    }

    fn read_file(&self, path: &Path, _as_user: Option<&Privs>) -> Result<Option<(String, u32, u32)>, LocalError> {
        let meta = match fs::metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(LocalError::temporary("4.3.0", format!("{}: {e}", path.display()))),
        };
        let text = if meta.is_file() { fs::read_to_string(path).unwrap() } else { String::new() };
        Ok(Some((text, meta.uid(), meta.mode())))
    }
}

#[test]
fn root_goes_to_root_and_tom_and_toms_forward_is_followed() {
    let world = World::new("root root, tom\npostmaster root\n", "");
    write(
        &world.path("home/tom/.forward"),
        "# keep a copy, send one on, and page me\n\\tom, tom@elsewhere.example\n\"|/usr/bin/page tom\"\n",
        tom_uid(),
        0o644,
    );
    let tom = world.user("tom");
    let expansion = world.expand("postmaster@Example.com").unwrap();
    let targets: Vec<Target> = expansion.deliveries.iter().map(|d| d.target.clone()).collect();
    assert_eq!(
        targets,
        vec![
            world.mailbox("root"),
            world.mailbox("tom"),
            Target::Forward { address: "tom@elsewhere.example".into() },
            Target::Command {
                command: "/usr/bin/page tom".into(),
                privs: tom.clone(),
                extension: None,
                user: Some(tom)
            },
        ]
    );
    assert_eq!(expansion.deliveries[1].to, "tom@example.com");
}

#[test]
fn a_forward_file_others_could_change_is_ignored() {
    let world = World::new("", "");
    let forward = world.path("home/tom/.forward");
    write(&forward, "bob@remote.example\n", tom_uid(), 0o664);
    let expansion = world.expand("tom@example.com").unwrap();
    assert_eq!(expansion.deliveries[0].target, world.mailbox("tom"));
    assert!(expansion.warnings[0].contains("writable by group or others"), "{:?}", expansion.warnings);

    fs::set_permissions(&forward, fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(world.targets("tom@example.com"), vec![Target::Forward { address: "bob@remote.example".into() }]);

    // Jane's .forward belongs to tom: not hers to trust.
    write(&world.path("home/jane/.forward"), "bob@remote.example\n", tom_uid(), 0o644);
    let expansion = world.expand("jane@example.com").unwrap();
    assert_eq!(expansion.deliveries[0].target, world.mailbox("jane"));
    assert!(expansion.warnings[0].contains("bad owner uid"), "{:?}", expansion.warnings);
}

#[test]
fn forward_with_the_extension_comes_first() {
    let world = World::new("", "");
    write(&world.path("home/tom/.forward+lists"), "\\tom\n/dev/null\n", tom_uid(), 0o600);
    write(&world.path("home/tom/.forward"), "jane\n", tom_uid(), 0o600);
    assert_eq!(
        world.targets("tom+lists@example.com"),
        vec![
            // As in Postfix, "\\tom" is a new address: the extension is not carried over.
            world.mailbox("tom"),
            Target::File { path: "/dev/null".into(), privs: world.user("tom") },
        ]
    );
    assert_eq!(world.targets("tom+other@example.com"), vec![world.mailbox("jane")]);
}

#[test]
fn include_files_and_alias_commands() {
    let world = World::new(
        "staff :include:$DIR/staff\nopen :include:$DIR/open\narchive \"|/usr/bin/archiver -q\", $DIR/archive.mbox\n",
        "allow_mail_to_files = [\"alias\", \"forward\", \"include\"]",
    );
    let log = world.path("staff.log");
    let staff = format!("# the staff\ntom\njane, bob@remote.example\n{}\n", log.display());
    write(&world.path("staff"), &staff, jane_uid(), 0o644);
    write(&world.path("open"), "tom\n", jane_uid(), 0o646);

    let targets = world.targets("staff@example.com");
    assert_eq!(
        &targets[..3],
        &[world.mailbox("tom"), world.mailbox("jane"), Target::Forward { address: "bob@remote.example".into() }]
    );
    // The alias table is tom's: files named in its include files are written as tom.
    assert_eq!(targets[3], Target::File { path: log, privs: world.user("tom") });

    let err = world.expand("open@example.com").unwrap_err();
    assert_eq!(err, LocalError::permanent("5.3.5", "mail system configuration error"));

    // Commands and files in a table tom owns run as tom.
    let tom = world.user("tom");
    assert_eq!(
        world.targets("archive@example.com"),
        vec![
            Target::Command { command: "/usr/bin/archiver -q".into(), privs: tom.clone(), extension: None, user: None },
            Target::File { path: world.path("archive.mbox"), privs: tom },
        ]
    );
}

#[test]
fn unknown_users_bounce_or_go_to_the_luser_relay() {
    let world = World::new("team tom, nosuch\n", "");
    let err = world.expand("nosuch@example.com").unwrap_err();
    assert_eq!(err, LocalError::permanent("5.1.1", "unknown user: \"nosuch\""));
    let expansion = world.expand("team@example.com").unwrap();
    assert_eq!(expansion.deliveries.len(), 1);
    assert_eq!(expansion.failures, vec![LocalError::permanent("5.1.1", "unknown user: \"nosuch\"")]);

    let world = World::new("", "luser_relay = \"catchall@relay.example\"");
    assert_eq!(world.targets("nosuch@example.com"), vec![Target::Forward { address: "catchall@relay.example".into() }]);
}

#[test]
fn a_root_owned_table_lends_default_privs_or_the_include_owners_rights() {
    if !is_root() {
        eprintln!("skipped: only root can give the alias table to root");
        return;
    }
    let world = World::new(
        "archive |/usr/bin/archiver\nstaff :include:$DIR/staff\n",
        "allow_mail_to_files = [\"alias\", \"forward\", \"include\"]",
    );
    std::os::unix::fs::chown(&world.alias_file, Some(0), None).unwrap();
    let log = world.path("staff.log");
    write(&world.path("staff"), &format!("{}\n", log.display()), jane_uid(), 0o644);
    assert_eq!(
        world.targets("archive@example.com"),
        vec![Target::Command {
            command: "/usr/bin/archiver".into(),
            privs: world.user("nobody"),
            extension: None,
            user: None
        }]
    );
    assert_eq!(world.targets("staff@example.com"), vec![Target::File { path: log, privs: world.user("jane") }]);
}
