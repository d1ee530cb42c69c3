//! Delivery to a command: mailbox_command (procmail) and `|command` targets from aliases,
//! `:include:` files and .forward files, run the way Postfix's local(8) runs them.
//!
//! - The command runs directly (split on blanks, execvp) when it holds only characters from a
//!   small safe set; anything else (quotes, `$`, redirections, globs...) goes to `/bin/sh -c`.
//!   Message data reaches the command through the environment only, never through the command
//!   text: in `procmail -a "$EXTENSION"` the shell expands the variable itself, as data.
//! - The child gets its own session (so that a time-out kills its whole process group), umask
//!   077, a clean environment, the target user's credentials (switched, then checked, before
//!   exec) and its working directory, entered after the switch.
//! - The message goes to stdin: a `From ` line, the prepended headers, the content as is
//!   (Postfix quotes `>From ` in mailbox files only, not for commands).
//! - The outcome follows sysexits.h with Postfix's mapping and wording, including the
//!   command's (bounded) output in the reason.

use std::ffi::CString;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use chrono::Local;
use nix::errno::Errno;
use nix::sys::signal::{self, Signal};
use nix::sys::stat::Mode;
use nix::unistd::{self, Gid, Pid, Uid};

use super::mbox::from_line;
use super::{LocalError, LocalMessage, Privs};

/// The command search path every command gets (glibc's `_PATH_DEFPATH`, as Postfix sets it).
pub const DEFAULT_PATH: &str = "/usr/bin:/bin";

/// Characters kept in exported values; any other becomes `_` (Postfix's default
/// command_expansion_filter).
pub const COMMAND_EXPANSION_FILTER: &str = "1234567890!@%-_=+:,./abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// How much of the command's output is kept for the reason (Postfix: one stream buffer).
pub const OUTPUT_LIMIT: usize = 4096;

/// The shell for commands that need one.
const SHELL: &str = "/bin/sh";

/// After a kill, how long to wait for the pipes to close before giving up on them (a process
/// that left the group could hold them open for ever).
const AFTER_KILL: Duration = Duration::from_secs(2);

const YEAR: Duration = Duration::from_secs(365 * 86400);

/// One command delivery.
#[derive(Debug, Clone)]
pub struct CommandRequest<'a> {
    /// The command line, as configured (mailbox_command) or written after `|`.
    pub command: &'a str,
    /// Run with these credentials: supplementary groups, gid and uid are switched in the
    /// child before exec and checked. Root (uid or gid 0) is refused when tidemail runs as
    /// root; when it does not, only its own uid is accepted (and nothing is switched).
    /// None: run as the current user.
    pub privs: Option<&'a Privs>,
    /// The environment besides PATH (which is always [`DEFAULT_PATH`] unless given here):
    /// usually [`command_env`]. Nothing else is inherited.
    pub env: Vec<(String, String)>,
    /// The working directory (entered after the credential switch): the user's home when it
    /// exists, else `/`. None: stay in the current directory.
    pub cwd: Option<&'a Path>,
    /// command_time_limit: the command and everything it started are killed after this.
    pub time_limit: Duration,
    pub message: &'a LocalMessage<'a>,
}

/// The recipient pieces a command sees in its environment, under Postfix's local(8) names.
#[derive(Debug, Clone, Default)]
pub struct CommandEnv<'a> {
    /// The user the delivery is for: USER and LOGNAME.
    pub user: &'a str,
    /// HOME (left out when None).
    pub home: Option<&'a Path>,
    /// SHELL (left out when None).
    pub shell: Option<&'a str>,
    /// SENDER: the envelope sender, empty for the null sender.
    pub sender: &'a str,
    /// RECIPIENT: the whole recipient address.
    pub recipient: &'a str,
    /// LOCAL: the recipient's local part (left of the rightmost `@`), extension included.
    pub local: &'a str,
    /// DOMAIN (left out when None).
    pub domain: Option<&'a str>,
    /// EXTENSION: the part after recipient_delimiter (left out when None).
    pub extension: Option<&'a str>,
    /// ORIGINAL_RECIPIENT: the address before any rewriting (left out when None or empty).
    pub original_recipient: Option<&'a str>,
}

