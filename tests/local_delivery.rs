//! Local delivery through the real daemon started as root: the privileged helper delivers as
//! each target's user (a throwaway account made for these tests), aliases and .forward files
//! are followed, and what cannot be delivered bounces. Every wait is bounded.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::{Env, message};

const USER: &str = "tmlocal";

/// Every test delivers to the one test account and some put files in its home: one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The test account (created once, as root): its uid and home directory, and the guard that
/// keeps the other tests out while the caller holds it.
fn account() -> Option<(std::sync::MutexGuard<'static, ()>, &'static (u32, PathBuf))> {
    let guard = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    Some((guard, account_once()?))
}

fn account_once() -> Option<&'static (u32, PathBuf)> {
    static ACCOUNT: OnceLock<Option<(u32, PathBuf)>> = OnceLock::new();
    ACCOUNT
        .get_or_init(|| {
            if !common::is_root() {
                eprintln!("skipped: local delivery to another user needs root (CI runs as root)");
                return None;
            }
            let home = PathBuf::from("/var/tmp/tidemail-test-home");
            if nix::unistd::User::from_name(USER).unwrap().is_none() {
                let out = Command::new("useradd")
                    .args(["--system", "--no-create-home", "--home-dir"])
                    .arg(&home)
                    .args(["--shell", "/bin/sh", USER])
                    .output()
                    .unwrap();
                assert!(out.status.success(), "useradd: {}", String::from_utf8_lossy(&out.stderr));
            }
            let user = nix::unistd::User::from_name(USER).unwrap().unwrap();
            fs::create_dir_all(&home).unwrap();
            nix::unistd::chown(&home, Some(user.uid), Some(user.gid)).unwrap();
            fs::set_permissions(&home, fs::Permissions::from_mode(0o755)).unwrap();
            Some((user.uid.as_raw(), home))
        })
        .as_ref()
}

/// A scratch installation whose spool directory is world-writable and sticky (as some
/// systems keep /var/mail), with `aliases` as its alias table.
fn local_env(aliases: &str, extra: &str) -> (Env, PathBuf) {
    // Env keeps mailboxes in a scratch spool (1777) and starts with no aliases.
    let env = Env::with_config(&format!("alias_maps = [\"hash:$config_directory/aliases\"]\n{extra}"));
    let spool = env.dir.path().join("spool");
    let table = env.write_file("aliases", aliases);
    // As an admin would: the aliases(5) source compiled like postalias / newaliases.
    let out = env.tidemail(&["map", "build", "--aliases", &format!("hash:{}", table.display())]).output().unwrap();
    assert!(out.status.success(), "map build: {}", String::from_utf8_lossy(&out.stderr));
    (env, spool)
}

fn clean_home(home: &Path) {
    for entry in fs::read_dir(home).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() { fs::remove_dir_all(&path).unwrap() } else { fs::remove_file(&path).unwrap() }
    }
}

#[test]
fn root_is_aliased_to_a_user_whose_mailbox_is_written_as_that_user() {
    let Some((_one, (uid, _))) = account() else { return };
    let (env, spool) = local_env(&format!("root: {USER}\npostmaster: root\n"), "");
    let daemon = env.start_daemon();
    env.submit(&["-f", "alice@remote.example", "root@mail.test.example"], &message(1, "From: alice@remote.example\n"));
    let id = daemon.queue_id_of("<test-1@test.example>");
    daemon.wait_log(&format!("{id}: removed"));
    let log = daemon.log();
    let line = format!("{id}: to=<{USER}@mail.test.example>, orig_to=<root@mail.test.example>, relay=local, delay=");
    assert!(log.contains(&line), "{log}");
    assert!(log.contains("dsn=2.0.0, status=sent (delivered to mailbox)"), "{log}");
    assert!(log.contains("tidemail/local["), "{log}");

    let mbox = spool.join(USER);
    let meta = fs::metadata(&mbox).unwrap();
    assert_eq!(meta.uid(), *uid, "the mailbox must belong to the user, not root");
    assert_eq!(meta.mode() & 0o777, 0o600);
    let text = fs::read_to_string(&mbox).unwrap();
    assert!(text.starts_with("From alice@remote.example "), "{text}");
    assert!(text.contains(&format!("\nDelivered-To: {USER}@mail.test.example\n")), "{text}");
    assert!(text.contains("Return-Path: <alice@remote.example>\n"), "{text}");
    assert!(text.contains("X-Original-To: root@mail.test.example\n"), "{text}");
    assert!(text.ends_with("body of message 1\n\n"), "{text}");
}

