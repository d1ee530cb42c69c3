//! Command delivery (mailbox_command, `|command`) with real programs: sh scripts, procmail,
//! and, when the tests run as root, a switch to the `nobody` account.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tidemail::deliver::local::command::{CommandEnv, CommandRequest, DEFAULT_PATH, command_env, run_command};
use tidemail::deliver::local::{LocalError, LocalMessage, Privs};

const PROCMAIL: &str = "/usr/bin/procmail";

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn message(content: &[u8]) -> LocalMessage<'_> {
    LocalMessage {
        sender: "alice@example.org",
        prepend: vec!["Return-Path: <alice@example.org>".to_string(), "Delivered-To: tom@example.com".to_string()],
        content,
    }
}

fn request<'a>(command: &'a str, message: &'a LocalMessage<'a>) -> CommandRequest<'a> {
    CommandRequest { command, privs: None, env: Vec::new(), cwd: None, time_limit: Duration::from_secs(30), message }
}

/// An executable `#!/bin/sh` script in `dir`.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// Runs `req` and checks that it came back within `limit`.
fn run_within(req: &CommandRequest, limit: Duration) -> Result<(), LocalError> {
    let start = Instant::now();
    let result = run_command(req);
    assert!(start.elapsed() < limit, "{:?} took {:?}", req.command, start.elapsed());
    result
}

fn tom_env(dir: &Path, extension: Option<&str>) -> Vec<(String, String)> {
    command_env(&CommandEnv {
        user: "tom",
        home: Some(dir),
        shell: Some("/bin/sh"),
        sender: "alice@example.org",
        recipient: "tom+lists@example.com",
        local: "tom+lists",
        domain: Some("example.com"),
        extension,
        original_recipient: Some("root@example.com"),
    })
}

#[test]
fn exit_statuses_follow_sysexits() {
    let dir = tempfile::tempdir().unwrap();
    let exit = script(dir.path(), "exit.sh", "echo 'first line'\necho 'second line' >&2\nexit $1");
    let content = b"Subject: x\n\nhello\n";
    let msg = message(content);

    let command = format!("{} 0", exit.display());
    assert_eq!(run_within(&request(&command, &msg), Duration::from_secs(10)), Ok(()));

    let command = format!("{} 75", exit.display());
    let e = run_within(&request(&command, &msg), Duration::from_secs(10)).unwrap_err();
    assert_eq!(e, LocalError::temporary("4.3.0", "temporary failure. Command output: first line second line"));

    let command = format!("{} 67", exit.display());
    let e = run_within(&request(&command, &msg), Duration::from_secs(10)).unwrap_err();
    assert_eq!(e, LocalError::permanent("5.1.1", "user unknown. Command output: first line second line"));

    let command = format!("{} 1", exit.display());
    let e = run_within(&request(&command, &msg), Duration::from_secs(10)).unwrap_err();
    assert_eq!(
        e,
        LocalError::permanent(
            "5.3.0",
            format!("Command died with status 1: \"{command}\". Command output: first line second line")
        )
    );

    // The command's own status code, at the start of its output, wins.
    let full = script(dir.path(), "full.sh", "echo '4.2.2 Mailbox full'\nexit 1");
    let command = full.display().to_string();
    let e = run_within(&request(&command, &msg), Duration::from_secs(10)).unwrap_err();
    assert_eq!(e, LocalError::temporary("4.2.2", "Mailbox full"));

    // Killed by a signal: deferred.
    let killed = script(dir.path(), "killed.sh", "kill -TERM $$");
    let command = killed.display().to_string();
    let e = run_within(&request(&command, &msg), Duration::from_secs(10)).unwrap_err();
    assert_eq!(e, LocalError::temporary("4.3.0", format!("Command died with signal 15: \"{command}\"")));

    // A shell built-in with no shell characters: not found by execvp, so run by the shell.
    let e = run_within(&request("exit 3", &msg), Duration::from_secs(10)).unwrap_err();
    assert_eq!(e, LocalError::permanent("5.3.0", "Command died with status 3: \"exit 3\""));

    // A program that does not exist: deferred, the admin may be installing it.
    let e = run_within(&request("/nonexistent/deliver -x", &msg), Duration::from_secs(10)).unwrap_err();
    assert!(e.temporary && e.dsn == "4.3.0" && e.text.contains("/nonexistent/deliver"), "{e:?}");
}

