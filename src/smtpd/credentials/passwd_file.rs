//! smtpd_sasl_type = passwd-file: `user:hash` lines, as Dovecot's passwd-file and htpasswd
//! write them (further `:fields` after the hash, Dovecot's uid/gid/home..., are ignored).
//!
//! The file is read again when it changes (mtime, size, inode) and its mode is checked at
//! every login, so a `chmod` takes effect at once. Refused when other users may read or write
//! it, or when its group may write it. Group *read* is allowed: the daemon reads the file after
//! dropping root to mail_owner, and the usual layout is root-owned, mode 0640, group
//! mail_owner's (as Dovecot's own files are root:dovecot 0640).

use std::collections::HashMap;
use std::fs::File;
use std::io::Read as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;

use super::Check;
use super::hash::StoredHash;
use crate::mail_warning;

/// Compared against when the user is unknown and the file has no usable hash at all, so that
/// a login still costs a hash (bcrypt, cost 10, of "x").
const FALLBACK_DUMMY: &str = "$2b$10$i.ERQsnnEiQkbksSWeIZUOiiZL7tjleGIs5qjlzeeevI5RX9T64WO";

/// Files larger than this are refused: a password file is small, and it is held in memory.
const MAX_FILE: u64 = 16 << 20;

pub struct PasswdFile {
    path: PathBuf,
    cache: Mutex<Option<Arc<Table>>>,
    /// Bounds the hashes computed at once: argon2 may take 64 MiB each, and a client can
    /// open many connections.
    slots: Semaphore,
    hashes: AtomicU64,
}

/// One reading of the file.
#[derive(Debug)]
pub struct Table {
    stamp: Stamp,
    users: HashMap<String, StoredHash>,
    /// Verified against for unknown users, so they cost as much as known ones: the file's own
    /// first hash (same scheme and cost as the others, usually).
    dummy: StoredHash,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
}

impl PasswdFile {
    pub fn new(path: PathBuf) -> PasswdFile {
        let parallel = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 8);
        PasswdFile { path, cache: Mutex::new(None), slots: Semaphore::new(parallel), hashes: AtomicU64::new(0) }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Hashes computed so far, the dummy ones for unknown users included.
    pub fn hashes_computed(&self) -> u64 {
        self.hashes.load(Ordering::Relaxed)
    }

    pub async fn check(self: &Arc<Self>, authzid: Option<&str>, username: &str, password: &str) -> Check {
        // PLAIN's authorization identity: acting as someone else is not supported here.
        if authzid.is_some_and(|a| !a.is_empty() && a != username) {
            return Check::Failed;
        }
        let Ok(_slot) = self.slots.acquire().await else {
            return Check::Unavailable("password checks are shutting down".into());
        };
        let this = Arc::clone(self);
        let (username, password) = (username.to_string(), password.to_string());
        // File I/O and the hash itself are blocking (bcrypt and argon2 are slow on purpose).
        match tokio::task::spawn_blocking(move || this.check_blocking(&username, &password)).await {
            Ok(check) => check,
            Err(e) => Check::Unavailable(format!("password check failed: {e}")),
        }
    }

    fn check_blocking(&self, username: &str, password: &str) -> Check {
        let table = match self.table() {
            Ok(table) => table,
            Err(why) => return Check::Unavailable(why),
        };
        self.hashes.fetch_add(1, Ordering::Relaxed);
        match table.users.get(username) {
            Some(hash) if hash.verify(password.as_bytes()) => Check::Ok { username: username.to_string() },
            Some(_) => Check::Failed,
            None => {
                // The same work as for a known user, result ignored: no probing names by timing.
                let _ = std::hint::black_box(table.dummy.verify(password.as_bytes()));
                Check::Failed
            }
        }
    }

    /// The file's current contents: the cached reading when the file is unchanged.
    pub fn table(&self) -> Result<Arc<Table>, String> {
        let path = &self.path;
        let mut file =
            File::open(path).map_err(|e| format!("cannot open password file {}: {}", path.display(), strerror(&e)))?;
        // Checked on the open file, so a rename between the check and the read cannot slip by.
        let meta = file.metadata().map_err(|e| format!("cannot stat {}: {}", path.display(), strerror(&e)))?;
        if !meta.is_file() {
            return Err(format!("password file {} is not a regular file", path.display()));
        }
        let mode = meta.mode() & 0o7777;
        if mode & 0o027 != 0 {
            return Err(format!(
                "password file {} has mode {mode:04o}: refused while others may read it or others or its group may \
                 write it (chmod o-rwx,g-w)",
                path.display()
            ));
        }
        let stamp = Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
        };
        let mut cache = self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(table) = cache.as_ref().filter(|t| t.stamp == stamp) {
            return Ok(Arc::clone(table));
        }
        if stamp.size > MAX_FILE {
            return Err(format!("password file {} is larger than {MAX_FILE} bytes", path.display()));
        }
        let mut text = String::new();
        file.read_to_string(&mut text)
            .map_err(|e| format!("cannot read password file {}: {}", path.display(), strerror(&e)))?;
        let (users, problems) = parse(&text);
        for (line, problem) in problems {
            mail_warning!("smtpd", "{}, line {line}: {problem}; line ignored", path.display());
        }
        let dummy = match users.first().map(|(_, hash)| hash) {
            Some(first) => first.clone(),
            None => StoredHash::parse(FALLBACK_DUMMY).expect("the built-in dummy hash parses"),
        };
        let table = Arc::new(Table { stamp, users: users.into_iter().collect(), dummy });
        *cache = Some(Arc::clone(&table));
        Ok(table)
    }
}