#[test]
fn maildir_in_the_home_directory() {
    let Some((_one, (uid, home))) = account() else { return };
    let (env, _) = local_env("", "home_mailbox = \"Maildir/\"\n");
    // Only this test uses the home directory's Maildir.
    clean_home(home);
    let daemon = env.start_daemon();
    env.submit(&["-f", "alice@remote.example", &format!("{USER}@mail.test.example")], &message(2, ""));
    let id = daemon.queue_id_of("<test-2@test.example>");
    daemon.wait_log(&format!("{id}: removed"));
    assert!(daemon.log().contains("status=sent (delivered to maildir)"), "{}", daemon.log());
    let new: Vec<PathBuf> = fs::read_dir(home.join("Maildir/new")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(new.len(), 1);
    assert_eq!(fs::metadata(&new[0]).unwrap().uid(), *uid);
    assert!(fs::read_dir(home.join("Maildir/tmp")).unwrap().next().is_none());
    clean_home(home);
}

#[test]
fn alias_commands_run_as_default_privs_with_the_recipient_in_the_environment() {
    let Some((_one, _)) = account() else { return };
    let out = tempfile::tempdir().unwrap();
    fs::set_permissions(out.path(), fs::Permissions::from_mode(0o1777)).unwrap();
    let file = out.path().join("seen");
    let command = format!("|/bin/sh -c 'id -u > {0}; echo $RECIPIENT >> {0}; cat >> {0}'", file.display());
    let (env, _) = local_env(&format!("robot: \"{command}\"\n"), "");
    let daemon = env.start_daemon();
    // A sender that would be a command if anything pasted it into a shell string.
    env.submit(&["-f", "x`touch${IFS}/tmp/tidemail-pwned`@remote.example", "robot@mail.test.example"], &message(3, ""));
    let id = daemon.queue_id_of("<test-3@test.example>");
    daemon.wait_log(&format!("{id}: removed"));
    assert!(daemon.log().contains("status=sent (delivered to command: "), "{}", daemon.log());
    let seen = fs::read_to_string(&file).unwrap();
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap().uid.as_raw();
    assert!(seen.starts_with(&format!("{nobody}\nrobot@mail.test.example\n")), "{seen}");
    assert!(seen.contains("body of message 3"), "{seen}");
    assert!(!Path::new("/tmp/tidemail-pwned").exists());
}

#[test]
fn unknown_users_bounce_and_addresses_elsewhere_are_forwarded() {
    let Some((_one, _)) = account() else { return };
    let (env, _) = local_env("fwd: friend@remote.example\n", "");
    let daemon = env.start_daemon();
    env.submit(
        &["-f", "alice@remote.example", "nosuchuser@mail.test.example", "fwd@mail.test.example"],
        &message(4, ""),
    );
    let id = daemon.queue_id_of("<test-4@test.example>");
    daemon.wait_log(&format!("{id}: removed"));
    let log = daemon.log();
    assert!(
        log.contains(&format!("{id}: to=<nosuchuser@mail.test.example>, relay=local"))
            && log.contains("dsn=5.1.1, status=bounced (unknown user: \"nosuchuser\")"),
        "{log}"
    );
    assert!(log.contains("sender non-delivery notification"), "{log}");
    assert!(log.contains(&format!("{id}: to=<fwd@mail.test.example>, relay=local")), "{log}");
    assert!(log.contains("status=sent (forwarded as "), "{log}");
    // The copy waits for the smarthost (held), with Delivered-To: on top.
    let store = env.store();
    let copy = || {
        env.files("deferred")
            .into_iter()
            .filter_map(|id| store.read_entry(tidemail::queue::QueueName::Deferred, &id).ok())
            .find(|e| e.envelope.recipients[0].address == "friend@remote.example")
    };
    daemon.wait_until("the forwarded copy held", || copy().is_some());
    let copy = copy().unwrap();
    assert_eq!(copy.envelope.sender, "alice@remote.example");
    let (_, mut reader) = store.open_message(tidemail::queue::QueueName::Deferred, &copy.id).unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut reader, &mut text).unwrap();
    assert!(text.starts_with("Delivered-To: fwd@mail.test.example\n"), "{text}");
}

#[test]
fn a_forward_file_writable_by_others_is_ignored() {
    let Some((_one, (uid, home))) = account() else { return };
    let (env, spool) = local_env("", "");
    let forward = home.join(".forward");
    fs::write(&forward, "elsewhere@remote.example\n").unwrap();
    nix::unistd::chown(&forward, Some(nix::unistd::Uid::from_raw(*uid)), None).unwrap();
    fs::set_permissions(&forward, fs::Permissions::from_mode(0o666)).unwrap();
    let daemon = env.start_daemon();
    env.submit(&["-f", "alice@remote.example", &format!("{USER}@mail.test.example")], &message(5, ""));
    let id = daemon.queue_id_of("<test-5@test.example>");
    daemon.wait_log(&format!("{id}: removed"));
    fs::remove_file(&forward).unwrap();
    let log = daemon.log();
    assert!(log.contains("status=sent (delivered to mailbox)"), "{log}");
    assert!(!log.contains("forwarded as"), "{log}");
    assert!(log.contains(".forward"), "the refusal is logged: {log}");
    assert!(fs::read_to_string(spool.join(USER)).unwrap().contains("body of message 5"));
}