#[test]
fn message_goes_to_stdin_unquoted() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("in");
    let cat = script(dir.path(), "cat.sh", &format!("cat > '{}'", out.display()));
    let content = b"Subject: x\n\nFrom the start\n>From quoted\nlast line without newline";
    let msg = message(content);
    let command = cat.display().to_string();
    run_within(&request(&command, &msg), Duration::from_secs(10)).unwrap();

    let got = fs::read_to_string(&out).unwrap();
    let (from, rest) = got.split_once('\n').unwrap();
    assert!(from.starts_with("From alice@example.org  "), "{from}");
    assert_eq!(
        rest,
        "Return-Path: <alice@example.org>\nDelivered-To: tom@example.com\nSubject: x\n\n\
         From the start\n>From quoted\nlast line without newline\n"
    );
}

#[test]
fn environment_is_exactly_the_documented_set() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("env.out");
    let env = script(dir.path(), "env.sh", &format!("exec /usr/bin/env > '{}'", out.display()));
    let content = b"Subject: x\n\nhi\n";
    let msg = message(content);
    let command = env.display().to_string();
    let mut req = request(&command, &msg);
    req.env = tom_env(dir.path(), Some("lists"));
    req.cwd = Some(dir.path());
    run_within(&req, Duration::from_secs(10)).unwrap();

    let seen: BTreeMap<String, String> = fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|line| {
            let (k, v) = line.split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect();
    let home = dir.path().to_str().unwrap();
    let mut expected: BTreeMap<String, String> = [
        ("HOME", home),
        ("LOGNAME", "tom"),
        ("USER", "tom"),
        ("SHELL", "/bin/sh"),
        ("SENDER", "alice@example.org"),
        ("RECIPIENT", "tom+lists@example.com"),
        ("LOCAL", "tom+lists"),
        ("DOMAIN", "example.com"),
        ("EXTENSION", "lists"),
        ("ORIGINAL_RECIPIENT", "root@example.com"),
        ("PATH", DEFAULT_PATH),
        // Added by /bin/sh itself; also shows the working directory.
        ("PWD", home),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    // bash (when /bin/sh is bash) exports these on its own.
    for extra in ["SHLVL", "_"] {
        if let Some(v) = seen.get(extra) {
            expected.insert(extra.to_string(), v.clone());
        }
    }
    assert_eq!(seen, expected);
}

#[test]
fn addresses_with_shell_characters_never_execute() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let hostile = [
        format!("$(touch {d}/pwned1)@example.com"),
        format!("`touch {d}/pwned2`@example.com"),
        format!("a\"b;touch {d}/pwned3;\"@example.com"),
        format!("';touch {d}/pwned4;'"),
    ];
    let args_out = dir.path().join("args");
    let args = script(dir.path(), "args.sh", &format!("printf '%s\\n' \"$@\" >> '{}'", args_out.display()));
    let content = b"Subject: x\n\nhi\n";
    let msg = message(content);

    for value in &hostile {
        // Raw values (not censored by command_env): run_command alone must be safe.
        let env: Vec<(String, String)> =
            ["RECIPIENT", "SENDER", "EXTENSION"].iter().map(|k| (k.to_string(), value.clone())).collect();
        let commands = [
            // The documented mailbox_command form: the shell expands "$EXTENSION" as data.
            format!("{} -a \"$EXTENSION\"", args.display()),
            // Even unquoted, expansion results are not evaluated again.
            format!("{} $RECIPIENT $SENDER", args.display()),
            format!("echo \"$RECIPIENT\" \"$SENDER\" > '{d}/seen'"),
        ];
        for command in &commands {
            let mut req = request(command, &msg);
            req.env = env.clone();
            run_within(&req, Duration::from_secs(10)).unwrap();
        }
        assert_eq!(fs::read_to_string(dir.path().join("seen")).unwrap(), format!("{value} {value}\n"));
    }
    let got = fs::read_to_string(&args_out).unwrap();
    assert!(got.contains(&format!("-a\n{}\n", hostile[0])), "{got}");
    assert!(got.contains(&format!("-a\n{}\n", hostile[2])), "{got}");

    // Through command_env the values are censored as well, as Postfix does.
    let env = command_env(&CommandEnv {
        user: "tom",
        sender: &hostile[1],
        recipient: &hostile[0],
        local: "tom",
        extension: Some(&hostile[2]),
        ..CommandEnv::default()
    });
    let command = format!("echo \"$RECIPIENT|$SENDER|$EXTENSION\" > '{d}/censored'");
    let mut req = request(&command, &msg);
    req.env = env;
    run_within(&req, Duration::from_secs(10)).unwrap();
    let censored = fs::read_to_string(dir.path().join("censored")).unwrap();
    assert!(!censored.contains(['$', '`', '"', ';', '(', ' ']), "{censored}");

    for n in 1..=4 {
        assert!(!dir.path().join(format!("pwned{n}")).exists(), "pwned{n} was created");
    }
}

