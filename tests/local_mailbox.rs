//! The mailbox writers of the `local` transport against the programs that read and write the
//! same files on Debian: Python's mailbox module, mutt, procmail and its `lockfile`, a
//! lockf() writer; plus the disk-full truncation (RLIMIT_FSIZE in a re-executed child).
//!
//! A missing program skips its test with a note, unless we run as root (CI), where .ci/test
//! has installed it and its absence is a failure.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;
use tidemail::deliver::local::LocalMessage;
use tidemail::deliver::local::lock::{LockSettings, dotlock_path, lock_mailbox};
use tidemail::deliver::local::maildir::deliver_maildir;
use tidemail::deliver::local::mbox::deliver_mbox;

const PYTHON: &str = "/usr/bin/python3";
const MUTT: &str = "/usr/bin/mutt";
const SCRIPT: &str = "/usr/bin/script";
const PROCMAIL: &str = "/usr/bin/procmail";
const LOCKFILE: &str = "/usr/bin/lockfile";

/// Prints every message of an mbox (argv[1]) or Maildir (argv[2] == "maildir") as JSON.
const READ_MAILBOX: &str = r#"
import json, mailbox, sys
if len(sys.argv) > 2 and sys.argv[2] == "maildir":
    box = mailbox.Maildir(sys.argv[1], factory=None, create=False)
else:
    box = mailbox.mbox(sys.argv[1], create=False)
out = []
for message in box:
    out.append({
        "from": message.get_from() if hasattr(message, "get_from") else None,
        "headers": {k: message[k] for k in ("Return-Path", "Delivered-To", "X-Original-To", "Subject")},
        "body": message.get_payload(),
    })
print(json.dumps(out))
"#;

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Whether `program` is there; if not, a note (or, as root, a failure: CI installs it).
fn have(program: &str) -> bool {
    if Path::new(program).exists() {
        return true;
    }
    assert!(!is_root(), "{program} is missing: .ci/test installs it");
    eprintln!("note: {program} is missing: test skipped (run .ci/test as root to install it)");
    false
}

/// Runs `cmd` to completion, killed and failed after `limit`.
fn run(mut cmd: Command, limit: Duration) -> Output {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = cmd.spawn().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            panic!("{cmd:?} did not finish within {limit:?}");
        }
    }
}

/// Every message of the mailbox as Python's mailbox module reads it.
fn python_read(path: &Path, maildir: bool) -> Vec<Value> {
    let mut cmd = Command::new(PYTHON);
    cmd.arg("-c").arg(READ_MAILBOX).arg(path);
    if maildir {
        cmd.arg("maildir");
    }
    let output = run(cmd, Duration::from_secs(60));
    assert!(output.status.success(), "python: {}", String::from_utf8_lossy(&output.stderr));
    match serde_json::from_slice(&output.stdout).unwrap() {
        Value::Array(messages) => messages,
        other => panic!("python printed {other}"),
    }
}

fn headers(sender: &str) -> Vec<String> {
    vec![
        format!("Return-Path: <{sender}>"),
        "Delivered-To: tom@example.com".to_string(),
        "X-Original-To: root@example.com".to_string(),
    ]
}

fn message<'a>(sender: &'a str, content: &'a [u8]) -> LocalMessage<'a> {
    LocalMessage { sender, prepend: headers(sender), content }
}

/// Locks retried quickly, for tests that wait on another locker.
fn patient() -> LockSettings {
    LockSettings { attempts: 250, delay: Duration::from_millis(20), ..LockSettings::default() }
}

fn size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Two messages: a normal one with a `From ` body line, and a bounce without a final newline.
fn deliver_two(mbox: &Path) {
    let first = b"From: Alice <alice@example.org>\nSubject: first\n\nHello\nFrom here\nbye\n";
    deliver_mbox(mbox, &message("alice@example.org", first), &LockSettings::default(), 0).unwrap();
    let second = b"Subject: second\n\nFrom the daemon\nno final newline";
    deliver_mbox(mbox, &message("", second), &LockSettings::default(), 0).unwrap();
}