#[test]
fn a_message_that_was_here_before_is_a_loop() {
    let Some((_one, _)) = account() else { return };
    let (env, _) = local_env("", "");
    let daemon = env.start_daemon();
    let headers = format!("Delivered-To: {USER}@mail.test.example\n");
    env.submit(&["-f", "alice@remote.example", &format!("{USER}@mail.test.example")], &message(6, &headers));
    let id = daemon.queue_id_of("<test-6@test.example>");
    daemon.wait_log(&format!("{id}: removed"));
    let log = daemon.log();
    assert!(
        log.contains(&format!("dsn=5.4.6, status=bounced (mail forwarding loop for {USER}@mail.test.example)")),
        "{log}"
    );
}

#[test]
fn a_hostile_forward_cannot_write_as_root() {
    let Some((_one, (uid, home))) = account() else { return };
    let (env, _) = local_env("", "");
    let target = PathBuf::from("/etc/tidemail-test-pwned");
    let _ = fs::remove_file(&target);
    let forward = home.join(".forward");
    fs::write(&forward, format!("{}\n", target.display())).unwrap();
    nix::unistd::chown(&forward, Some(nix::unistd::Uid::from_raw(*uid)), None).unwrap();
    fs::set_permissions(&forward, fs::Permissions::from_mode(0o600)).unwrap();
    let daemon = env.start_daemon();
    env.submit(&["-f", "alice@remote.example", &format!("{USER}@mail.test.example")], &message(7, ""));
    let id = daemon.queue_id_of("<test-7@test.example>");
    daemon.wait_until("the attempt", || daemon.log().contains(&format!("{id}: to=<{USER}@mail.test.example>")));
    fs::remove_file(&forward).unwrap();
    // Written as the user, who may not create files in /etc: refused, nothing written.
    assert!(!target.exists(), "a user's .forward wrote a file as root");
    let log = daemon.log();
    assert!(log.contains("/etc/tidemail-test-pwned") && !log.contains("status=sent (delivered to file"), "{log}");
}

#[test]
fn procmail_as_mailbox_command_files_by_subject() {
    let Some((_one, (uid, home))) = account() else { return };
    if !Path::new("/usr/bin/procmail").exists() {
        eprintln!("skipped: procmail is not installed (.ci/test installs it)");
        return;
    }
    let (env, _) =
        local_env("", "mailbox_command = \"/usr/bin/procmail -a \\\"$EXTENSION\\\"\"\nrecipient_delimiter = \"+\"\n");
    clean_home(home);
    let rc = home.join(".procmailrc");
    fs::write(
        &rc,
        format!(
            "MAILDIR={0}\nDEFAULT={0}/inbox\nLOGFILE={0}/procmail.log\nARG=$1\n:0:\n* ^Subject:.*invoice\ninvoices\n:0:\n* ARG ?? ^^lists^^\nlists\n",
            home.display()
        ),
    )
    .unwrap();
    nix::unistd::chown(&rc, Some(nix::unistd::Uid::from_raw(*uid)), None).unwrap();
    fs::set_permissions(&rc, fs::Permissions::from_mode(0o644)).unwrap();
    let daemon = env.start_daemon();
    let submit = |n: usize, to: String, subject: &str| {
        let text = format!("Subject: {subject}\nMessage-ID: <test-{n}@test.example>\n\nbody {n}\n");
        env.submit(&["-f", "alice@remote.example", &to], text.as_bytes());
    };
    submit(8, format!("{USER}@mail.test.example"), "invoice 42");
    submit(9, format!("{USER}+lists@mail.test.example"), "weekly digest");
    submit(10, format!("{USER}@mail.test.example"), "hello");
    for n in 8..=10 {
        let id = daemon.queue_id_of(&format!("<test-{n}@test.example>"));
        daemon.wait_log(&format!("{id}: removed"));
    }
    let log = daemon.log();
    assert_eq!(
        log.matches("status=sent (delivered to command: /usr/bin/procmail -a \"$EXTENSION\")").count(),
        3,
        "{log}"
    );
    let read = |name: &str| fs::read_to_string(home.join(name)).unwrap_or_default();
    assert!(read("invoices").contains("body 8") && !read("invoices").contains("body 10"), "{}", read("procmail.log"));
    assert!(read("lists").contains("body 9"), "{}", read("procmail.log"));
    assert!(read("inbox").contains("body 10"), "{}", read("procmail.log"));
    assert_eq!(fs::metadata(home.join("inbox")).unwrap().uid(), *uid);
    clean_home(home);
}
