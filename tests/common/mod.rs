//! Shared by the integration tests: a scratch installation (config + queue in a temp dir),
//! the real binary under its sendmail/mailq names, a daemon that is always stopped, and
//! bounded waits (never sleep-and-hope).
#![allow(dead_code)]

pub mod pki;
pub mod sink;

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_tidemail");

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Poll `cond` until it holds or `limit` passes; panics with `what` on time-out.
pub fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub struct Env {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub queue: PathBuf,
    pub bin: PathBuf,
}

impl Env {
    pub fn new() -> Env {
        Env::with_config("")
    }

    /// A scratch installation; `extra` is appended to the TOML config.
    pub fn with_config(extra: &str) -> Env {
        let dir = tempfile::tempdir().unwrap();
        // Run as root (CI), the daemon drops to mail_owner, which must reach the queue.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let queue = dir.path().join("queue");
        let config = dir.path().join("tidemail.toml");
        let owner = if is_root() && !extra.contains("mail_owner") { "mail_owner = \"nobody\"\n" } else { "" };
        let defer = if extra.contains("defer_transports") { "" } else { "defer_transports = [\"smtp\"]\n" };
        // Tests never ask the real DNS (a flush would otherwise look up their made-up domains),
        // and never touch the system's mailboxes or aliases.
        let mut owner = owner.to_string();
        if !extra.contains("disable_dns_lookups") {
            owner.push_str("disable_dns_lookups = true\n");
        }
        if !extra.contains("mail_spool_directory") {
            let spool = dir.path().join("spool");
            fs::create_dir(&spool).unwrap();
            fs::set_permissions(&spool, fs::Permissions::from_mode(0o1777)).unwrap();
            owner.push_str(&format!("mail_spool_directory = \"{}\"\n", spool.display()));
        }
        if !extra.contains("alias_maps") {
            owner.push_str("alias_maps = []\n");
        }
        fs::write(
            &config,
            format!(
                "{}myhostname = \"mail.test.example\"\nqueue_directory = \"{}\"\n{defer}{owner}{extra}\n",
                test_service(extra),
                queue.display()
            ),
        )
        .unwrap();
        let bin = dir.path().join("bin");
        fs::create_dir(&bin).unwrap();
        fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).unwrap();
        for name in ["sendmail", "mailq", "newaliases"] {
            std::os::unix::fs::symlink(BIN, bin.join(name)).unwrap();
        }
        Env { dir, config, queue, bin }
    }

    /// A scratch installation whose configuration is `text` (one of the examples in config/,
    /// say) with its queue_directory and mail_owner settings replaced: the scratch queue,
    /// and, as root, mail_owner = nobody. $config_directory is the scratch directory: put
    /// the tables the configuration names under it (`write_file`).
    pub fn with_full_config(text: &str) -> Env {
        let env = Env::with_config("");
        let replaced = |l: &&str| {
            let l = l.trim_start();
            l.starts_with("mail_owner") || l.starts_with("queue_directory")
        };
        let kept: Vec<&str> = text.lines().filter(|l| !replaced(l)).collect();
        let mut owner = if is_root() { "mail_owner = \"nobody\"\n" } else { "" }.to_string();
        // Mailboxes and aliases stay in the scratch directory unless the example names them.
        if !text.contains("mail_spool_directory") {
            owner.push_str(&format!("mail_spool_directory = \"{}\"\n", env.dir.path().join("spool").display()));
        }
        if !text.contains("alias_maps") {
            owner.push_str("alias_maps = []\n");
        }
        let queue = format!("queue_directory = \"{}\"\n", env.queue.display());
        let text = kept.join("\n");
        fs::write(&env.config, format!("{}{queue}{owner}{text}\n", test_service(&text))).unwrap();
        env
    }

    /// Write a file (a lookup table) in the scratch directory; returns its path.
    pub fn write_file(&self, name: &str, content: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).unwrap();
            fs::set_permissions(parent, fs::Permissions::from_mode(0o755)).unwrap();
        }
        fs::write(&path, content).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        path
    }

    /// `tidemail -c CONFIG ARGS...`
    pub fn tidemail(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.arg("-c").arg(&self.config).args(args);
        c
    }

    /// The binary run under one of its sendmail names, with the config in TIDEMAIL_CONFIG.
    pub fn as_name(&self, name: &str, args: &[&str]) -> Command {
        let mut c = Command::new(self.bin.join(name));
        c.env("TIDEMAIL_CONFIG", &self.config).args(args);
        c
    }

    /// Run `sendmail ARGS` with `input` on stdin and insist that it queued the message.
    pub fn submit(&self, args: &[&str], input: &[u8]) {
        let out = self.sendmail(args, input);
        assert!(out.status.success(), "sendmail {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Run `sendmail ARGS` with `input` on stdin.
    pub fn sendmail(&self, args: &[&str], input: &[u8]) -> Output {
        run_with_input(self.as_name("sendmail", args), input)
    }

    pub fn mailq(&self) -> String {
        let out = self.as_name("mailq", &[]).output().unwrap();
        assert!(out.status.success(), "mailq failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// Names of the files in one queue directory (temporary files excluded).
    pub fn files(&self, queue: &str) -> Vec<String> {
        let mut names: Vec<String> = match fs::read_dir(self.queue.join(queue)) {
            Ok(rd) => rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect(),
            Err(_) => Vec::new(),
        };
        names.retain(|n| !n.starts_with(".tmp."));
        names.sort();
        names
    }

    pub fn store(&self) -> tidemail::queue::QueueStore {
        tidemail::queue::QueueStore::new(&self.queue)
    }

    pub fn start_daemon(&self) -> Daemon {
        let log = unique(self.dir.path().join("daemon.log"));
        let child = self
            .tidemail(&["daemon"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let daemon = Daemon { child: Some(child), log };
        let socket = self.queue.join("public/control");
        wait_for("the daemon's control socket", Duration::from_secs(10), || socket.exists() || daemon.exited());
        daemon
    }
}

/// Unless the configuration has its own, an SMTP service on loopback and a free port: a test
/// daemon never listens on port 25 or on the machine's other addresses.
fn test_service(config: &str) -> String {
    if config.contains("[service.") || config.contains("service =") {
        return String::new();
    }
    // An inline table, first in the file: lines appended later stay top-level settings.
    format!("service = {{ smtp = {{ address = \"127.0.0.1\", port = {} }} }}\n", sink::free_port())
}

fn unique(mut path: PathBuf) -> PathBuf {
    let mut n = 0;
    while path.exists() {
        n += 1;
        path.set_extension(format!("{n}.log"));
    }
    path
}

pub fn run_with_input(mut cmd: Command, input: &[u8]) -> Output {
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let _ = stdin.write_all(input);
    drop(stdin);
    child.wait_with_output().unwrap()
}

/// A running daemon; stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Daemon {
    child: Option<Child>,
    pub log: PathBuf,
}

impl Daemon {
    pub fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The queue ID cleanup gave the message with this Message-ID (read from the log).
    pub fn queue_id_of(&self, message_id: &str) -> String {
        let needle = format!(": message-id={message_id}");
        self.wait_log(&needle);
        let log = self.log();
        let line = log.lines().find(|l| l.contains(&needle)).unwrap();
        let before = &line[..line.find(&needle).unwrap()];
        before.rsplit(' ').next().unwrap().to_string()
    }

    pub fn wait_log(&self, what: &str) {
        self.wait_until(&format!("log line containing {what:?}"), || self.log().contains(what));
    }

    /// Like `wait_for` (10 s), with the daemon's log in the failure message.
    pub fn wait_until(&self, what: &str, mut cond: impl FnMut() -> bool) {
        let start = Instant::now();
        while !cond() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "timed out waiting for {what}; daemon log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn exited(&self) -> bool {
        // A child that exited stays a zombie until waited for.
        fs::read_to_string(format!("/proc/{}/stat", self.pid())).map(|s| s.contains(") Z ")).unwrap_or(true)
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig).unwrap();
    }

    /// Wait (bounded) for the process to exit; returns its status code.
    pub fn wait_exit(&mut self) -> Option<i32> {
        let child = self.child.as_mut().unwrap();
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return status.code();
            }
            assert!(start.elapsed() < Duration::from_secs(10), "daemon did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill9(&mut self) {
        self.signal(nix::sys::signal::Signal::SIGKILL);
        self.wait_exit();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(5) {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A small message with a known Message-ID.
pub fn message(n: usize, extra_headers: &str) -> Vec<u8> {
    format!("Subject: test {n}\nMessage-ID: <test-{n}@test.example>\n{extra_headers}\nbody of message {n}\n")
        .into_bytes()
}
