//! AUTH password checks (src/smtpd/credentials.rs) through the public Verifier: a passwd-file
//! (modes, re-reading, the cost of an unknown user) and a real Dovecot (Debian's dovecot-core,
//! started privately by the test; skipped with a note when it is missing or we are not root).
//! Every wait is bounded.

use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tidemail::config::Config;
use tidemail::smtpd::credentials::{Check, Verifier};

fn client() -> IpAddr {
    "192.0.2.10".parse().unwrap()
}

/// Dovecot slows down an address after failed logins (up to 15 s): each failure comes from
/// an address of its own, to keep the test at Dovecot's plain 2 s failure delay.
fn failing_client(n: u8) -> IpAddr {
    IpAddr::from([198, 51, 100, n])
}

fn verifier(dir: &Path, settings: &str) -> Verifier {
    let text = format!("smtpd_sasl_auth_enable = true\nqueue_directory = \"{}\"\n{settings}\n", dir.display());
    let cfg = Config::from_toml_str(&text, &dir.join("main.toml")).unwrap();
    Verifier::new(Arc::new(cfg)).unwrap().expect("AUTH is enabled")
}

fn passwd_file(dir: &Path, text: &str, mode: u32) -> (Verifier, PathBuf) {
    let path = dir.join("smtpd.passwd");
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    let v = verifier(dir, &format!("smtpd_sasl_type = \"passwd-file\"\nsmtpd_sasl_path = \"{}\"", path.display()));
    (v, path)
}

fn ok(user: &str) -> Check {
    Check::Ok { username: user.to_string() }
}

#[tokio::test]
async fn passwd_file_mode_0600_is_used_0644_refused() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!("# office\nalice:{}\n", bcrypt::hash("wonderland", 4).unwrap());
    let (v, path) = passwd_file(dir.path(), &text, 0o600);
    assert_eq!(v.check(None, "alice", "wonderland", client()).await, ok("alice"));
    assert_eq!(v.check(None, "alice", "nope", client()).await, Check::Failed);

    // World-readable: refused at once (the mode is checked at every login), not served stale.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    match v.check(None, "alice", "wonderland", client()).await {
        Check::Unavailable(why) => {
            assert!(why.contains("mode 0644") && why.contains(&path.display().to_string()), "{why}")
        }
        other => panic!("0644 file used: {other:?}"),
    }
    // Group-readable is the documented root:<mail_owner group> 0640 layout.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    assert_eq!(v.check(None, "alice", "wonderland", client()).await, ok("alice"));

    // Gone: unavailable (454), not "wrong password".
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(v.check(None, "alice", "wonderland", client()).await, Check::Unavailable(_)));
}

#[tokio::test]
async fn passwd_file_is_read_again_when_it_changes() {
    let dir = tempfile::tempdir().unwrap();
    let (v, path) = passwd_file(dir.path(), &format!("alice:{}\n", bcrypt::hash("one", 4).unwrap()), 0o600);
    assert_eq!(v.check(None, "alice", "one", client()).await, ok("alice"));
    assert_eq!(v.check(None, "bob", "two", client()).await, Check::Failed);
    // Dovecot's own form, with its extra fields after the hash.
    let bob = bcrypt::hash("two", 4).unwrap().replacen("$2b$", "$2y$", 1);
    std::fs::write(
        &path,
        format!("alice:{}\nbob:{{BLF-CRYPT}}{bob}:1000:1000::/home/bob\n", bcrypt::hash("new", 4).unwrap()),
    )
    .unwrap();
    assert_eq!(v.check(None, "alice", "one", client()).await, Check::Failed);
    assert_eq!(v.check(None, "alice", "new", client()).await, ok("alice"));
    assert_eq!(v.check(None, "bob", "two", client()).await, ok("bob"));
}

