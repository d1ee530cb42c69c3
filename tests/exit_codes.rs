//! sendmail's exit codes (sysexits.h), each with one clear line on stderr.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use common::{Env, message};

fn code_and_error(out: std::process::Output) -> (Option<i32>, String) {
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn queued_is_0_and_silent() {
    let env = Env::new();
    let (code, err) = code_and_error(env.sendmail(&["r@remote.example"], &message(1, "")));
    assert_eq!((code, err.as_str()), (Some(0), ""));
}

#[test]
fn usage_errors_are_64() {
    let env = Env::new();
    for (args, needle) in [
        (&["-Z", "r@remote.example"][..], "-Z"),
        (&["-bv", "r@remote.example"][..], "-bv"),
        (&[][..], "no recipients"),
        (&["-f"][..], "-f"),
        (&["-N", "sometimes", "r@remote.example"][..], "sometimes"),
    ] {
        let (code, err) = code_and_error(env.sendmail(args, &message(1, "")));
        assert_eq!(code, Some(64), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    assert!(env.files("maildrop").is_empty());
}

#[test]
fn bad_data_is_65() {
    let env = Env::with_config("message_size_limit = 2000\n");
    let big = [message(1, "").as_slice(), &[b'x'; 5000], b"\n"].concat();
    let (code, err) = code_and_error(env.sendmail(&["r@remote.example"], &big));
    assert_eq!(code, Some(65), "{err}");
    assert!(err.contains("exceeds limit of 2000 bytes"), "{err}");
    let (code, err) = code_and_error(env.sendmail(&["-t"], b"Subject: nobody\n\nhi\n"));
    assert_eq!(code, Some(65), "{err}");
    assert!(err.contains("no recipient addresses found in message header"), "{err}");
    assert!(env.files("maildrop").is_empty(), "nothing half-written may remain");
}

#[test]
fn cannot_create_is_73() {
    let env = Env::new();
    assert!(env.sendmail(&["r@remote.example"], &message(1, "")).status.success()); // creates the tree
    let maildrop = env.queue.join("maildrop");
    fs::remove_dir_all(&maildrop).unwrap();
    fs::write(&maildrop, b"not a directory").unwrap();
    let (code, err) = code_and_error(env.sendmail(&["r@remote.example"], &message(2, "")));
    assert_eq!(code, Some(73), "{err}");
    assert!(err.contains("cannot create queue file"), "{err}");
}

#[test]
fn no_room_is_75() {
    let env = Env::with_config("queue_minfree = 18446744073709551615\n");
    let (code, err) = code_and_error(env.sendmail(&["r@remote.example"], &message(1, "")));
    assert_eq!(code, Some(75), "{err}");
    assert!(err.contains("insufficient system storage"), "{err}");
}

#[test]
fn unwritable_queue_is_75() {
    if !common::is_root() {
        eprintln!("skipped: needs root to run sendmail as another user");
        return;
    }
    let env = Env::new();
    assert!(env.sendmail(&["r@remote.example"], &message(1, "")).status.success());
    // Take away the others' write bit; an ordinary user can then not submit.
    let maildrop = env.queue.join("maildrop");
    fs::set_permissions(&maildrop, fs::Permissions::from_mode(0o3730)).unwrap();
    let mut cmd = std::process::Command::new("setpriv");
    cmd.args(["--reuid=1", "--regid=1", "--clear-groups", "--"]) // not mail_owner (nobody)
        .arg(env.bin.join("sendmail"))
        .arg("r@remote.example")
        .env("TIDEMAIL_CONFIG", &env.config);
    let (code, err) = code_and_error(common::run_with_input(cmd, &message(2, "")));
    assert_eq!(code, Some(75), "{err}");
    assert!(err.contains("Permission denied"), "{err}");
}

#[test]
fn broken_config_is_75_for_sendmail() {
    let env = Env::with_config("mydestnation = \"x\"\n");
    let (code, err) = code_and_error(env.sendmail(&["r@remote.example"], &message(1, "")));
    assert_eq!(code, Some(75), "{err}");
    assert!(err.contains("mydestination"), "{err}");
}

#[test]
fn names_by_argv0() {
    let env = Env::new();
    let out = env.as_name("newaliases", &[]).output().unwrap();
    assert!(out.status.success());
    let out = env.as_name("mailq", &[]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "Mail queue is empty");
}
