//! The hooks (hooks/) and systemd units (systemd/): `systemd-analyze verify` on the units,
//! shellcheck (or `sh -n`) on the scripts, and the scripts run for real: against a stand-in
//! `tidemail` that records how it was called, and the ip-up hook against the built binary
//! and a running daemon. The hooks take TIDEMAIL_BIN, TIDEMAIL_LOGGER and
//! TIDEMAIL_DEFAULTS from the environment, so the tests point them at scratch files.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{BIN, Env, message, wait_for};

const IP_UP: &str = "hooks/ppp/ip-up.d/tidemail";
const IP_DOWN: &str = "hooks/ppp/ip-down.d/tidemail";
const IP_UP_LOCAL: &str = "hooks/ppp/ip-up.local";
const NM: &str = "hooks/networkmanager/90-tidemail";
const CRON: &str = "hooks/cron/tidemail";
const DEFAULTS: &str = "hooks/default/tidemail";

/// pppd's arguments to ip-up/ip-down: interface, tty, speed, local, remote, ipparam.
const PPP_ARGS: [&str; 6] = ["ppp0", "/dev/ttyS0", "115200", "10.0.0.2", "10.0.0.1", "isp"];

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn have(program: &str) -> bool {
    Command::new("sh").arg("-c").arg(format!("command -v {program}")).stdout(Stdio::null()).status().unwrap().success()
}