#[test]
fn hung_command_is_killed_with_its_children() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("bg.pid");
    let hang = script(
        dir.path(),
        "hang.sh",
        &format!("sleep 1000 &\necho $! > '{}'\necho started\nsleep 1000", pid_file.display()),
    );
    let content = b"Subject: x\n\nhi\n";
    let msg = message(content);
    let command = hang.display().to_string();
    let mut req = request(&command, &msg);
    req.time_limit = Duration::from_secs(1);
    let e = run_within(&req, Duration::from_secs(6)).unwrap_err();
    assert_eq!(
        e,
        LocalError::permanent("5.3.0", format!("Command time limit exceeded: \"{command}\". Command output: started"))
    );

    // The background sleep (same process group) is gone too, or at most a zombie.
    let pid = fs::read_to_string(&pid_file).unwrap().trim().to_string();
    let start = Instant::now();
    loop {
        match fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => break,
            Ok(stat) if stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')) => break,
            Ok(stat) => assert!(start.elapsed() < Duration::from_secs(5), "background child still running: {stat}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn command_that_ignores_stdin_does_not_hang() {
    let dir = tempfile::tempdir().unwrap();
    // Far more than a pipe buffer.
    let mut content = b"Subject: big\n\n".to_vec();
    content.extend(
        std::iter::repeat_n(b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd\n", 160_000).flatten(),
    );
    let msg = message(&content);

    assert_eq!(run_within(&request("/bin/true", &msg), Duration::from_secs(20)), Ok(()));

    let slow = script(dir.path(), "slow.sh", "sleep 0.3\necho 'not now'\nexit 75");
    let command = slow.display().to_string();
    let e = run_within(&request(&command, &msg), Duration::from_secs(20)).unwrap_err();
    assert_eq!(e, LocalError::temporary("4.3.0", "temporary failure. Command output: not now"));

    // Reading only the first line, and a lot of output: neither side blocks.
    let chatty = script(dir.path(), "chatty.sh", "head -n 1 > /dev/null\nyes | head -c 1000000\nexit 1");
    let command = chatty.display().to_string();
    let e = run_within(&request(&command, &msg), Duration::from_secs(20)).unwrap_err();
    assert!(e.text.starts_with(&format!("Command died with status 1: \"{command}\". Command output: y y y")));
    assert!(e.text.len() < 4096 + 200, "output not bounded: {} bytes", e.text.len());
}

#[test]
fn procmail_files_by_subject() {
    if !Path::new(PROCMAIL).exists() {
        eprintln!("note: {PROCMAIL} missing (apt-get install procmail): procmail test skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let rc = dir.path().join("procmailrc");
    fs::write(
        &rc,
        format!(
            "MAILDIR={d}\nDEFAULT={d}/default.mbox\nLOGFILE={d}/procmail.log\nARG=$1\n\n\
             :0:\n* ^Subject:.*invoice\ninvoices.mbox\n\n\
             :0:\n* ^Subject:.*party\nparty.mbox\n\n\
             :0:\n* ARG ?? ^^lists^^\nlists.mbox\n"
        ),
    )
    .unwrap();
    // mailbox_command as documented, with the rcfile named after the -a argument.
    let command = format!("{PROCMAIL} -a \"$EXTENSION\" {}", rc.display());
    let deliveries = [
        ("Your invoice 42", None),
        ("party on friday", None),
        ("second invoice", Some("")),
        ("digest", Some("lists")),
        ("hello", None),
    ];
    for (subject, extension) in deliveries {
        let content = format!("From: alice@example.org\nSubject: {subject}\n\nFrom me, a line.\n");
        let msg = message(content.as_bytes());
        let mut req = request(&command, &msg);
        req.env = tom_env(dir.path(), extension);
        req.cwd = Some(dir.path());
        run_within(&req, Duration::from_secs(20)).unwrap();
    }

    let subjects = |file: &str| -> Vec<String> {
        let text = fs::read_to_string(dir.path().join(file)).unwrap_or_default();
        let separators = text.lines().filter(|l| l.starts_with("From alice@example.org  ")).count();
        assert_eq!(separators, text.matches("\nSubject: ").count(), "{file}: {text}");
        text.lines().filter_map(|l| l.strip_prefix("Subject: ")).map(str::to_string).collect()
    };
    assert_eq!(subjects("invoices.mbox"), ["Your invoice 42", "second invoice"]);
    assert_eq!(subjects("party.mbox"), ["party on friday"]);
    assert_eq!(subjects("lists.mbox"), ["digest"]);
    assert_eq!(subjects("default.mbox"), ["hello"]);
    let invoices = fs::read_to_string(dir.path().join("invoices.mbox")).unwrap();
    assert!(invoices.contains("Return-Path: <alice@example.org>\nDelivered-To: tom@example.com\nFrom: alice"));
}

#[test]
fn runs_as_the_target_user() {
    let content = b"Subject: x\n\nhi\n";
    let msg = message(content);
    if !is_root() {
        // Only the process's own user can be served; another one is a configuration error.
        let me = nix::unistd::User::from_uid(nix::unistd::getuid()).unwrap().unwrap();
        let own = Privs {
            user: me.name.clone(),
            uid: me.uid.as_raw(),
            gid: me.gid.as_raw(),
            groups: vec![],
            home: me.dir.clone(),
            shell: "/bin/sh".into(),
        };
        let mut req = request("/bin/true", &msg);
        req.privs = Some(&own);
        assert_eq!(run_within(&req, Duration::from_secs(10)), Ok(()));
        let other = Privs { uid: own.uid + 1, ..own.clone() };
        req.privs = Some(&other);
        let e = run_within(&req, Duration::from_secs(10)).unwrap_err();
        assert!(e.temporary && e.dsn == "4.3.5", "{e:?}");
        eprintln!("note: not root: the switch to another user is not tested");
        return;
    }

    let nobody = nix::unistd::User::from_name("nobody").unwrap().expect("user nobody");
    let privs = Privs {
        user: "nobody".into(),
        uid: nobody.uid.as_raw(),
        gid: nobody.gid.as_raw(),
        groups: vec![],
        home: nobody.dir.clone(),
        shell: "/bin/sh".into(),
    };
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let out = dir.path().join("out");
    fs::create_dir(&out).unwrap();
    fs::set_permissions(&out, fs::Permissions::from_mode(0o777)).unwrap();
    let o = out.display();
    let who = script(
        dir.path(),
        "who.sh",
        &format!("id -u > {o}/uid\nid -G > {o}/groups\numask > {o}/umask\npwd > {o}/pwd\ntouch {o}/file"),
    );
    let command = who.display().to_string();
    let mut req = request(&command, &msg);
    req.privs = Some(&privs);
    req.cwd = Some(&out);
    run_within(&req, Duration::from_secs(10)).unwrap();

    let read = |name: &str| fs::read_to_string(out.join(name)).unwrap().trim().to_string();
    assert_eq!(read("uid"), privs.uid.to_string());
    assert_eq!(read("groups"), privs.gid.to_string());
    assert_eq!(read("umask"), "0077");
    assert_eq!(read("pwd"), out.display().to_string());
    let meta = fs::metadata(out.join("file")).unwrap();
    assert_eq!((meta.uid(), meta.gid(), meta.mode() & 0o777), (privs.uid, privs.gid, 0o600));

    // The directory is entered after the switch: one the user cannot enter defers.
    let private = dir.path().join("private");
    fs::create_dir(&private).unwrap();
    fs::set_permissions(&private, fs::Permissions::from_mode(0o700)).unwrap();
    req.cwd = Some(&private);
    let e = run_within(&req, Duration::from_secs(10)).unwrap_err();
    assert!(e.temporary && e.text.contains("Permission denied"), "{e:?}");

    // Never as root.
    let root = Privs { user: "root".into(), uid: 0, gid: 0, ..privs.clone() };
    fs::remove_file(out.join("uid")).unwrap();
    req.privs = Some(&root);
    req.cwd = Some(&out);
    let e = run_within(&req, Duration::from_secs(10)).unwrap_err();
    assert!(e.temporary && e.dsn == "4.3.5", "{e:?}");
    assert!(!out.join("uid").exists(), "the command ran");
}
