//! Lookup tables through the real binary: `tidemail map build/query` (postmap) and
//! newaliases under its three names, with their exit codes.

mod common;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

use common::{Env, run_with_input};

/// (exit code, stdout, stderr)
fn run(cmd: &mut Command) -> (Option<i32>, String, String) {
    let out = cmd.output().unwrap();
    split(out)
}

fn split(out: Output) -> (Option<i32>, String, String) {
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write(env: &Env, name: &str, text: &str) -> PathBuf {
    let path = env.dir.path().join(name);
    fs::write(&path, text).unwrap();
    path
}

fn spec(kind: &str, path: &Path) -> String {
    format!("{kind}:{}", path.display())
}

fn query(env: &Env, table: &str, keys: &[&str]) -> (Option<i32>, String, String) {
    let mut args = vec!["map", "query", table];
    args.extend_from_slice(keys);
    run(&mut env.tidemail(&args))
}

/// An Env whose alias_database is DIR/aliases.
fn alias_env() -> (Env, PathBuf) {
    let env = Env::new();
    let aliases = env.dir.path().join("aliases");
    let mut config = fs::OpenOptions::new().append(true).open(&env.config).unwrap();
    writeln!(config, "alias_database = [\"hash:{}\"]", aliases.display()).unwrap();
    (env, aliases)
}

#[test]
fn build_and_query_a_hash_table() {
    let env = Env::new();
    let source = write(&env, "access", "# access table\nExample.COM  OK\nspam@x.test  REJECT no\n  thanks\n");
    let table = spec("hash", &source);
    assert_eq!(run(&mut env.tidemail(&["map", "build", &table])), (Some(0), String::new(), String::new()));
    assert!(env.dir.path().join("access.cdb").exists());

    assert_eq!(query(&env, &table, &["example.com"]), (Some(0), "OK\n".into(), String::new()));
    assert_eq!(query(&env, &table, &["SPAM@X.TEST"]).1, "REJECT no  thanks\n", "keys are folded");
    assert_eq!(query(&env, &table, &["missing.example"]), (Some(1), String::new(), String::new()));
    // Several keys: key<TAB>value for those found.
    let (code, out, _) = query(&env, &table, &["nope", "example.com"]);
    assert_eq!((code, out.as_str()), (Some(0), "example.com\tOK\n"));
    // postmap -q - : keys on stdin.
    let out = run_with_input(env.tidemail(&["map", "query", &table, "-"]), b"a\nexample.com\nspam@x.test\n");
    assert_eq!(split(out).1, "example.com\tOK\nspam@x.test\tREJECT no  thanks\n");
    // A bare file name means hash:.
    assert_eq!(query(&env, source.to_str().unwrap(), &["example.com"]).1, "OK\n");
}

#[test]
fn build_warns_about_duplicates_and_refuses_bad_lines() {
    let env = Env::new();
    let source = write(&env, "virtual", "a@x first\nb@x b\nA@X second\n");
    let table = spec("hash", &source);
    let (code, _, err) = run(&mut env.tidemail(&["map", "build", &table]));
    assert_eq!(code, Some(0));
    assert!(err.contains("virtual, line 3: duplicate entry: \"a@x\""), "{err}");
    assert_eq!(query(&env, &table, &["a@x"]).1, "first\n");

    fs::write(&source, "a@x changed\nlonely\n").unwrap();
    let (code, _, err) = run(&mut env.tidemail(&["map", "build", &table]));
    assert_eq!(code, Some(78), "{err}");
    assert!(err.contains(&format!("{}, line 2:", source.display())), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(query(&env, &table, &["a@x"]).1, "first\n", "the old table stays in use");
}

#[test]
fn a_stale_compiled_file_is_warned_about() {
    let env = Env::new();
    let source = write(&env, "relocated", "bob@old.example bob@new.example\n");
    let table = spec("hash", &source);
    assert_eq!(run(&mut env.tidemail(&["map", "build", &table])).0, Some(0));
    let (code, _, err) = query(&env, &table, &["bob@old.example"]);
    assert_eq!((code, err.as_str()), (Some(0), ""));
    // An edit without a rebuild.
    let later = SystemTime::now() + Duration::from_secs(5);
    fs::File::options().write(true).open(&source).unwrap().set_modified(later).unwrap();
    let (code, out, err) = query(&env, &table, &["bob@old.example"]);
    assert_eq!((code, out.as_str()), (Some(0), "bob@new.example\n"));
    assert!(err.contains("warning: database") && err.contains("is older than source file"), "{err}");
    assert_eq!(err.lines().count(), 1, "once, not per lookup: {err}");
}

#[test]
fn table_errors_have_their_own_exit_codes() {
    let env = Env::new();
    // No compiled file: the table is unavailable (mail would wait), not "not found".
    let source = write(&env, "never-built", "a b\n");
    let (code, out, err) = query(&env, &spec("hash", &source), &["a"]);
    assert_eq!((code, out.as_str()), (Some(75), ""));
    assert!(err.contains("never-built.cdb"), "{err}");
    assert_eq!(query(&env, "fail:test", &["x"]).0, Some(75));
    assert_eq!(query(&env, "nosuchtype:x", &["x"]).0, Some(64));
    let (code, _, err) = run(&mut env.tidemail(&["map", "build", &spec("hash", &env.dir.path().join("absent"))]));
    assert_eq!(code, Some(78));
    assert!(err.contains("does not exist"), "{err}");
    assert_eq!(run(&mut env.tidemail(&["map", "build", "static:x"])).0, Some(64));
    let bad = write(&env, "bad.regexp", "/ok/ fine\nif /a/\n/(b/ broken\nendif\n");
    let (code, _, err) = query(&env, &spec("regexp", &bad), &["x"]);
    assert_eq!(code, Some(78));
    assert!(err.contains("bad.regexp, line 3: bad regular expression"), "{err}");
    let (code, _, err) = run(&mut env.tidemail(&["map", "build", &spec("regexp", &bad)]));
    assert_eq!(code, Some(78), "{err}");
}

#[test]
fn pattern_tables_substitute() {
    let env = Env::new();
    let regexp = write(
        &env,
        "canonical.regexp",
        "if !/^owner-/\n/^(.*)-outgoing@(.*)$/  550 Use ${1}@${2} instead\nendif\n/^([^@]+)@old\\.example$/ $1@new.example\n",
    );
    let table = spec("regexp", &regexp);
    assert_eq!(query(&env, &table, &["list-outgoing@Example.com"]).1, "550 Use list@Example.com instead\n");
    assert_eq!(query(&env, &table, &["owner-list-outgoing@example.com"]).0, Some(1));
    assert_eq!(query(&env, &table, &["Bob@OLD.example"]).1, "Bob@new.example\n");

    let pcre =
        write(&env, "header_checks.pcre", "/^Subject:\\s+(?:re:\\s*)*(\\d+)\\s*$/ REJECT number $1\n/^X-Spam/s HOLD\n");
    let table = spec("pcre", &pcre);
    assert_eq!(query(&env, &table, &["Subject: Re: re: 42"]).1, "REJECT number 42\n");
    assert_eq!(query(&env, &table, &["x-spam-flag: yes"]).1, "HOLD\n");

    let cidr = write(&env, "clients.cidr", "192.168.1.1 OK\n192.168.0.0/16 REJECT\n[2001:db8::]/32 REJECT6\n");
    let table = spec("cidr", &cidr);
    assert_eq!(query(&env, &table, &["192.168.1.1"]).1, "OK\n");
    assert_eq!(query(&env, &table, &["192.168.200.3"]).1, "REJECT\n");
    assert_eq!(query(&env, &table, &["2001:db8:1::7"]).1, "REJECT6\n");
    assert_eq!(query(&env, &table, &["10.0.0.1"]).0, Some(1));
    assert_eq!(query(&env, "cidr:{ { 10.0.0.0/8 inside } }", &["10.1.1.1"]).1, "inside\n");
}

#[test]
fn tables_without_files() {
    let env = Env::new();
    assert_eq!(query(&env, "inline:{ Alice=a@example.com, { bob = b c } }", &["alice"]).1, "a@example.com\n");
    assert_eq!(query(&env, "inline:{ Alice=a@example.com, { bob = b c } }", &["BOB"]).1, "b c\n");
    assert_eq!(query(&env, "inline:{ a=b }", &["c"]).0, Some(1));
    assert_eq!(query(&env, "static:relay:[smtp.example]", &["anything"]).1, "relay:[smtp.example]\n");
    let (code, out, _) = query(&env, "unix:passwd.byname", &["root"]);
    assert_eq!(code, Some(0));
    assert!(out.starts_with("root:") && out.trim_end().split(':').count() == 7, "{out}");
    assert_eq!(query(&env, "unix:passwd.byname", &["no-such-user-here"]).0, Some(1));
    assert!(query(&env, "unix:group.byname", &["root"]).1.starts_with("root:"));
    let texthash = write(&env, "transport", "example.com smtp:[relay.example]\n");
    assert_eq!(query(&env, &spec("texthash", &texthash), &["EXAMPLE.com"]).1, "smtp:[relay.example]\n");
}

#[test]
fn newaliases_under_every_name() {
    let (env, aliases) = alias_env();
    let table = spec("hash", &aliases);
    fs::write(&aliases, "# aliases\npostmaster: root\n\"list owner\": alice,\n  bob\n").unwrap();
    let (code, out, err) = run(&mut env.as_name("newaliases", &[]));
    assert_eq!((code, out.as_str(), err.as_str()), (Some(0), "", ""));
    assert_eq!(query(&env, &table, &["Postmaster"]).1, "root\n");
    assert_eq!(query(&env, &table, &["list owner"]).1, "alice,  bob\n");

    fs::write(&aliases, "postmaster: admin\n").unwrap();
    assert_eq!(run(&mut env.as_name("sendmail", &["-bi"])), (Some(0), String::new(), String::new()));
    assert_eq!(query(&env, &table, &["postmaster"]).1, "admin\n");

    fs::write(&aliases, "postmaster: ops\n").unwrap();
    assert_eq!(run(&mut env.tidemail(&["newaliases"])).0, Some(0));
    assert_eq!(query(&env, &table, &["postmaster"]).1, "ops\n");

    // postalias's format through map build --aliases.
    let other = write(&env, "other-aliases", "abuse: root\n");
    assert_eq!(run(&mut env.tidemail(&["map", "build", "--aliases", &spec("hash", &other)])).0, Some(0));
    assert_eq!(query(&env, &spec("hash", &other), &["abuse"]).1, "root\n");
}

#[test]
fn newaliases_errors() {
    let (env, aliases) = alias_env();
    // No source file: the configuration names a table that does not exist.
    let (code, _, err) = run(&mut env.as_name("newaliases", &[]));
    assert_eq!(code, Some(78), "{err}");
    assert!(err.contains("does not exist"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");

    fs::write(&aliases, "postmaster: root\n").unwrap();
    assert_eq!(run(&mut env.as_name("newaliases", &[])).0, Some(0));
    fs::write(&aliases, "postmaster: admin\nbroken line without colon\n").unwrap();
    let (code, _, err) = run(&mut env.as_name("sendmail", &["-bi"]));
    assert_eq!(code, Some(78), "{err}");
    assert!(err.contains(&format!("{}, line 2:", aliases.display())), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(query(&env, &spec("hash", &aliases), &["postmaster"]).1, "root\n", "the old table stays");
}
