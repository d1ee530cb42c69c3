//! Local submission by ordinary users: they can submit, but cannot read, change or remove
//! other users' queued mail, cannot forge the submitting uid, and cannot trick pickup with
//! links or FIFOs. Needs root (to act as several users); CI runs as root.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::time::Duration;

use common::{Env, message, wait_for};
use nix::unistd::Uid;
use tidemail::queue::{Envelope, Origin, QueueName, Recipient, Submission};

const ALICE: u32 = 65534; // nobody
const MALLORY: u32 = 1; // daemon, another unprivileged account

fn as_user(uid: u32, program: &str) -> Command {
    let mut c = Command::new("setpriv");
    c.arg(format!("--reuid={uid}")).arg(format!("--regid={uid}")).args(["--clear-groups", "--", program]);
    c
}

fn root_or_skip() -> bool {
    if !common::is_root() {
        eprintln!("skipped: needs root to act as several users");
        return false;
    }
    true
}

/// A queue whose owner is neither test user: `mail` (uid 8) exists on Debian.
fn env() -> Env {
    Env::with_config("mail_owner = \"mail\"\n")
}

fn submit_as(env: &Env, uid: u32, n: usize) {
    let mut cmd = as_user(uid, env.bin.join("sendmail").to_str().unwrap());
    cmd.env("TIDEMAIL_CONFIG", &env.config).arg("r@remote.example");
    let out = common::run_with_input(cmd, &message(n, ""));
    assert!(out.status.success(), "submit as {uid}: {}", String::from_utf8_lossy(&out.stderr));
}

fn shell_as(uid: u32, script: &str) -> std::process::Output {
    as_user(uid, "/bin/sh").args(["-c", script]).output().unwrap()
}

#[test]
fn others_cannot_list_read_or_remove_maildrop_files() {
    if !root_or_skip() {
        return;
    }
    let env = env();
    drop(env.start_daemon()); // creates the tree as mail_owner
    submit_as(&env, ALICE, 1);
    let name = env.files("maildrop").remove(0);
    let path = env.queue.join("maildrop").join(&name);
    assert_eq!(fs::metadata(&path).unwrap().uid(), ALICE);

    let dir = env.queue.join("maildrop");
    let out = shell_as(MALLORY, &format!("ls {}", dir.display()));
    assert!(!out.status.success(), "listing maildrop must fail");
    for attempt in [
        format!("cat {}", path.display()),
        format!("rm -f {}", path.display()),
        format!("mv {} {}/x", path.display(), dir.display()),
        format!("echo garbage >> {}", path.display()),
    ] {
        let out = shell_as(MALLORY, &attempt);
        assert!(!out.status.success(), "{attempt} should fail");
    }
    assert!(path.exists());
    // After pickup the message is in mail_owner's private directories.
    let daemon = env.start_daemon();
    wait_for("pickup", Duration::from_secs(10), || env.files("deferred").len() == 1);
    let id = env.files("deferred").remove(0);
    daemon.wait_log(&format!("{id}: uid={ALICE} from=<nobody@mail.test.example>"));
    let deferred = env.queue.join("deferred").join(&id);
    for user in [ALICE, MALLORY] {
        for attempt in [format!("cat {}", deferred.display()), format!("rm -f {}", deferred.display())] {
            assert!(!shell_as(user, &attempt).status.success(), "{attempt} as {user} should fail");
        }
    }
    assert!(deferred.exists());
    // But any user gets the queue summary from the daemon, as Postfix's showq gives it.
    let mut mailq = as_user(MALLORY, env.bin.join("mailq").to_str().unwrap());
    let out = mailq.env("TIDEMAIL_CONFIG", &env.config).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&id));
}

#[test]
fn uid_cannot_be_forged_and_links_and_fifos_are_refused() {
    if !root_or_skip() {
        return;
    }
    let env = env();
    drop(env.start_daemon());
    let dir = env.queue.join("maildrop");
    // Mallory writes a maildrop file whose envelope claims root submitted it (he can write any
    // bytes into a file he owns: made here with the library, then handed to him).
    let store = env.store();
    let mut w = store.create(QueueName::Maildrop, 0).unwrap();
    w.write_content(b"Subject: forged\n\nhi\n").unwrap();
    let forged = Envelope {
        submission: Some(Submission { full_name: None, sender_from_uid: true }),
        ..Envelope::new("", vec![Recipient::new("r@remote.example")], Origin::Local { uid: 0 }, 0)
    };
    let forged_id = store.commit(w, &forged).unwrap();
    nix::unistd::chown(&dir.join(&forged_id), Some(Uid::from_raw(MALLORY)), None).unwrap();

    // Mallory's tricks: a symlink to root's file, a FIFO (would block a naive reader), a
    // directory.
    let secret = env.dir.path().join("root-secret");
    fs::write(&secret, "root only\n").unwrap();
    let out = shell_as(
        MALLORY,
        &format!(
            "ln -s {0} {1}/0000000000zLINK && mkfifo {1}/0000000000zFIFO && mkdir {1}/0000000000zDIR",
            secret.display(),
            dir.display()
        ),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // A hard link to a valid queue file of root's would carry uid 0. The kernel's
    // protected_hardlinks stops Mallory making it; pickup must refuse it even so.
    let elsewhere = env.dir.path().join("other-queue");
    tidemail::queue::layout::ensure(&elsewhere, None).unwrap();
    let other = tidemail::queue::QueueStore::new(&elsewhere);
    let mut w = other.create(QueueName::Maildrop, 0).unwrap();
    w.write_content(b"Subject: root's\n\nhi\n").unwrap();
    let root_id = other.commit(w, &forged).unwrap();
    fs::hard_link(other.path(QueueName::Maildrop, &root_id), dir.join("0000000000zHARD")).unwrap();

    let daemon = env.start_daemon();
    // Everything is handled; only Mallory's directory stays, since we cannot move it.
    daemon.wait_until("maildrop to empty", || env.files("maildrop") == ["0000000000zDIR"]);
    let log = daemon.log();
    assert!(log.contains("0000000000zLINK: is a symbolic link"), "{log}");
    assert!(log.contains("0000000000zFIFO: is not a regular file"), "{log}");
    assert!(log.contains("0000000000zDIR: is not a regular file; cannot move it to corrupt/"), "{log}");
    assert!(log.contains("0000000000zHARD: has 2 hard links"), "{log}");
    assert_eq!(env.files("corrupt").len(), 3, "{:?}", env.files("corrupt"));
    assert_eq!(fs::read_to_string(&secret).unwrap(), "root only\n");
    // The forged file was queued as Mallory's, whatever it claimed.
    wait_for("the forged file queued", Duration::from_secs(10), || env.files("deferred").len() == 1);
    let id = env.files("deferred").remove(0);
    daemon.wait_log(&format!("{id}: uid={MALLORY} from=<daemon@mail.test.example>"));
    assert!(!daemon.log().contains("uid=0 "), "{}", daemon.log());
}