/// The environment for a command delivery, in Postfix's order, each value censored with
/// [`COMMAND_EXPANSION_FILTER`] as Postfix does (a defence for commands and shell scripts that
/// use the values carelessly). PATH is added by [`run_command`].
pub fn command_env(vars: &CommandEnv) -> Vec<(String, String)> {
    let mut env = Vec::with_capacity(10);
    let mut add = |name: &str, value: &str| env.push((name.to_string(), censor(value)));
    if let Some(home) = vars.home {
        add("HOME", &home.to_string_lossy());
    }
    add("LOGNAME", vars.user);
    add("USER", vars.user);
    add("SENDER", vars.sender);
    add("RECIPIENT", vars.recipient);
    add("LOCAL", vars.local);
    if let Some(shell) = vars.shell {
        add("SHELL", shell);
    }
    if let Some(domain) = vars.domain {
        add("DOMAIN", domain);
    }
    if let Some(extension) = vars.extension {
        add("EXTENSION", extension);
    }
    if let Some(original) = vars.original_recipient.filter(|o| !o.is_empty()) {
        add("ORIGINAL_RECIPIENT", original);
    }
    env
}

fn censor(value: &str) -> String {
    value.chars().map(|c| if COMMAND_EXPANSION_FILTER.contains(c) { c } else { '_' }).collect()
}

/// Runs `req.command` with the message on its standard input and waits for it, at most
/// `req.time_limit`. Ok means the command took the message (exit status 0).
pub fn run_command(req: &CommandRequest) -> Result<(), LocalError> {
    let setup = ChildSetup::new(req)?;
    let (out_reader, out_writer) =
        io::pipe().map_err(|e| LocalError::temporary("4.3.0", format!("Delivery failed: cannot create pipe: {e}")))?;

    let spawned = match direct_argv(req.command) {
        Some(argv) => match spawn(req, &setup, &out_writer, &argv) {
            // Perhaps a shell built-in, as Postfix's exec_command allows for.
            Err(e) if e.kind() == io::ErrorKind::NotFound && !argv[0].contains('/') => {
                spawn(req, &setup, &out_writer, &shell_argv(req.command))
            }
            other => other,
        },
        None => spawn(req, &setup, &out_writer, &shell_argv(req.command)),
    };
    // Only the child may hold the write end now, or the reader would never see end-of-file.
    drop(out_writer);
    let mut child = spawned.map_err(|e| {
        LocalError::temporary(
            "4.3.0",
            format!("temporary failure. Command output: cannot run \"{}\": {e}", req.command),
        )
    })?;

    // An absurd limit (Duration::MAX) means "a very long time", not a panic.
    let deadline = Instant::now().checked_add(req.time_limit).unwrap_or_else(|| Instant::now() + YEAR);
    let output = Arc::new(Mutex::new(Vec::new()));
    let read_done = start_reader(out_reader, Arc::clone(&output));
    let write_done = start_writer(&mut child, command_input(req.message));

    let (ending, write_error) = supervise(&mut child, deadline, &read_done, &write_done);
    let output = output.lock().map(|o| o.clone()).unwrap_or_default();
    outcome(req.command, ending, &output, write_error)
}

/// How the command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Exit(i32),
    Signal(i32),
    /// It (or something holding its pipes) outlived command_time_limit and was killed.
    TimedOut,
}

/// Waits for the command to exit and for its pipes to be done with, all before `deadline`;
/// on time-out kills its process group. Also returns the error writing stdin, if any.
fn supervise(
    child: &mut Child,
    deadline: Instant,
    read_done: &Receiver<()>,
    write_done: &Receiver<io::Result<()>>,
) -> (Ending, Option<io::Error>) {
    let pid = child.id() as i32;
    let mut pause = Duration::from_millis(1);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) => {}
            // Cannot happen to a child we own; treated like a hung one.
            Err(_) => break None,
        }
        let now = Instant::now();
        if now >= deadline {
            kill_group(pid);
            let _ = child.wait();
            break None;
        }
        // Polling rather than a waiting thread: the process stays unreaped until we know it
        // exited, so its pid (also its group id) cannot be reused under our kill.
        thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(50));
    };
    let written = status.and_then(|_| write_done.recv_timeout(remaining(deadline)).ok());
    let in_time = written.is_some() && read_done.recv_timeout(remaining(deadline)).is_ok();
    match (status, written) {
        (Some(status), Some(written)) if in_time => {
            let ending = match (status.code(), status.signal()) {
                (Some(code), _) => Ending::Exit(code),
                (None, Some(signal)) => Ending::Signal(signal),
                (None, None) => Ending::Exit(-1),
            };
            (ending, written.err())
        }
        _ => {
            // A descendant may still hold the pipes: end them all, then give them a moment.
            kill_group(pid);
            let _ = read_done.recv_timeout(AFTER_KILL);
            (Ending::TimedOut, None)
        }
    }
}

fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

fn kill_group(pid: i32) {
    // The child called setsid: its process group id is its pid, and stays taken while any
    // member lives, even after the child itself was reaped. No fallback to kill(pid): once
    // reaped, that pid may belong to someone else.
    let _ = signal::killpg(Pid::from_raw(pid), Signal::SIGKILL);
}

/// Reads the command's output (stdout and stderr share one pipe) to the end, keeping the
/// first [`OUTPUT_LIMIT`] bytes: draining the rest keeps a chatty command from blocking.
fn start_reader(mut pipe: io::PipeReader, output: Arc<Mutex<Vec<u8>>>) -> Receiver<()> {
    let (done, done_rx) = mpsc::channel();
    thread::spawn(move || {
        let mut buf = [0u8; 8192];
        loop {
            match pipe.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if let Ok(mut kept) = output.lock() {
                        let room = OUTPUT_LIMIT.saturating_sub(kept.len());
                        kept.extend_from_slice(&buf[..n.min(room)]);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let _ = done.send(());
    });
    done_rx
}

/// Writes the message to the command's stdin in a thread of its own (a command that reads
/// nothing must not block us), then closes it. A command that exits without reading all of
/// it (EPIPE) is not an error, as in Postfix.
fn start_writer(child: &mut Child, input: Vec<u8>) -> Receiver<io::Result<()>> {
    let (done, done_rx) = mpsc::channel();
    let stdin = child.stdin.take();
    thread::spawn(move || {
        let result = match stdin {
            Some(mut stdin) => match stdin.write_all(&input) {
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
                other => other,
            },
            None => Ok(()),
        };
        let _ = done.send(result);
    });
    done_rx
}

/// What the command reads: `From sender  date`, the prepended headers, the message.
pub fn command_input(message: &LocalMessage) -> Vec<u8> {
    let mut input = Vec::with_capacity(message.content.len() + 512);
    input.extend_from_slice(from_line(message.sender, Local::now()).as_bytes());
    input.push(b'\n');
    for line in &message.prepend {
        input.extend_from_slice(line.as_bytes());
        input.push(b'\n');
    }
    input.extend_from_slice(message.content);
    if !message.content.is_empty() && !message.content.ends_with(b"\n") {
        input.push(b'\n');
    }
    input
}

/// Postfix's exec_command rule: a command made of these characters (and blanks) only is split
/// on blanks and run directly; any other character (quotes, `$`, `;`, `|`, `<`, `*`, `~`,
/// non-ASCII...) means a shell.
pub fn direct_argv(command: &str) -> Option<Vec<&str>> {
    const SAFE: &str = "!@%-_=+:,./";
    let plain = |c: char| c.is_ascii_alphanumeric() || SAFE.contains(c) || c == ' ' || c == '\t';
    let argv: Vec<&str> = command.split([' ', '\t']).filter(|w| !w.is_empty()).collect();
    (command.chars().all(plain) && !argv.is_empty()).then_some(argv)
}

fn shell_argv(command: &str) -> Vec<&str> {
    vec![SHELL, "-c", command]
}

/// Everything the child does between fork and exec, prepared beforehand: the closure runs
/// in the forked child of a threaded process and must not allocate or take locks.
#[derive(Clone)]
struct ChildSetup {
    ids: Option<Ids>,
    cwd: Option<CString>,
}

#[derive(Clone)]
struct Ids {
    uid: Uid,
    gid: Gid,
    groups: Vec<Gid>,
}

impl ChildSetup {
    fn new(req: &CommandRequest) -> Result<ChildSetup, LocalError> {
        let ids = match req.privs {
            Some(privs) => target_ids(privs)?,
            None => None,
        };
        let cwd = match req.cwd {
            Some(dir) => Some(CString::new(dir.as_os_str().as_bytes()).map_err(|_| {
                LocalError::temporary(
                    "4.3.5",
                    format!("mail system configuration error: bad directory {}", dir.display()),
                )
            })?),
            None => None,
        };
        Ok(ChildSetup { ids, cwd })
    }

    /// In the child: own session, umask, credentials, directory. Async-signal-safe calls only.
    fn apply(&self) -> io::Result<()> {
        // A session of its own: no controlling terminal, and a process group we can kill.
        unistd::setsid()?;
        nix::sys::stat::umask(Mode::from_bits_truncate(0o077));
        if let Some(ids) = &self.ids {
            unistd::setgroups(&ids.groups)?;
            unistd::setgid(ids.gid)?;
            unistd::setuid(ids.uid)?;
            let took = unistd::getuid() == ids.uid
                && unistd::geteuid() == ids.uid
                && unistd::getgid() == ids.gid
                && unistd::getegid() == ids.gid;
            // Having dropped root for good, getting it back must fail.
            if !took || unistd::setuid(Uid::from_raw(0)).is_ok() {
                return Err(Errno::EPERM.into());
            }
        }
        if let Some(dir) = &self.cwd {
            // After the switch: the user must be able to enter it, as in Postfix.
            unistd::chdir(dir.as_c_str())?;
        }
        Ok(())
    }
}

/// The credentials to switch to, or None when the process already runs as that user.
fn target_ids(privs: &Privs) -> Result<Option<Ids>, LocalError> {
    let euid = unistd::geteuid();
    if !euid.is_root() {
        if privs.uid == euid.as_raw() {
            return Ok(None);
        }
        return Err(LocalError::temporary(
            "4.3.5",
            format!(
                "mail system configuration error: cannot run a command as user {} (uid {}): tidemail runs as uid {} and not as root",
                privs.user, privs.uid, euid
            ),
        ));
    }
    if privs.uid == 0 || privs.gid == 0 {
        return Err(LocalError::temporary(
            "4.3.5",
            format!(
                "mail system configuration error: refusing to run a command with root privileges (user {}, uid {}, gid {})",
                privs.user, privs.uid, privs.gid
            ),
        ));
    }
    Ok(Some(Ids {
        uid: Uid::from_raw(privs.uid),
        gid: Gid::from_raw(privs.gid),
        groups: privs.groups.iter().map(|&g| Gid::from_raw(g)).collect(),
    }))
}

fn spawn(req: &CommandRequest, setup: &ChildSetup, out: &io::PipeWriter, argv: &[&str]) -> io::Result<Child> {
    let mut cmd = Command::new(argv[0]);
    cmd.args(&argv[1..])
        .env_clear()
        .env("PATH", DEFAULT_PATH)
        .envs(req.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(out.try_clone()?)
        .stderr(out.try_clone()?);
    let setup = setup.clone();
    // SAFETY: apply() makes only async-signal-safe system calls on data prepared before fork.
    unsafe {
        cmd.pre_exec(move || setup.apply());
    }
    cmd.spawn()
}

/// sysexits.h codes as Postfix's sys_exits table maps them: (code, dsn, text).
const SYS_EXITS: [(i32, &str, &str); 15] = [
    (64, "5.3.0", "command line usage error"),
    (65, "5.6.0", "data format error"),
    (66, "5.3.0", "cannot open input"),
    (67, "5.1.1", "user unknown"),
    (68, "5.1.2", "host name unknown"),
    (69, "5.3.0", "service unavailable"),
    (70, "5.3.0", "internal software error"),
    (71, "4.3.0", "system resource problem"),
    (72, "5.3.0", "critical OS file missing"),
    (73, "5.2.0", "can't create user output file"),
    (74, "5.3.0", "input/output error"),
    (75, "4.3.0", "temporary failure"),
    (76, "5.5.0", "remote error in protocol"),
    (77, "5.7.0", "permission denied"),
    (78, "5.3.5", "local configuration error"),
];

/// The delivery result, worded as Postfix's pipe_command words it.
fn outcome(command: &str, ending: Ending, output: &[u8], write_error: Option<io::Error>) -> Result<(), LocalError> {
    let output = printable(output);
    let with_output = |text: String| {
        if output.is_empty() { text } else { format!("{text}. Command output: {output}") }
    };
    let error = |dsn: &str, text: String| {
        let temporary = dsn.starts_with('4');
        Err(LocalError { temporary, dsn: dsn.to_string(), text })
    };
    match ending {
        // A bounce in Postfix: a command that hangs will most likely hang again.
        Ending::TimedOut => error("5.3.0", with_output(format!("Command time limit exceeded: \"{command}\""))),
        Ending::Signal(signal) => {
            error("4.3.0", with_output(format!("Command died with signal {signal}: \"{command}\"")))
        }
        Ending::Exit(0) => match write_error {
            Some(e) => error("5.3.0", format!("Command failed: error writing message: {e}: \"{command}\"")),
            None => Ok(()),
        },
        Ending::Exit(code) => {
            // "4.2.2 Mailbox full" at the start of the output is the command's own verdict.
            if let Some((dsn, text)) = split_dsn(&output) {
                return error(dsn, text.to_string());
            }
            match SYS_EXITS.iter().find(|(c, _, _)| *c == code) {
                Some((_, dsn, text)) => error(dsn, with_output(text.to_string())),
                None => error("5.3.0", with_output(format!("Command died with status {code}: \"{command}\""))),
            }
        }
    }
}

/// An RFC 3463 status code at the very start of `text` (`4.2.2 Mailbox full`), and the rest.
/// Only failure classes count: a `2.x.x` with a non-zero exit status is not believed.
fn split_dsn(text: &str) -> Option<(&str, &str)> {
    let end = text.find(|c: char| c.is_ascii_whitespace()).unwrap_or(text.len());
    let code = &text[..end];
    let mut parts = code.split('.');
    let class = parts.next()?;
    let subject = parts.next()?;
    let detail = parts.next()?;
    let digits = |s: &str| (1..=3).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit());
    let valid = (class == "4" || class == "5") && digits(subject) && digits(detail) && parts.next().is_none();
    valid.then(|| (code, text[end..].trim_start()))
}

/// Command output fit for a log line and a DSN: line breaks and tabs become spaces, other
/// control characters `_` (Postfix's translit and printable), trailing blanks dropped.
fn printable(output: &[u8]) -> String {
    let text: String = String::from_utf8_lossy(output)
        .chars()
        .map(|c| match c {
            '\n' | '\t' | '\r' => ' ',
            c if c.is_control() || c == char::REPLACEMENT_CHARACTER => '_',
            c => c,
        })
        .collect();
    text.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_commands_run_directly() {
        assert_eq!(direct_argv("/usr/bin/procmail"), Some(vec!["/usr/bin/procmail"]));
        assert_eq!(direct_argv(" /usr/bin/procmail\t-d  tom "), Some(vec!["/usr/bin/procmail", "-d", "tom"]));
        assert_eq!(direct_argv("/usr/lib/x/y -o a=b,c:d@e%f!g+h"), Some(vec!["/usr/lib/x/y", "-o", "a=b,c:d@e%f!g+h"]));
    }

    #[test]
    fn shell_characters_need_a_shell() {
        for command in [
            "/usr/bin/procmail -a \"$EXTENSION\"",
            "/usr/bin/procmail -a $EXTENSION",
            "cat > /tmp/x",
            "a; b",
            "a | b",
            "a && b",
            "echo `id`",
            "echo 'x'",
            "ls *",
            "cd ~",
            "x\\y",
            "caf\u{e9}",
            "",
            "  \t ",
        ] {
            assert_eq!(direct_argv(command), None, "{command:?}");
        }
    }

    #[test]
    fn env_has_postfix_names_and_censored_values() {
        let env = command_env(&CommandEnv {
            user: "tom",
            home: Some(Path::new("/home/tom")),
            shell: Some("/bin/bash"),
            sender: "a\"b$(id)@example.org",
            recipient: "tom+lists@example.com",
            local: "tom+lists",
            domain: Some("example.com"),
            extension: Some("lists"),
            original_recipient: Some("root@example.com"),
        });
        let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "HOME",
                "LOGNAME",
                "USER",
                "SENDER",
                "RECIPIENT",
                "LOCAL",
                "SHELL",
                "DOMAIN",
                "EXTENSION",
                "ORIGINAL_RECIPIENT"
            ]
        );
        assert_eq!(env[3].1, "a_b__id_@example.org");
        assert_eq!(env[4].1, "tom+lists@example.com");

        let bare = command_env(&CommandEnv {
            user: "tom",
            sender: "",
            recipient: "tom@example.com",
            local: "tom",
            original_recipient: Some(""),
            ..CommandEnv::default()
        });
        let names: Vec<&str> = bare.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["LOGNAME", "USER", "SENDER", "RECIPIENT", "LOCAL"]);
    }

    #[test]
    fn exit_statuses_map_like_postfix() {
        let cmd = "/usr/bin/x";
        assert_eq!(outcome(cmd, Ending::Exit(0), b"noise\n", None), Ok(()));
        assert_eq!(
            outcome(cmd, Ending::Exit(75), b"try later\nreally\n", None),
            Err(LocalError::temporary("4.3.0", "temporary failure. Command output: try later really"))
        );
        assert_eq!(outcome(cmd, Ending::Exit(75), b"", None), Err(LocalError::temporary("4.3.0", "temporary failure")));
        assert_eq!(
            outcome(cmd, Ending::Exit(67), b"no such user\n", None),
            Err(LocalError::permanent("5.1.1", "user unknown. Command output: no such user"))
        );
        assert_eq!(
            outcome(cmd, Ending::Exit(71), b"", None),
            Err(LocalError::temporary("4.3.0", "system resource problem"))
        );
        assert_eq!(
            outcome(cmd, Ending::Exit(1), b"oops\tat\x07 line\n", None),
            Err(LocalError::permanent(
                "5.3.0",
                "Command died with status 1: \"/usr/bin/x\". Command output: oops at_ line"
            ))
        );
        assert_eq!(
            outcome(cmd, Ending::Signal(9), b"", None),
            Err(LocalError::temporary("4.3.0", "Command died with signal 9: \"/usr/bin/x\""))
        );
        assert_eq!(
            outcome(cmd, Ending::TimedOut, b"", None),
            Err(LocalError::permanent("5.3.0", "Command time limit exceeded: \"/usr/bin/x\""))
        );
        let broken = io::Error::from_raw_os_error(libc::EIO);
        assert!(matches!(outcome(cmd, Ending::Exit(0), b"", Some(broken)), Err(e) if !e.temporary));
    }

    #[test]
    fn a_status_code_in_the_output_wins() {
        assert_eq!(
            outcome("x", Ending::Exit(1), b"4.2.2 Mailbox full\n", None),
            Err(LocalError::temporary("4.2.2", "Mailbox full"))
        );
        assert_eq!(
            outcome("x", Ending::Exit(75), b"5.1.1  no such user", None),
            Err(LocalError::permanent("5.1.1", "no such user"))
        );
        // Not a code: falls back to the exit status.
        for output in [&b"2.0.0 fine"[..], b"4.2 short", b"4.2.2x", b"6.1.1 bad", b"4.1234.1 long"] {
            assert_eq!(outcome("x", Ending::Exit(1), output, None).unwrap_err().dsn, "5.3.0", "{output:?}");
        }
    }

    #[test]
    fn input_is_from_line_headers_content_unquoted() {
        let message = LocalMessage {
            sender: "",
            prepend: vec!["Return-Path: <>".to_string()],
            content: b"Subject: x\n\nFrom here\nend",
        };
        let input = String::from_utf8(command_input(&message)).unwrap();
        let (first, rest) = input.split_once('\n').unwrap();
        assert!(first.starts_with("From MAILER-DAEMON  "), "{first}");
        assert_eq!(rest, "Return-Path: <>\nSubject: x\n\nFrom here\nend\n");
    }

    #[test]
    fn output_is_made_printable() {
        assert_eq!(printable(b"a\r\nb\x00c\xff\n\n"), "a  b_c_");
        assert_eq!(printable("d\u{e9}j\u{e0}\n".as_bytes()), "d\u{e9}j\u{e0}");
    }
}