#[test]
fn python_reads_the_mbox() {
    if !have(PYTHON) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mbox = dir.path().join("tom");
    deliver_two(&mbox);

    let raw = std::fs::read_to_string(&mbox).unwrap();
    assert!(raw.starts_with("From alice@example.org  "), "{raw}");
    assert!(raw.contains("\nbye\n\nFrom MAILER-DAEMON  "), "{raw}");
    assert!(raw.contains("\n>From here\n"), "{raw}");
    assert!(raw.ends_with("no final newline\n\n"), "{raw}");
    assert!(!dotlock_path(&mbox).exists());

    let messages = python_read(&mbox, false);
    assert_eq!(messages.len(), 2, "{messages:?}");
    let (first, second) = (&messages[0], &messages[1]);
    assert!(first["from"].as_str().unwrap().starts_with("alice@example.org  "), "{first}");
    assert_eq!(first["headers"]["Return-Path"], "<alice@example.org>");
    assert_eq!(first["headers"]["Delivered-To"], "tom@example.com");
    assert_eq!(first["headers"]["X-Original-To"], "root@example.com");
    assert_eq!(first["headers"]["Subject"], "first");
    assert_eq!(first["body"], "Hello\n>From here\nbye\n");
    assert!(second["from"].as_str().unwrap().starts_with("MAILER-DAEMON  "), "{second}");
    assert_eq!(second["headers"]["Return-Path"], "<>");
    assert_eq!(second["body"], ">From the daemon\nno final newline\n");
}

#[test]
fn mutt_reads_the_mbox() {
    if !have(MUTT) || !have(SCRIPT) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mbox = dir.path().join("tom");
    deliver_two(&mbox);
    let before = std::fs::read(&mbox).unwrap();
    let out = dir.path().join("piped");
    let screen = dir.path().join("screen");
    // Without ~/Mail, mutt asks whether to create it, and that prompt eats the pushed keys.
    std::fs::create_dir(dir.path().join("Mail")).unwrap();
    // mutt needs a terminal: script(1) gives it a pty. Read-only (-R), no user config; tag
    // every message and pipe them all to a file, then quit.
    let mutt = format!(
        "{MUTT} -n -R -F /dev/null -f {} -e 'set wait_key=no' \
         -e 'push \"<tag-pattern>~A<enter><tag-prefix><pipe-entry>cat >{}<enter><quit>\"'",
        mbox.display(),
        out.display()
    );
    let mut cmd = Command::new(SCRIPT);
    cmd.args(["-q", "-f", "-e", "-c", &mutt]).arg(&screen).env("TERM", "vt100").env("HOME", dir.path());
    let output = run(cmd, Duration::from_secs(60));
    let screen = String::from_utf8_lossy(&std::fs::read(&screen).unwrap_or_default()).into_owned();
    assert!(output.status.success(), "mutt: {output:?}\n{screen}");
    assert!(screen.contains("Msgs:2"), "{screen}");
    let piped = std::fs::read_to_string(&out).unwrap();
    let separators = piped.lines().filter(|l| l.starts_with("From ")).count();
    assert_eq!(separators, 2, "{piped}");
    assert!(piped.contains("Subject: first\n") && piped.contains("Subject: second\n"), "{piped}");
    assert!(piped.contains("\n>From here\n"), "{piped}");
    assert_eq!(std::fs::read(&mbox).unwrap(), before, "mutt -R must not touch the mailbox");
}