/// An unknown user costs a hash like a known one: the counter shows the dummy hash is computed,
/// and (with a bound generous enough for a loaded machine) it takes comparable time.
#[tokio::test]
async fn unknown_users_take_as_long_as_known_ones() {
    let dir = tempfile::tempdir().unwrap();
    // Cost 8: a few tens of milliseconds even in a debug build, well above the noise.
    let (v, _) = passwd_file(dir.path(), &format!("alice:{}\n", bcrypt::hash("right", 8).unwrap()), 0o600);
    let before = v.hashes_computed();
    assert_eq!(v.check(None, "mallory", "guess", client()).await, Check::Failed);
    assert_eq!(v.hashes_computed(), before + 1, "no hash computed for an unknown user");
    assert_eq!(v.check(None, "alice", "guess", client()).await, Check::Failed);
    assert_eq!(v.hashes_computed(), before + 2);

    let mut known = Vec::new();
    let mut unknown = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        assert_eq!(v.check(None, "alice", "guess", client()).await, Check::Failed);
        known.push(started.elapsed());
        let started = Instant::now();
        assert_eq!(v.check(None, "mallory", "guess", client()).await, Check::Failed);
        unknown.push(started.elapsed());
    }
    known.sort();
    unknown.sort();
    let (known, unknown) = (known[2], unknown[2]);
    assert!(unknown * 3 >= known, "unknown user {unknown:?}, known user {known:?}: probing by timing possible");
}

/// Logins are checked off the async runtime: a current-thread runtime keeps serving other
/// tasks while a slow hash runs.
#[tokio::test(flavor = "current_thread")]
async fn hashing_does_not_block_the_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let (v, _) = passwd_file(dir.path(), &format!("alice:{}\n", bcrypt::hash("right", 10).unwrap()), 0o600);
    let ticks = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counter = Arc::clone(&ticks);
    let ticker = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(5)).await;
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    });
    let started = Instant::now();
    assert_eq!(v.check(None, "alice", "right", client()).await, ok("alice"));
    let took = started.elapsed();
    ticker.abort();
    let ticks = ticks.load(std::sync::atomic::Ordering::Relaxed);
    // A blocked runtime would tick zero times during the hash.
    assert!(took < Duration::from_millis(50) || ticks >= 2, "{ticks} ticks in {took:?}");
}

// --- a real Dovecot ---------------------------------------------------------------------

const DOVECOT: &str = "/usr/sbin/dovecot";

/// A private dovecot: its own configuration, base_dir, logs and auth socket in `dir`, auth
/// only (no IMAP/POP3 listeners). Stopped (SIGTERM, then SIGKILL) when dropped.
struct Dovecot {
    child: Child,
    dir: PathBuf,
    socket: PathBuf,
}

impl Dovecot {
    fn start(dir: &Path, users: &str) -> Dovecot {
        let socket = dir.join("auth-client");
        std::fs::create_dir_all(dir.join("run")).unwrap();
        std::fs::create_dir_all(dir.join("state")).unwrap();
        // Dovecot's auth process runs as its own user and reads the user file.
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(dir.join("users"), users).unwrap();
        std::fs::set_permissions(dir.join("users"), std::fs::Permissions::from_mode(0o644)).unwrap();
        let conf = format!(
            r#"# tidemail test instance (tests/smtpd_credentials.rs)
instance_name = tidemail-test-{pid}
base_dir = {dir}/run
state_dir = {dir}/state
log_path = {dir}/dovecot.log
info_log_path = {dir}/dovecot.log
protocols =
ssl = no
auth_mechanisms = plain login
auth_username_format = %Lu
auth_verbose = yes
passdb {{
  driver = passwd-file
  args = {dir}/users
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={dir}/home
}}
service auth {{
  unix_listener {socket} {{
    mode = 0666
  }}
}}
"#,
            pid = std::process::id(),
            dir = dir.display(),
            socket = socket.display(),
        );
        let conf_path = dir.join("dovecot.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new(DOVECOT)
            .arg("-F")
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("dovecot.stderr")).unwrap())
            .spawn()
            .expect("start dovecot");
        let mut dovecot = Dovecot { child, dir: dir.to_path_buf(), socket };
        let deadline = Instant::now() + Duration::from_secs(15);
        while !dovecot.socket.exists() {
            if let Ok(Some(status)) = dovecot.child.try_wait() {
                panic!("dovecot exited ({status}):\n{}", dovecot.logs());
            }
            assert!(Instant::now() < deadline, "no dovecot auth socket after 15s:\n{}", dovecot.logs());
            std::thread::sleep(Duration::from_millis(50));
        }
        dovecot
    }

    fn logs(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
        format!("{}{}", read("dovecot.stderr"), read("dovecot.log"))
    }

    /// Stops the master and the processes it started (auth, log, config...): SIGTERM, then
    /// SIGKILL after 5 s. Its children are found before it goes, by their parent pid.
    fn stop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        let master = self.child.id();
        let children = children_of(master);
        signal(master, libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // An auth process left serving an open connection would answer after its master is gone.
        for pid in &children {
            signal(*pid, libc::SIGTERM);
        }
        let gone = |pid: &u32| !Path::new(&format!("/proc/{pid}")).exists() || is_zombie(*pid);
        while !children.iter().all(gone) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        for pid in children.iter().filter(|p| !gone(p)) {
            signal(*pid, libc::SIGKILL);
        }
    }
}