#[cfg(test)]
impl Table {
    pub fn len(&self) -> usize {
        self.users.len()
    }
}

/// A line of the file that is not used: its number and why.
pub type Problem = (usize, String);

/// The usable entries of a password file, in file order, and the lines that are not (line
/// number, why). Later duplicates of a user are reported and ignored.
pub fn parse(text: &str) -> (Vec<(String, StoredHash)>, Vec<Problem>) {
    let mut users: Vec<(String, StoredHash)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut problems = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let number = index + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((user, rest)) = line.split_once(':') else {
            problems.push((number, "no ':' between user name and password hash".to_string()));
            continue;
        };
        let user = user.trim();
        if user.is_empty() {
            problems.push((number, "empty user name".to_string()));
            continue;
        }
        // Crypt and PHC strings hold no ':'; what follows is Dovecot's uid:gid:... fields.
        let field = rest.split(':').next().unwrap_or_default().trim();
        let hash = match StoredHash::parse(field) {
            Ok(hash) => hash,
            Err(why) => {
                problems.push((number, format!("user {user}: {why}")));
                continue;
            }
        };
        if !seen.insert(user.to_string()) {
            problems.push((number, format!("user {user} is listed again (the first entry counts)")));
            continue;
        }
        users.push((user.to_string(), hash));
    }
    (users, problems)
}

fn strerror(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error ") {
        Some(cut) => text[..cut].to_string(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn bcrypt(password: &str) -> String {
        bcrypt::hash(password, 4).unwrap()
    }

    #[test]
    fn parses_users_comments_and_dovecot_fields() {
        let text = format!(
            "# tidemail users\n\n   \nalice:{}\r\n  # indented comment\nbob:{{BLF-CRYPT}}{}:1000:1000::/home/bob::userdb_quota_rule=*:storage=1G\n",
            bcrypt("a"),
            bcrypt("b").replacen("$2b$", "$2y$", 1)
        );
        let (users, problems) = parse(&text);
        assert!(problems.is_empty(), "{problems:?}");
        let names: Vec<&str> = users.iter().map(|(u, _)| u.as_str()).collect();
        assert_eq!(names, ["alice", "bob"]);
        assert!(users[0].1.verify(b"a"));
        assert!(users[1].1.verify(b"b"));
        assert!(!users[1].1.verify(b"a"));
    }

    #[test]
    fn reports_bad_lines_and_keeps_the_rest() {
        let good = bcrypt("pw");
        let text = format!(
            "nocolon\n:{good}\nplain:{{PLAIN}}secret\nlocked:!\nmd5:$1$abc$def\ncarol:{good}\ncarol:{good}\nempty:\n"
        );
        let (users, problems) = parse(&text);
        assert_eq!(users.len(), 1);
        assert_eq!(users[0].0, "carol");
        let lines: Vec<usize> = problems.iter().map(|(n, _)| *n).collect();
        assert_eq!(lines, [1, 2, 3, 4, 5, 7, 8], "{problems:?}");
        assert!(problems[0].1.contains("no ':'"));
        assert!(problems[5].1.contains("listed again"));
        // No line text may carry a hash into the log, only the user and the reason.
        assert!(problems.iter().all(|(_, why)| !why.contains(&good)));
    }

    fn write(dir: &Path, text: &str, mode: u32) -> PathBuf {
        let path = dir.join("passwd");
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn modes() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), &format!("u:{}\n", bcrypt("p")), 0o600);
        let file = PasswdFile::new(path.clone());
        assert_eq!(file.table().unwrap().len(), 1);
        for (mode, allowed) in [(0o640, true), (0o400, true), (0o660, false), (0o604, false), (0o601, false)] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            match file.table() {
                Ok(_) => assert!(allowed, "{mode:o} accepted"),
                Err(why) => {
                    assert!(!allowed, "{mode:o}: {why}");
                    assert!(why.contains(&format!("mode {mode:04o}")), "{why}");
                }
            }
        }
        let missing = PasswdFile::new(dir.path().join("nope"));
        assert!(missing.table().unwrap_err().contains("No such file"));
    }

    #[test]
    fn rereads_when_changed() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), &format!("u:{}\n", bcrypt("p")), 0o600);
        let file = PasswdFile::new(path.clone());
        let first = file.table().unwrap();
        assert!(Arc::ptr_eq(&first, &file.table().unwrap()), "unchanged file read again");
        std::fs::write(&path, format!("u:{}\nv:{}\n", bcrypt("p"), bcrypt("q"))).unwrap();
        assert_eq!(file.table().unwrap().len(), 2);
    }

    #[test]
    fn unknown_users_cost_a_hash() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), &format!("u:{}\n", bcrypt("p")), 0o600);
        let file = PasswdFile::new(path.clone());
        assert_eq!(file.check_blocking("u", "p"), Check::Ok { username: "u".into() });
        assert_eq!(file.check_blocking("u", "x"), Check::Failed);
        assert_eq!(file.check_blocking("nobody", "p"), Check::Failed);
        assert_eq!(file.hashes_computed(), 3);
        // With no usable entry the built-in dummy is used.
        std::fs::write(&path, "# nobody yet\n").unwrap();
        assert_eq!(file.check_blocking("u", "p"), Check::Failed);
        assert_eq!(file.hashes_computed(), 4);
        assert!(StoredHash::parse(FALLBACK_DUMMY).unwrap().verify(b"x"), "the dummy is a real hash");
    }
}