fn write_script(path: &Path, body: &str) {
    fs::write(path, body).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

fn text(out: &Output) -> String {
    format!("stdout: {}\nstderr: {}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

// --- systemd units ------------------------------------------------------------------------

/// `systemd-analyze verify` insists that ExecStart= programs exist, so it checks copies
/// in which /usr/sbin/tidemail is the binary this build made.
#[test]
fn systemd_units_pass_systemd_analyze_verify() {
    if !have("systemd-analyze") {
        eprintln!("note: systemd-analyze not installed (Debian package systemd): unit check skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut units = Vec::new();
    for name in ["tidemail.service", "tidemail-flush.service", "tidemail-flush.timer"] {
        let original = fs::read_to_string(repo("systemd").join(name)).unwrap();
        if name.ends_with(".service") {
            assert!(original.contains("ExecStart=/usr/sbin/tidemail "), "{name}: ExecStart is not /usr/sbin/tidemail");
        }
        let copy = dir.path().join(name);
        fs::write(&copy, original.replace("/usr/sbin/tidemail", BIN)).unwrap();
        units.push(copy);
    }
    let out = Command::new("systemd-analyze").arg("verify").arg("--man=no").args(&units).output().unwrap();
    // It exits 0 on unknown keys and bad values, with a line naming the file: any line
    // about our units is a failure. (Lines about the host's own units are not ours.)
    let stderr = String::from_utf8_lossy(&out.stderr);
    let ours: Vec<&str> = stderr.lines().filter(|l| l.contains("tidemail")).collect();
    assert!(out.status.success() && ours.is_empty(), "systemd-analyze verify:\n{}", text(&out));
}

fn unit(name: &str) -> String {
    fs::read_to_string(repo("systemd").join(name)).unwrap()
}

fn settings(unit: &str, key: &str) -> Vec<String> {
    let prefix = format!("{key}=");
    unit.lines().filter_map(|l| l.strip_prefix(&prefix)).map(str::to_string).collect()
}

#[test]
fn daemon_unit_matches_the_daemon() {
    let service = unit("tidemail.service");
    // Type=notify only holds while the daemon says READY=1.
    assert_eq!(settings(&service, "Type"), ["notify"]);
    let server = fs::read_to_string(repo("src/daemon/server.rs")).unwrap();
    assert!(server.contains("NotifyState::Ready"), "the daemon no longer calls sd_notify: Type=notify would hang");
    assert_eq!(settings(&service, "ExecStart"), ["/usr/sbin/tidemail daemon"]);
    assert_eq!(settings(&service, "ExecReload"), ["/bin/kill -HUP $MAINPID"]);
    // Both units run what local delivery will need: see the comments in tidemail.service.
    for name in ["tidemail.service", "tidemail-flush.service"] {
        let u = unit(name);
        for forbidden in
            ["NoNewPrivileges", "RestrictSUIDSGID", "MemoryDenyWriteExecute", "PrivateUsers", "DynamicUser"]
        {
            assert!(settings(&u, forbidden).iter().all(|v| v == "no"), "{name}: {forbidden} breaks local delivery");
        }
        assert_eq!(settings(&u, "ProtectHome"), ["no"], "{name}");
        assert!(settings(&u, "User").is_empty(), "{name}: the daemon starts as root and drops privileges itself");
        let caps = settings(&u, "CapabilityBoundingSet").join(" ");
        for cap in ["CAP_SETUID", "CAP_SETGID", "CAP_CHOWN", "CAP_FOWNER", "CAP_FSETID", "CAP_DAC_OVERRIDE"] {
            assert!(caps.split(' ').any(|c| c == cap), "{name}: {cap} missing from the bounding set");
        }
        let rw = settings(&u, "ReadWritePaths").join(" ");
        for path in ["/var/spool/tidemail", "/var/mail", "/home"] {
            assert!(rw.split(' ').any(|p| p.trim_start_matches('-') == path), "{name}: {path} not writable");
        }
    }
    let flush = unit("tidemail-flush.service");
    assert_eq!(settings(&flush, "ExecStart"), ["/usr/sbin/tidemail flush --wait --timeout ${TIDEMAIL_FLUSH_TIMEOUT}"]);
    assert_eq!(settings(&flush, "Environment"), ["TIDEMAIL_FLUSH_TIMEOUT=600"]);
    assert_eq!(settings(&flush, "SuccessExitStatus"), ["75"]);
}

// --- static checks of the scripts ---------------------------------------------------------

/// Every file under hooks/ that starts with "#!".
fn hook_scripts() -> Vec<PathBuf> {
    fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, found);
            } else if fs::read(&path).unwrap().starts_with(b"#!") {
                found.push(path);
            }
        }
    }
    let mut found = Vec::new();
    walk(&repo("hooks"), &mut found);
    found.sort();
    found
}

#[test]
fn hook_scripts_are_clean_posix_sh() {
    let scripts = hook_scripts();
    for expected in [IP_UP, IP_DOWN, IP_UP_LOCAL, NM] {
        assert!(scripts.contains(&repo(expected)), "{expected} missing or without #!");
    }
    let shellcheck = have("shellcheck");
    if !shellcheck {
        eprintln!("note: shellcheck not installed (Debian package shellcheck): only `sh -n`");
    }
    // The defaults file is sourced by the hooks, so it is checked as sh too.
    for path in scripts.iter().chain([&repo(DEFAULTS)]) {
        let first = fs::read_to_string(path).unwrap().lines().next().unwrap_or_default().to_string();
        if path != &repo(DEFAULTS) {
            assert_eq!(first, "#!/bin/sh", "{}: not a POSIX sh script", path.display());
            let mode = fs::metadata(path).unwrap().permissions().mode() & 0o7777;
            assert_eq!(mode, 0o755, "{}: mode {mode:o} (run-parts and NetworkManager skip it)", path.display());
        }
        let out = Command::new("sh").arg("-n").arg(path).output().unwrap();
        assert!(out.status.success(), "sh -n {}:\n{}", path.display(), text(&out));
        if shellcheck {
            let out = Command::new("shellcheck").args(["--shell=sh", "--severity=style"]).arg(path).output().unwrap();
            assert!(out.status.success(), "shellcheck {}:\n{}", path.display(), text(&out));
        }
    }
    // run-parts (ip-up.d, ip-down.d, cron.d) silently skips names with other characters.
    for dir in ["hooks/ppp/ip-up.d", "hooks/ppp/ip-down.d", "hooks/cron"] {
        for entry in fs::read_dir(repo(dir)).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            assert!(
                name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
                "{dir}/{name}: run-parts would skip it"
            );
        }
    }
}

#[test]
fn cron_file_is_well_formed() {
    let cron = fs::read_to_string(repo(CRON)).unwrap();
    let jobs: Vec<&str> =
        cron.lines().filter(|l| l.starts_with(|c: char| c.is_ascii_digit() || c == '*' || c == '@')).collect();
    assert!(!jobs.is_empty(), "no job line in {CRON}");
    for job in jobs {
        // minute hour day month weekday user command
        let fields: Vec<&str> = job.splitn(7, ' ').collect();
        assert_eq!(fields.len(), 7, "{job}");
        assert_eq!(fields[5], "root", "{job}");
        let command = fields[6];
        assert!(!command.contains('%'), "cron turns % into a newline: {job}");
        assert!(command.contains("/usr/sbin/tidemail flush"), "{job}");
        let out = Command::new("sh").args(["-n", "-c", command]).output().unwrap();
        assert!(out.status.success(), "sh -n: {job}\n{}", text(&out));
    }
    // The variables must be plain assignments cron understands.
    for line in cron.lines().filter(|l| l.contains('=') && !l.starts_with('#')) {
        if !line.starts_with(|c: char| c.is_ascii_digit() || c == '*' || c == '@') {
            assert!(line.starts_with("SHELL=") || line.starts_with("PATH="), "{line}");
        }
    }
}