#[test]
fn waits_for_a_lockf_writer() {
    if !have(PYTHON) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mbox = dir.path().join("tom");
    // A classic POSIX-lock writer (lockf), as mail(1) or Dovecot: appends under the lock and
    // keeps it a second.
    let script = r#"
import fcntl, sys, time
f = open(sys.argv[1], "a")
fcntl.lockf(f, fcntl.LOCK_EX)
f.write("From python@example.org  Thu Mar  7 09:05:01 2024\nSubject: python\n\nwritten under lockf\n\n")
f.flush()
print("locked", flush=True)
time.sleep(1.0)
f.close()
"#;
    let mut child = Command::new(PYTHON).args(["-c", script]).arg(&mbox).stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line, "locked\n");
    let start = Instant::now();
    deliver_mbox(&mbox, &message("a@example.org", b"Subject: ours\n\nbody\n"), &patient(), 0).unwrap();
    let waited = start.elapsed();
    assert!(child.wait().unwrap().success());
    assert!(waited >= Duration::from_millis(500), "did not wait for the lockf lock: {waited:?}");
    let messages = python_read(&mbox, false);
    let subjects: Vec<_> = messages.iter().map(|m| m["headers"]["Subject"].as_str().unwrap()).collect();
    assert_eq!(subjects, ["python", "ours"]);
}

#[test]
fn waits_for_a_fresh_dotlock_and_defers_when_it_stays() {
    let dir = tempfile::tempdir().unwrap();
    let mbox = dir.path().join("tom");
    let lock = dotlock_path(&mbox);
    std::fs::write(&lock, "4242\n").unwrap();

    let quick = LockSettings { attempts: 5, delay: Duration::from_millis(20), ..LockSettings::default() };
    let error = deliver_mbox(&mbox, &message("a@b", b"Subject: x\n\nx\n"), &quick, 0).unwrap_err();
    assert!(error.temporary);
    assert_eq!(error.dsn, "4.2.0");
    assert!(
        error.text.contains(&format!("unable to create lock file {}: File exists", lock.display())),
        "{}",
        error.text
    );
    assert_eq!(size(&mbox), 0);

    let remover = {
        let lock = lock.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(1));
            std::fs::remove_file(lock).unwrap();
        })
    };
    let start = Instant::now();
    deliver_mbox(&mbox, &message("a@b", b"Subject: x\n\nx\n"), &patient(), 0).unwrap();
    assert!(start.elapsed() >= Duration::from_millis(800), "did not wait: {:?}", start.elapsed());
    remover.join().unwrap();
    assert!(!lock.exists());
    assert!(size(&mbox) > 0);
}

#[test]
fn breaks_a_stale_dotlock() {
    let dir = tempfile::tempdir().unwrap();
    let mbox = dir.path().join("tom");
    let lock = dotlock_path(&mbox);
    std::fs::write(&lock, "4242\n").unwrap();
    File::options()
        .write(true)
        .open(&lock)
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(1000))
        .unwrap();
    let settings = LockSettings { stale: Duration::from_secs(500), ..patient() };
    let start = Instant::now();
    deliver_mbox(&mbox, &message("a@b", b"Subject: x\n\nx\n"), &settings, 0).unwrap();
    assert!(start.elapsed() < Duration::from_secs(2), "waited on a stale lock: {:?}", start.elapsed());
    assert!(!lock.exists());
    assert!(size(&mbox) > 0);
}

/// The message `n` of writer `t`, with a `From ` line and enough lines to interleave.
fn numbered(t: usize, n: usize) -> (String, String) {
    let mut body = format!("From writer {t}\n");
    for i in 0..20 {
        body.push_str(&format!("line {i} of message {t}/{n}\n"));
    }
    (format!("Subject: writer {t} message {n}\n\n{body}"), body.replacen("From ", ">From ", 1))
}

#[test]
fn concurrent_writers_never_interleave() {
    if !have(PYTHON) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mbox = dir.path().join("tom");
    let settings = LockSettings { attempts: 5000, delay: Duration::from_millis(2), ..LockSettings::default() };
    std::thread::scope(|scope| {
        for t in 0..4 {
            let (mbox, settings) = (&mbox, &settings);
            scope.spawn(move || {
                for n in 0..50 {
                    let (content, _) = numbered(t, n);
                    deliver_mbox(mbox, &message("w@example.org", content.as_bytes()), settings, 0).unwrap();
                }
            });
        }
    });
    let messages = python_read(&mbox, false);
    assert_eq!(messages.len(), 200);
    let mut seen = BTreeSet::new();
    for m in &messages {
        let subject = m["headers"]["Subject"].as_str().unwrap();
        let (t, n) = subject.strip_prefix("writer ").unwrap().split_once(" message ").unwrap();
        let (t, n): (usize, usize) = (t.parse().unwrap(), n.parse().unwrap());
        assert_eq!(m["body"].as_str().unwrap(), numbered(t, n).1, "message {t}/{n} damaged");
        assert_eq!(m["headers"]["Delivered-To"], "tom@example.com");
        assert!(seen.insert((t, n)), "{subject} twice");
    }
}

