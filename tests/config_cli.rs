//! `tidemail config` run as the real binary: output, error lines and exit codes.

use std::path::Path;
use std::process::{Command, Output};

const EX_USAGE: i32 = 64;
const EX_CONFIG: i32 = 78;

/// A scratch directory with a tidemail.toml holding `text`.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn with(text: &str) -> Scratch {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("tidemail.toml"), text).expect("write config");
        Scratch { dir }
    }

    fn file(&self) -> std::path::PathBuf {
        self.dir.path().join("tidemail.toml")
    }

    /// `tidemail -c FILE config ARGS...`
    fn config(&self, args: &[&str]) -> Output {
        tidemail(Some(&self.file()), args)
    }
}

fn tidemail(config: Option<&Path>, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tidemail"));
    command.env_remove("TIDEMAIL_CONFIG");
    if let Some(config) = config {
        command.arg("-c").arg(config);
    }
    command.arg("config").args(args);
    command.output().expect("run tidemail")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The single `tidemail: fatal: ...` line, with the exit code.
fn fatal(output: &Output) -> (i32, String) {
    let err = stderr(output);
    assert_eq!(err.lines().count(), 1, "one error line expected: {err:?}");
    assert!(stdout(output).is_empty(), "nothing on stdout: {:?}", stdout(output));
    let line = err.trim_end().strip_prefix("tidemail: fatal: ").unwrap_or_else(|| {
        panic!("not a fatal line: {err:?}");
    });
    (output.status.code().unwrap_or(-1), line.to_string())
}

const GOOD: &str = r#"
relayhost = "[smtp.example.net]:587"
myorigin = "$mydomain"
mydomain = "example.com"
defer_transports = ["smtp"]
"#;

#[test]
fn prints_every_setting_sorted_with_values_as_written() {
    let scratch = Scratch::with(GOOD);
    let output = scratch.config(&[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    let names: Vec<&str> = text.lines().map(|l| l.split(" =").next().unwrap()).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted);
    assert!(names.len() > 48, "{names:?}");
    for line in [
        "myorigin = $mydomain",
        "relayhost = [smtp.example.net]:587",
        "defer_transports = smtp",
        "smtpd_banner = $myhostname ESMTP $mail_name",
        "mail_name = tidemail",
        "queue_directory = /var/spool/tidemail",
        "maximal_queue_lifetime = 5d",
        "recipient_delimiter =",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
    }
    let config_directory = format!("config_directory = {}", scratch.dir.path().display());
    assert!(text.lines().any(|l| l == config_directory), "{text}");
}

#[test]
fn dash_n_shows_only_the_files_settings() {
    let output = Scratch::with(GOOD).config(&["-n"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        "defer_transports = smtp\n\
         mydomain = example.com\n\
         myorigin = $mydomain\n\
         relayhost = [smtp.example.net]:587\n"
    );
}

#[test]
fn dash_d_shows_defaults_without_a_file() {
    let output = tidemail(Some(Path::new("/nonexistent/tidemail.toml")), &["-d"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    for line in [
        "relayhost =",
        "myorigin = $myhostname",
        "mydestination = $myhostname, localhost.$mydomain, localhost",
        "message_size_limit = 10240000",
        "delay_warning_time = 0h",
        "alias_maps = hash:/etc/aliases",
        "config_directory = /etc/tidemail",
        "syslog_name = tidemail",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
    }
    assert!(text.lines().any(|l| l.starts_with("mynetworks = 127.0.0.0/8")), "{text}");
    // The file's settings are not consulted.
    let output = Scratch::with(GOOD).config(&["-d", "relayhost"]);
    assert_eq!(stdout(&output), "relayhost =\n");
}

#[test]
fn named_parameters_only() {
    let scratch = Scratch::with(GOOD);
    let output = scratch.config(&["relayhost", "mail_name"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), "mail_name = tidemail\nrelayhost = [smtp.example.net]:587\n");
}

#[test]
fn unknown_name_asked_for_is_a_usage_error() {
    let output = Scratch::with(GOOD).config(&["relayhost", "relay_host"]);
    assert_eq!(
        fatal(&output),
        (EX_USAGE, "unknown parameter \"relay_host\" (did you mean \"relayhost\"?)".to_string())
    );
}

#[test]
fn check_is_quiet_on_a_good_file() {
    let output = Scratch::with(GOOD).config(&["check"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(output.stdout.is_empty());
    assert!(output.stderr.is_empty());
}

/// `config check` on a file with `text`: (exit code, error line with the path replaced).
fn check_error(text: &str) -> (i32, String) {
    let scratch = Scratch::with(text);
    let (code, line) = fatal(&scratch.config(&["check"]));
    let path = scratch.file().display().to_string();
    assert!(line.starts_with(&path), "error does not start with the path: {line}");
    (code, line.replacen(&path, "FILE", 1))
}

#[test]
fn unknown_key_with_suggestion() {
    assert_eq!(
        check_error("relayhost = \"\"\nmydestnation = \"x\"\n"),
        (EX_CONFIG, "FILE, line 2: unknown parameter \"mydestnation\" (did you mean \"mydestination\"?)".to_string())
    );
}

#[test]
fn bad_size() {
    assert_eq!(
        check_error("message_size_limit = \"10MB\"\n"),
        (
            EX_CONFIG,
            "FILE, line 1: bad value for message_size_limit: \"10MB\" \
             (expected a size in bytes, e.g. 10240000)"
                .to_string()
        )
    );
}

#[test]
fn bad_time() {
    assert_eq!(
        check_error("maximal_queue_lifetime = \"5x\"\n"),
        (
            EX_CONFIG,
            "FILE, line 1: bad value for maximal_queue_lifetime: \"5x\" \
             (expected a time like 5d, 4h, 300s; units s m h d w)"
                .to_string()
        )
    );
}

#[test]
fn bad_bool() {
    assert_eq!(
        check_error("\ndisable_dns_lookups = \"sometimes\"\n"),
        (EX_CONFIG, "FILE, line 2: bad value for disable_dns_lookups: \"sometimes\" (expected yes or no)".to_string())
    );
}

#[test]
fn toml_syntax_error() {
    let (code, line) = check_error("relayhost = \"a\"\nmyorigin = \"unterminated\n");
    assert_eq!(code, EX_CONFIG);
    assert!(line.starts_with("FILE, line 2: "), "{line}");
}

#[test]
fn loop_in_expansion() {
    assert_eq!(
        check_error("myorigin = \"$relayhost\"\nrelayhost = \"$myorigin\"\n"),
        (EX_CONFIG, "FILE, line 1: myorigin refers to itself: $myorigin -> $relayhost -> $myorigin".to_string())
    );
}

#[test]
fn missing_file() {
    let output = tidemail(Some(Path::new("/nonexistent/tidemail.toml")), &["check"]);
    assert_eq!(
        fatal(&output),
        (EX_CONFIG, "cannot read /nonexistent/tidemail.toml: No such file or directory".to_string())
    );
    // Printing the configuration needs the file too.
    let output = tidemail(Some(Path::new("/nonexistent/tidemail.toml")), &[]);
    assert_eq!(fatal(&output).0, EX_CONFIG);
}

#[test]
fn a_bad_file_prints_nothing_on_stdout() {
    let output = Scratch::with("message_size_limit = \"10MB\"\n").config(&[]);
    let (code, line) = fatal(&output);
    assert_eq!(code, EX_CONFIG);
    assert!(line.contains("bad value for message_size_limit"), "{line}");
}

#[test]
fn environment_variable_picks_the_file() {
    let scratch = Scratch::with("relayhost = \"[from.env]\"\n");
    let output = Command::new(env!("CARGO_BIN_EXE_tidemail"))
        .env("TIDEMAIL_CONFIG", scratch.file())
        .args(["config", "-n"])
        .output()
        .expect("run tidemail");
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), "relayhost = [from.env]\n");

    // -c still wins over the environment.
    let other = Scratch::with("relayhost = \"[from.flag]\"\n");
    let output = Command::new(env!("CARGO_BIN_EXE_tidemail"))
        .env("TIDEMAIL_CONFIG", scratch.file())
        .arg("-c")
        .arg(other.file())
        .args(["config", "-n"])
        .output()
        .expect("run tidemail");
    assert_eq!(stdout(&output), "relayhost = [from.flag]\n");
}

#[test]
fn dash_c_is_accepted_after_the_subcommand() {
    let scratch = Scratch::with("relayhost = \"[after]\"\n");
    let output = Command::new(env!("CARGO_BIN_EXE_tidemail"))
        .env_remove("TIDEMAIL_CONFIG")
        .args(["config", "-n", "-c"])
        .arg(scratch.file())
        .output()
        .expect("run tidemail");
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), "relayhost = [after]\n");
}