// --- the scripts, run against a stand-in tidemail -----------------------------------------

/// Scratch files: a logger and a tidemail that record their arguments, a defaults file.
struct Harness {
    dir: tempfile::TempDir,
    log: PathBuf,
    calls: PathBuf,
    logger: PathBuf,
    fake: PathBuf,
    defaults: PathBuf,
}

impl Harness {
    fn new() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let calls = dir.path().join("calls");
        let logger = dir.path().join("logger");
        write_script(&logger, &format!("#!/bin/sh\nprintf '%s\\n' \"$*\" >>'{}'\n", log.display()));
        // Records "args|TIDEMAIL_CONFIG|PATH"; FAKE_OUT is printed, FAKE_DELAY slept,
        // FAKE_STATUS returned; FAKE_HANG never returns.
        let fake = dir.path().join("tidemail");
        write_script(
            &fake,
            &format!(
                "#!/bin/sh\nprintf '%s|%s|%s\\n' \"$*\" \"${{TIDEMAIL_CONFIG-}}\" \"$PATH\" >>'{}'\n\
                 [ -n \"$FAKE_OUT\" ] && printf '%s\\n' \"$FAKE_OUT\"\n\
                 [ -n \"$FAKE_HANG\" ] && exec sleep 600\n\
                 [ -n \"$FAKE_DELAY\" ] && sleep \"$FAKE_DELAY\"\n\
                 exit \"${{FAKE_STATUS:-0}}\"\n",
                calls.display()
            ),
        );
        let defaults = dir.path().join("default-tidemail"); // absent until written
        Harness { dir, log, calls, logger, fake, defaults }
    }

    fn defaults(&self, content: &str) {
        fs::write(&self.defaults, content).unwrap();
    }

    /// Run a hook as pppd or NetworkManager would: an almost empty environment (no PATH).
    fn run(&self, hook: &str, args: &[&str], env: &[(&str, &str)]) -> (Output, Duration) {
        let start = Instant::now();
        let out = Command::new(repo(hook))
            .args(args)
            .env_clear()
            .env("TIDEMAIL_BIN", &self.fake)
            .env("TIDEMAIL_LOGGER", &self.logger)
            .env("TIDEMAIL_DEFAULTS", &self.defaults)
            .envs(env.iter().copied())
            .current_dir(self.dir.path())
            .output()
            .unwrap();
        (out, start.elapsed())
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// One line per call of the stand-in: (arguments, TIDEMAIL_CONFIG, PATH).
    fn calls(&self) -> Vec<(String, String, String)> {
        fs::read_to_string(&self.calls)
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let mut parts = l.splitn(3, '|').map(str::to_string);
                (parts.next().unwrap(), parts.next().unwrap_or_default(), parts.next().unwrap_or_default())
            })
            .collect()
    }

    fn wait_log(&self, what: &str) {
        let start = Instant::now();
        while !self.log().contains(what) {
            assert!(start.elapsed() < Duration::from_secs(10), "no log line with {what:?}; log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn ip_up_waits_for_a_flush_with_the_default_timeout_and_a_path_without_sbin() {
    let h = Harness::new();
    let (out, _) = h.run(IP_UP, &PPP_ARGS, &[("TIDEMAIL_PPP_WAIT", "yes"), ("FAKE_OUT", "1 sent")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let calls = h.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].0, "flush --wait --timeout 600");
    assert!(calls[0].2.split(':').any(|d| d == "/usr/sbin"), "PATH for tidemail: {}", calls[0].2);
    let log = h.log();
    assert!(
        log.contains(
            "-t tidemail/ip-up -p mail.info -- ppp0 up (remote 10.0.0.1): flushing the mail queue, waiting up to 600 s"
        ),
        "{log}"
    );
    assert!(log.contains("-p mail.info -- ppp0: flush done, nothing left deferred: 1 sent"), "{log}");
}

#[test]
fn ip_up_takes_timeout_and_config_from_the_defaults_file() {
    let h = Harness::new();
    h.defaults("TIDEMAIL_FLUSH_TIMEOUT=42\nTIDEMAIL_CONFIG=/etc/tidemail/other.toml\nTIDEMAIL_PPP_WAIT=yes\n");
    let (out, _) = h.run(IP_UP, &PPP_ARGS, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let calls = h.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!((calls[0].0.as_str(), calls[0].1.as_str()), ("flush --wait --timeout 42", "/etc/tidemail/other.toml"));
    // A value that is not a number of seconds falls back to the default.
    h.defaults("TIDEMAIL_FLUSH_TIMEOUT=10m\nTIDEMAIL_PPP_WAIT=yes\n");
    h.run(IP_UP, &PPP_ARGS, &[]);
    assert_eq!(h.calls()[1].0, "flush --wait --timeout 600");
}

#[test]
fn ip_up_logs_what_is_left_and_failures_and_still_exits_0() {
    let h = Harness::new();
    let wait = ("TIDEMAIL_PPP_WAIT", "yes");
    let (out, _) = h.run(IP_UP, &PPP_ARGS, &[wait, ("FAKE_STATUS", "75"), ("FAKE_OUT", "2 deferred\n(host down)")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(h.log().contains("-p mail.notice -- ppp0: flush done, some mail still deferred: 2 deferred (host down)"));
    let (out, _) = h.run(IP_UP, &PPP_ARGS, &[wait, ("FAKE_STATUS", "78"), ("FAKE_OUT", "fatal: bad config")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(h.log().contains("-p mail.warning -- ppp0: flush failed (exit 78): fatal: bad config"), "{}", h.log());
}

#[test]
fn ip_up_never_waits_forever() {
    if !have("timeout") {
        eprintln!("note: timeout(1) not installed (coreutils): test skipped");
        return;
    }
    let h = Harness::new();
    h.defaults("TIDEMAIL_FLUSH_TIMEOUT=1\n");
    let (out, took) = h.run(IP_UP, &PPP_ARGS, &[("TIDEMAIL_PPP_WAIT", "yes"), ("FAKE_HANG", "1")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(took < Duration::from_secs(30), "took {took:?}");
    assert!(
        h.log().contains("-p mail.warning -- ppp0: flush still not done after 11 s, stopped waiting"),
        "{}",
        h.log()
    );
}

#[test]
fn ip_up_returns_at_once_by_default_and_logs_the_outcome_later() {
    let h = Harness::new();
    let (out, took) = h.run(IP_UP, &PPP_ARGS, &[("FAKE_DELAY", "2"), ("FAKE_STATUS", "75")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // The background flush must not hold the hook's output open either (run-parts reads it).
    assert!(took < Duration::from_millis(1500), "ip-up waited {took:?} for the flush");
    assert!(h.log().contains("ppp0 up (remote 10.0.0.1): flushing"), "{}", h.log());
    h.wait_log("ppp0: flush done, some mail still deferred");
}

#[test]
fn ip_up_local_runs_the_hook_with_debians_single_word_arguments() {
    let h = Harness::new();
    let hook = repo(IP_UP);
    let (out, _) = h.run(
        IP_UP_LOCAL,
        &[&PPP_ARGS.map(|a| a.replace("ppp0", "ppp1")).join(" ")],
        &[
            ("TIDEMAIL_PPP_HOOK", hook.to_str().unwrap()),
            ("TIDEMAIL_PPP_WAIT", "yes"),
            ("PPP_IFACE", "ppp1"),
            ("PPP_REMOTE", "10.0.0.1"),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(h.calls().len(), 1);
    assert!(h.log().contains("-- ppp1 up (remote 10.0.0.1): flushing"), "{}", h.log());
    assert!(h.log().contains("-- ppp1: flush done"), "{}", h.log());
}

#[test]
fn ip_down_only_logs() {
    let h = Harness::new();
    let (out, _) = h.run(IP_DOWN, &PPP_ARGS, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(h.calls().is_empty());
    assert!(
        h.log().contains("-t tidemail/ip-down -p mail.info -- ppp0 down (remote 10.0.0.1): outgoing mail waits"),
        "{}",
        h.log()
    );
}

#[test]
fn hooks_do_nothing_when_tidemail_is_not_installed() {
    let h = Harness::new();
    for (hook, args) in [(IP_UP, &PPP_ARGS[..]), (NM, &["eth0", "up"][..])] {
        let (out, _) = h.run(hook, args, &[("TIDEMAIL_BIN", "/nonexistent/tidemail"), ("TIDEMAIL_PPP_WAIT", "yes")]);
        assert_eq!(out.status.code(), Some(0), "{hook}: {}", text(&out));
    }
    assert_eq!(h.log(), "");
}

#[test]
fn nm_dispatcher_flushes_on_up_and_full_connectivity_and_logs_down() {
    // (interface, action, CONNECTIVITY_STATE, flushes)
    let cases = [
        ("wlan0", "up", "", true),
        ("tun0", "vpn-up", "", true),
        ("", "connectivity-change", "FULL", true),
        ("", "connectivity-change", "LIMITED", false),
        ("", "connectivity-change", "PORTAL", false),
        ("", "connectivity-change", "NONE", false),
        ("wlan0", "pre-up", "", false),
        ("lo", "up", "", false),
        ("wlan0", "down", "", false),
    ];
    for (iface, action, state, flushes) in cases {
        let h = Harness::new();
        // The stand-in takes 2 s: the dispatcher must not wait for it.
        let mut env = vec![("FAKE_DELAY", "2")];
        if !state.is_empty() {
            env.push(("CONNECTIVITY_STATE", state));
        }
        let (out, took) = h.run(NM, &[iface, action], &env);
        assert_eq!(out.status.code(), Some(0), "{action} {state}: {}", text(&out));
        assert!(took < Duration::from_millis(1500), "{action}: the dispatcher waited {took:?}");
        if flushes {
            wait_for("the flush", Duration::from_secs(10), || h.calls().len() == 1);
            assert_eq!(h.calls()[0].0, "flush --wait --timeout 600");
            h.wait_log("-t tidemail/nm-dispatcher -p mail.info -- ");
            h.wait_log(&format!("{action}: flush done"));
        } else {
            assert!(!h.log().contains("flushing"), "{action} {state}: {}", h.log());
        }
    }
    let h = Harness::new();
    h.run(NM, &["wlan0", "down"], &[]);
    assert!(
        h.log().contains("-t tidemail/nm-dispatcher -p mail.info -- wlan0 down: outgoing mail waits"),
        "{}",
        h.log()
    );
    assert!(h.calls().is_empty());
}

// --- the ip-up hook against the real binary -----------------------------------------------

/// The hook as pppd runs it, with `tidemail` found on PATH (a directory holding a symlink
/// to the built binary, /usr/sbin missing) and the scratch config in TIDEMAIL_CONFIG.
///
/// Everything up to the "flush completed" assertion holds with any tidemail; that one and
/// the daemon-log check need `tidemail flush --wait --timeout N` (a tidemail without it
/// exits 64 with clap's unexpected-argument error, and the hook logs "flush failed (exit 64)").
#[test]
fn ip_up_hook_flushes_the_real_queue() {
    // Port 1 refuses at once, so a flush that tries the smarthost ends quickly.
    let env = Env::with_config("relayhost = \"[127.0.0.1]:1\"\n");
    let daemon = env.start_daemon();
    env.submit(&["r@remote.example"], &message(1, ""));
    wait_for("deferral", Duration::from_secs(10), || env.files("deferred").len() == 1);
    let id = env.files("deferred").remove(0);
    let attempts = |log: &str| log.matches(&format!("{id}: to=<r@remote.example>")).count();
    let before = attempts(&daemon.log());

    let h = Harness::new();
    let path_dir = env.dir.path().join("path");
    fs::create_dir(&path_dir).unwrap();
    std::os::unix::fs::symlink(BIN, path_dir.join("tidemail")).unwrap();
    let out = Command::new(repo(IP_UP))
        .args(PPP_ARGS)
        .env_clear()
        .env("PATH", &path_dir)
        .env("TIDEMAIL_CONFIG", &env.config)
        .env("TIDEMAIL_LOGGER", &h.logger)
        .env("TIDEMAIL_DEFAULTS", &h.defaults)
        .env("TIDEMAIL_FLUSH_TIMEOUT", "60")
        .env("TIDEMAIL_PPP_WAIT", "yes")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let log = h.log();
    assert!(log.contains("-- ppp0 up (remote 10.0.0.1): flushing the mail queue, waiting up to 60 s"), "{log}");

    // Needs `flush --wait`: the flush ran to its end (0: nothing deferred, 75: some left).
    assert!(
        log.contains("-- ppp0: flush done, nothing left deferred") || log.contains("-- ppp0: flush done, some mail"),
        "the hook's flush did not complete (a tidemail without `flush --wait` exits 64); hook log:\n{log}\ndaemon log:\n{}",
        daemon.log()
    );
    // ...and it went through the daemon, which attempted the held message again.
    daemon.wait_until("another attempt at the held message", || attempts(&daemon.log()) > before);
}