#[test]
fn procmail_lockfile_is_respected_both_ways() {
    if !have(LOCKFILE) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mbox = dir.path().join("tom");
    let lock = dotlock_path(&mbox);
    let lockfile = |retries: &str| {
        let mut cmd = Command::new(LOCKFILE);
        cmd.args(["-r", retries]).arg(&lock);
        run(cmd, Duration::from_secs(30)).status.success()
    };

    // procmail's lockfile holds MBOX.lock: we wait until it is removed.
    assert!(lockfile("0"));
    let writer = {
        let mbox = mbox.clone();
        std::thread::spawn(move || deliver_mbox(&mbox, &message("a@b", b"Subject: x\n\nx\n"), &patient(), 0))
    };
    std::thread::sleep(Duration::from_secs(1));
    assert!(!writer.is_finished(), "delivered while lockfile held the lock");
    assert_eq!(size(&mbox), 0);
    std::fs::remove_file(&lock).unwrap();
    writer.join().unwrap().unwrap();
    assert!(size(&mbox) > 0);

    // Our lock: lockfile gives up while we hold it, and gets it once we are done.
    let file = File::options().append(true).open(&mbox).unwrap();
    let held = lock_mailbox(&file, &mbox, &LockSettings::default()).unwrap();
    assert!(!lockfile("0"), "lockfile got the lock we hold");
    drop(held);
    assert!(lockfile("0"));
    std::fs::remove_file(&lock).unwrap();
}

#[test]
fn procmail_and_we_share_a_mailbox() {
    if !have(PROCMAIL) || !have(PYTHON) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mbox = dir.path().join("tom");
    let rc = dir.path().join("procmailrc");
    // `:0:` = procmail's own dotlock MBOX.lock, plus its fcntl lock on the file.
    std::fs::write(&rc, format!("SHELL=/bin/sh\nLOCKSLEEP=1\nLOCKTIMEOUT=0\n:0:\n{}\n", mbox.display())).unwrap();
    let settings = LockSettings { attempts: 5000, delay: Duration::from_millis(5), ..LockSettings::default() };
    const EACH: usize = 8;
    std::thread::scope(|scope| {
        for t in 0..2 {
            let (mbox, settings) = (&mbox, &settings);
            scope.spawn(move || {
                for n in 0..EACH {
                    let (content, _) = numbered(t, n);
                    deliver_mbox(mbox, &message("w@example.org", content.as_bytes()), settings, 0).unwrap();
                }
            });
        }
        for t in 2..4 {
            let rc = &rc;
            scope.spawn(move || {
                for n in 0..EACH {
                    let (content, _) = numbered(t, n);
                    let content = format!("Delivered-To: tom@example.com\n{content}");
                    let mut child = Command::new(PROCMAIL)
                        .args(["-m", "-f", "p@example.org"])
                        .arg(rc)
                        .stdin(Stdio::piped())
                        .spawn()
                        .unwrap();
                    std::io::Write::write_all(&mut child.stdin.take().unwrap(), content.as_bytes()).unwrap();
                    assert!(child.wait().unwrap().success(), "procmail failed");
                }
            });
        }
    });
    let messages = python_read(&mbox, false);
    assert_eq!(messages.len(), 4 * EACH);
    for m in &messages {
        let subject = m["headers"]["Subject"].as_str().unwrap();
        let (t, n) = subject.strip_prefix("writer ").unwrap().split_once(" message ").unwrap();
        let (t, n): (usize, usize) = (t.parse().unwrap(), n.parse().unwrap());
        let body = m["body"].as_str().unwrap();
        // procmail leaves no blank line of its own at the end: compare what both write.
        assert_eq!(body.trim_end(), numbered(t, n).1.trim_end(), "message {t}/{n} damaged");
    }
}