fn signal(pid: u32, signal: libc::c_int) {
    // SAFETY: kill(2) on a pid this test started; no memory is involved.
    unsafe { libc::kill(pid as libc::pid_t, signal) };
}

/// The processes whose parent is `parent` (from /proc/PID/stat: "pid (comm) state ppid ...").
fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| proc_stat(*pid).is_some_and(|(_, ppid)| ppid == parent))
        .collect()
}

fn is_zombie(pid: u32) -> bool {
    proc_stat(pid).is_some_and(|(state, _)| state == 'Z')
}

fn proc_stat(pid: u32) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut rest = stat[stat.rfind(')')? + 1..].split_whitespace();
    let state = rest.next()?.chars().next()?;
    Some((state, rest.next()?.parse().ok()?))
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Why the Dovecot test cannot run here, if it cannot.
fn dovecot_missing() -> Option<&'static str> {
    if !Path::new(DOVECOT).exists() {
        return Some("dovecot-core is not installed (.ci/test installs it as root)");
    }
    // SAFETY: geteuid(2) cannot fail and touches no memory.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root (the private dovecot instance is started as root)");
    }
    None
}

fn sha512_crypt(password: &str) -> String {
    use sha_crypt::PasswordHasher as _;
    sha_crypt::ShaCrypt::default().hash_password_with_salt(password.as_bytes(), b"tidemailtest").unwrap().to_string()
}

#[tokio::test]
async fn against_a_real_dovecot() {
    if let Some(why) = dovecot_missing() {
        eprintln!("note: against_a_real_dovecot skipped: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let users = format!("alice:{{SHA512-CRYPT}}{}\n", sha512_crypt("wonderland"));
    let mut dovecot = Dovecot::start(&dir.path().join("dovecot"), &users);
    let v = verifier(dir.path(), &format!("smtpd_sasl_path = \"{}\"", dovecot.socket.display()));

    // The name logged is the one Dovecot returns (auth_username_format = %Lu lowercases it).
    let check = v.check(None, "Alice", "wonderland", client()).await;
    assert_eq!(check, ok("alice"), "{}", dovecot.logs());
    assert_eq!(v.check(None, "alice", "wonderland", client()).await, ok("alice"));
    // Failures come back after Dovecot's auth_failure_delay (2 s).
    let started = Instant::now();
    assert_eq!(v.check(None, "alice", "looking-glass", failing_client(1)).await, Check::Failed);
    assert_eq!(v.check(None, "bob", "wonderland", failing_client(2)).await, Check::Failed);
    assert!(started.elapsed() < Duration::from_secs(15));
    // Concurrent logins share the one connection and get their own answers.
    let (a, b) = tokio::join!(
        v.check(None, "alice", "wonderland", client()),
        v.check(None, "alice", "wrong", failing_client(3))
    );
    assert_eq!((a, b), (ok("alice"), Check::Failed));

    // The socket removed (dovecot still running): unavailable at once, not "wrong password".
    std::fs::remove_file(&dovecot.socket).unwrap();
    let started = Instant::now();
    let check = v.check(None, "alice", "wonderland", client()).await;
    assert!(matches!(&check, Check::Unavailable(why) if why.contains("No such file")), "{check:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());

    // Dovecot restarted (a new socket): the Verifier reconnects by itself.
    dovecot.stop();
    let _ = std::fs::remove_dir_all(dir.path().join("dovecot/run"));
    let mut dovecot = Dovecot::start(&dir.path().join("dovecot"), &users);
    assert_eq!(v.check(None, "alice", "wonderland", client()).await, ok("alice"), "{}", dovecot.logs());

    // Dovecot stopped: its socket left behind or gone, the answer is Unavailable, within seconds.
    dovecot.stop();
    let started = Instant::now();
    let check = v.check(None, "alice", "wonderland", client()).await;
    assert!(matches!(check, Check::Unavailable(_)), "{check:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
}