const FSIZE_CHILD: &str = "TIDEMAIL_TEST_FSIZE_CHILD";

/// Not a test of its own: `disk_full_truncates_back` runs this test binary again with
/// FSIZE_CHILD set, and only then does it deliver under a small RLIMIT_FSIZE.
#[test]
fn disk_full_child() {
    let Ok(spec) = std::env::var(FSIZE_CHILD) else { return };
    let (limit, mbox) = spec.split_once(':').unwrap();
    let limit: u64 = limit.parse().unwrap();
    // SAFETY: single-purpose child; ignoring SIGXFSZ turns the signal into EFBIG from write().
    unsafe {
        nix::sys::signal::signal(nix::sys::signal::Signal::SIGXFSZ, nix::sys::signal::SigHandler::SigIgn).unwrap();
        let rlimit = libc::rlimit { rlim_cur: limit, rlim_max: limit };
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &rlimit), 0);
    }
    let content = format!("Subject: big\n\n{}", ("x".repeat(70) + "\n").repeat(1000));
    let error = deliver_mbox(Path::new(mbox), &message("a@b", content.as_bytes()), &LockSettings::default(), 0)
        .expect_err("the write must fail");
    println!("CHILD-RESULT temporary={} dsn={} text={}", error.temporary, error.dsn, error.text);
}

#[test]
fn disk_full_truncates_back() {
    let dir = tempfile::tempdir().unwrap();
    let mbox = dir.path().join("tom");
    deliver_mbox(&mbox, &message("a@b", b"Subject: one\n\nfirst\n"), &LockSettings::default(), 0).unwrap();
    let before = std::fs::read(&mbox).unwrap();
    let limit = before.len() as u64 + 1000;
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "disk_full_child", "--nocapture", "--test-threads=1"])
        .env(FSIZE_CHILD, format!("{limit}:{}", mbox.display()));
    let output = run(cmd, Duration::from_secs(60));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "child: {stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let result = stdout.split_once("CHILD-RESULT ").and_then(|(_, r)| r.lines().next()).expect("child result");
    assert!(result.starts_with("temporary=true dsn=4."), "{result}");
    assert!(result.contains("error writing message: File too large"), "{result}");
    assert_eq!(std::fs::read(&mbox).unwrap(), before, "the half-written message was not cut off");
    assert!(!dotlock_path(&mbox).exists());
}

const NODOTLOCK_CHILD: &str = "TIDEMAIL_TEST_NODOTLOCK_CHILD";

/// Not a test of its own: run by `dotlock_is_skipped_in_an_unwritable_directory`, as a user
/// that may write the mailbox but not its directory.
#[test]
fn unwritable_directory_child() {
    let Ok(mbox) = std::env::var(NODOTLOCK_CHILD) else { return };
    let result = deliver_mbox(Path::new(&mbox), &message("a@b", b"Subject: x\n\nx\n"), &LockSettings::default(), 0);
    println!("CHILD-RESULT {result:?}");
}

#[test]
fn dotlock_is_skipped_in_an_unwritable_directory() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    std::fs::create_dir(&spool).unwrap();
    let mbox = spool.join("tom");
    File::create(&mbox).unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut cmd;
    if is_root() {
        // Root may write anywhere: the delivery runs as nobody, owner of the mailbox only.
        let nobody = nix::unistd::User::from_name("nobody").unwrap().expect("user nobody");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        nix::unistd::chown(&mbox, Some(nobody.uid), Some(nobody.gid)).unwrap();
        cmd = Command::new("setpriv");
        cmd.arg(format!("--reuid={}", nobody.uid))
            .arg(format!("--regid={}", nobody.gid))
            .arg("--clear-groups")
            .arg(&exe);
    } else {
        std::fs::set_permissions(&spool, std::fs::Permissions::from_mode(0o555)).unwrap();
        cmd = Command::new(&exe);
    }
    cmd.args(["--exact", "unwritable_directory_child", "--nocapture", "--test-threads=1"]).env(NODOTLOCK_CHILD, &mbox);
    let output = run(cmd, Duration::from_secs(60));
    std::fs::set_permissions(&spool, std::fs::Permissions::from_mode(0o755)).unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    if is_root() && stderr.contains("failed to execute") {
        eprintln!("note: nobody cannot run {}: test skipped ({stderr})", exe.display());
        return;
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "child: {stdout}\n{stderr}");
    let result = stdout.split_once("CHILD-RESULT ").and_then(|(_, r)| r.lines().next()).expect("child result");
    assert_eq!(result, "Ok(())");
    assert!(size(&mbox) > 0);
    assert!(!dotlock_path(&mbox).exists());
}

#[test]
fn maildir_read_back_by_python() {
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("Maildir");
    let first = deliver_maildir(&maildir, &message("a@example.org", b"Subject: one\n\nFrom here\n")).unwrap();
    let second = deliver_maildir(&maildir, &message("", b"Subject: two\n\nno newline")).unwrap();
    let in_dir = |sub: &str| -> Vec<PathBuf> {
        std::fs::read_dir(maildir.join(sub)).unwrap().map(|e| e.unwrap().path()).collect::<Vec<_>>()
    };
    let mut new = in_dir("new");
    new.sort();
    let mut expected = vec![first, second];
    expected.sort();
    assert_eq!(new, expected);
    assert!(in_dir("tmp").is_empty());
    assert!(in_dir("cur").is_empty());
    if !have(PYTHON) {
        return;
    }
    let mut messages = python_read(&maildir, true);
    assert_eq!(messages.len(), 2);
    messages.sort_by_key(|m| m["headers"]["Subject"].as_str().unwrap().to_string());
    assert_eq!(messages[0]["headers"]["Return-Path"], "<a@example.org>");
    assert_eq!(messages[0]["headers"]["Delivered-To"], "tom@example.com");
    assert_eq!(messages[0]["headers"]["X-Original-To"], "root@example.com");
    // No From_ line and no quoting in a Maildir.
    assert_eq!(messages[0]["body"], "From here\n");
    assert_eq!(messages[1]["headers"]["Return-Path"], "<>");
    assert_eq!(messages[1]["body"], "no newline\n");
}

#[test]
fn symlinked_mailbox_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("target");
    std::fs::write(&target, "").unwrap();
    let mbox = dir.path().join("tom");
    std::os::unix::fs::symlink(&target, &mbox).unwrap();
    let error = deliver_mbox(&mbox, &message("a@b", b"Subject: x\n\nx\n"), &LockSettings::default(), 0).unwrap_err();
    assert!(!error.temporary);
    assert_eq!(error.dsn, "5.2.0");
    assert!(error.text.starts_with(&format!("cannot update mailbox {} for user ", mbox.display())), "{}", error.text);
    assert!(error.text.ends_with(". file is a symbolic link"), "{}", error.text);
    assert_eq!(size(&target), 0);
    assert!(!dotlock_path(&mbox).exists());
}

#[test]
fn hard_linked_mailbox_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("target");
    std::fs::write(&target, "").unwrap();
    let mbox = dir.path().join("tom");
    std::fs::hard_link(&target, &mbox).unwrap();
    let error = deliver_mbox(&mbox, &message("a@b", b"Subject: x\n\nx\n"), &LockSettings::default(), 0).unwrap_err();
    assert!(!error.temporary);
    assert_eq!(error.dsn, "5.2.0");
    assert!(error.text.ends_with(". file has 2 hard links"), "{}", error.text);
    assert_eq!(size(&target), 0);
}
