//! The sendmail command line, parsed the way Postfix's sendmail parses it: cron, mutt, git
//! send-email and countless scripts depend on exactly this syntax.
//!
//! Rules (POSIX getopt with Postfix's additions):
//! - options with an argument: `A B C F L N O R V X b e f h o p q r`; the argument is the
//!   rest of the word (`-fme@example.com`, `-oi` is `-o` with `i`) or the next word (`-f me`,
//!   taken even if it starts with `-`);
//! - options without one may be clustered: `-ti`, `-tv`;
//! - `-q` alone is a word of its own (flush the queue); `-q` inside a cluster takes an
//!   argument like the others;
//! - `--` ends the options; so does the first word that does not start with `-` (or is `-`
//!   alone): everything from there on is a recipient, even `-f`-looking words (no GNU-style
//!   permutation);
//! - the old VERP forms (`-V` followed by a two-character word, `-Vxy`, `-XV...`) are
//!   accepted and ignored: tidemail has no VERP.
//!
//! Accepted and ignored, as in Postfix: `-A -c -e -G -h -L -m -O -p -U -x -X`, `-o` with any
//! value except `-oi` (= `-i`) and an empty `-oA`, `-q<interval>` (`-q30m`). Refused like
//! Postfix: `-n` (no aliasing cannot be honoured), unknown letters, `-q` with anything but an
//! interval, `R`, `S` or `I`, recipients in modes that take none, `-t` outside delivery mode.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use crate::address;
use crate::queue::{Notify, Ret};
use crate::sysexits::EX_USAGE;

/// What the command is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// `-bm` (default): read a message from stdin and queue it.
    Deliver,
    /// `-bp` (mailq): list the queue.
    PrintQueue,
    /// `-bi`, `-I` (newaliases): rebuild the alias database.
    NewAliases,
    /// `-bs`: SMTP dialogue on stdin/stdout.
    Smtp,
    /// `-q`: flush the queue; `-qRsite`/`-qSsite`: mail for one site. `-qIqueueid` also
    /// flushes the whole queue (there is no per-message flush mode).
    Flush { site: Option<String> },
    /// `-q<interval>` and nothing else: a queue-run interval for a sendmail daemon. Postfix
    /// accepts it and does nothing; so do we.
    Nothing,
}

/// `-B`: the body type the message declares (RFC 1652).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum BodyType {
    #[default]
    Unspecified,
    SevenBit,
    EightBitMime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendmailOpts {
    pub mode: Mode,
    /// `-f`/`-r` (the last one given). The value is read like Postfix does: as an address
    /// list whose first address is the sender (`-f "Joe <joe@example.com>"` gives
    /// `joe@example.com`); `<>`, `""` and a value without any address give the null sender
    /// `Some("")`. `None`: not given (the submitting user's login name is the sender).
    pub sender: Option<String>,
    /// `-F`: full name for a From: header cleanup adds. Not UTF-8 → lossily converted.
    pub full_name: Option<String>,
    /// `-t`: take recipients from To:/Cc:/Bcc: (or Resent-*), in addition to the command line.
    pub extract_recipients: bool,
    /// `-i`, `-oi`: a line with a single `.` does not end the message.
    pub ignore_dots: bool,
    /// `-v` (given once or more).
    pub verbose: bool,
    /// `-N`: DSN NOTIFY; `[Never]` or a non-empty list of Success/Delay/Failure.
    pub notify: Option<Vec<Notify>>,
    /// `-R full|hdrs`: DSN RET.
    pub ret: Option<Ret>,
    /// `-V envid`: DSN ENVID (1 to 100 printable ASCII characters, no space).
    pub envid: Option<String>,
    /// `-B 7BIT|8BITMIME`.
    pub body_type: BodyType,
    /// `-C`: the configuration file; a directory means `DIR/tidemail.toml`.
    pub config_file: Option<PathBuf>,
    /// The words after the options, as given. Like Postfix, each is an address list in
    /// itself (`"a@x, b@y"`, `"Joe <joe@x>"`): parse it with `address::parse_address_list`.
    pub recipients: Vec<String>,
}

/// A command line sendmail does not accept. Display is one line, without the program name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsageError {
    #[error("unsupported option: -{0}")]
    UnknownOption(String),
    #[error("option -{0} requires an argument")]
    MissingArgument(String),
    #[error("unsupported mode: -b{0}")]
    UnsupportedMode(String),
    /// `-n` (no aliasing): Postfix refuses it too, rather than alias silently.
    #[error("option -{0} is not supported")]
    NotSupported(String),
    #[error("bad -{option} value: {value:?} ({expected})")]
    BadValue { option: String, value: String, expected: &'static str },
    #[error("option -{0} can be used only in delivery mode")]
    DeliveryModeOnly(String),
    /// The mode (e.g. "display queue mode") takes no recipients.
    #[error("{0} requires no recipient")]
    RecipientNotAllowed(&'static str),
    #[error("argument is not valid UTF-8: {0:?}")]
    NotUtf8(String),
}

impl UsageError {
    /// sysexits code for the command: always EX_USAGE.
    pub fn exit_code(&self) -> i32 {
        EX_USAGE
    }
}

/// Mode as Postfix tracks it while parsing; `-q...R/S/I` are kept beside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RawMode {
    Enqueue,
    MailQ,
    NewAlias,
    Standalone,
    FlushQ,
}

/// Parse sendmail's arguments (without argv[0]) in the default mode (deliver).
pub fn parse(args: &[OsString]) -> Result<SendmailOpts, UsageError> {
    parse_with_default_mode(Mode::Deliver, args)
}

/// Parse with another starting mode, for the program names that imply one: `mailq` starts in
/// `PrintQueue`, `newaliases` in `NewAliases` (options can still change it: `mailq -bm ...`
/// queues mail, as with Postfix).
pub fn parse_with_default_mode(default_mode: Mode, args: &[OsString]) -> Result<SendmailOpts, UsageError> {
    let mut mode = match default_mode {
        Mode::Deliver => RawMode::Enqueue,
        Mode::PrintQueue => RawMode::MailQ,
        Mode::NewAliases => RawMode::NewAlias,
        Mode::Smtp => RawMode::Standalone,
        Mode::Flush { .. } => RawMode::FlushQ,
        Mode::Nothing => RawMode::Enqueue,
    };
    let mut opts = SendmailOpts {
        mode: Mode::Deliver,
        sender: None,
        full_name: None,
        extract_recipients: false,
        ignore_dots: false,
        verbose: false,
        notify: None,
        ret: None,
        envid: None,
        body_type: BodyType::Unspecified,
        config_file: None,
        recipients: Vec::new(),
    };
    // `-qR`/`-qS` site (with the letter used), `-qI` given.
    let mut flush_site: Option<(String, char)> = None;
    let mut flush_id = false;
    let mut queue_interval = false;

    let mut i = 0;
    'words: while i < args.len() {
        let word = args[i].as_bytes();
        if word == b"-q" {
            mode = RawMode::FlushQ;
            i += 1;
            continue;
        }
        // Pre-2.3 Postfix VERP: `-V` followed by a two-character word (which stays a word of
        // its own), and `-Vxy`.
        if (word == b"-V" && args.get(i + 1).is_some_and(|next| next.len() == 2))
            || (word.len() == 4 && word.starts_with(b"-V"))
        {
            i += 1;
            continue;
        }
        if word == b"--" {
            i += 1;
            break;
        }
        if word.len() < 2 || word[0] != b'-' {
            break;
        }
        let mut j = 1;
        while j < word.len() {
            let letter = word[j];
            j += 1;
            if !b"ABCFLNORVXbefhopqr".contains(&letter) {
                match letter {
                    b'G' | b'U' | b'c' | b'm' | b'x' => {}
                    b'I' => mode = RawMode::NewAlias,
                    b'i' => opts.ignore_dots = true,
                    b'n' => return Err(UsageError::NotSupported("n".into())),
                    b't' => opts.extract_recipients = true,
                    b'v' => opts.verbose = true,
                    _ => return Err(UsageError::UnknownOption(char_at(word, j - 1))),
                }
                continue;
            }
            // The argument: the rest of this word, or the whole next word.
            let value: &[u8] = if j < word.len() {
                &word[j..]
            } else {
                i += 1;
                match args.get(i) {
                    Some(next) => next.as_bytes(),
                    None => return Err(UsageError::MissingArgument((letter as char).to_string())),
                }
            };
            match letter {
                b'A' | b'L' | b'O' | b'X' | b'e' | b'h' | b'p' => {}
                b'B' => opts.body_type = body_type(value)?,
                b'C' => opts.config_file = Some(config_file(value)?),
                b'F' => opts.full_name = Some(String::from_utf8_lossy(value).into_owned()),
                b'N' => opts.notify = Some(notify(value)?),
                b'R' => opts.ret = Some(ret(value)?),
                b'V' => opts.envid = Some(envid(value)?),
                b'b' => mode = b_mode(value)?,
                b'f' | b'r' => opts.sender = Some(address::parse_sender(&utf8(value)?)),
                b'o' => match value.first() {
                    Some(b'i') => opts.ignore_dots = true,
                    Some(b'A') if value.len() == 1 => return Err(UsageError::MissingArgument("oA".into())),
                    _ => {}
                },
                b'q' => match value.first() {
                    // -q<interval>: a queue run interval; Postfix ignores it.
                    Some(d) if d.is_ascii_digit() => queue_interval = true,
                    Some(&kind @ (b'R' | b'S')) => {
                        let kind = kind as char;
                        let site = if value.len() > 1 {
                            &value[1..]
                        } else {
                            // `-qR site`: the site as the next word.
                            i += 1;
                            match args.get(i) {
                                Some(next) if !next.is_empty() => next.as_bytes(),
                                _ => return Err(UsageError::MissingArgument(format!("q{kind}"))),
                            }
                        };
                        flush_site = Some((utf8(site)?, kind));
                    }
                    Some(b'I') if value.len() > 1 => flush_id = true,
                    Some(b'I') => return Err(UsageError::MissingArgument("qI".into())),
                    _ => return Err(UsageError::UnknownOption(format!("q{}", char_at(value, 0)))),
                },
                _ => unreachable!("letter {letter} is in the list of options with an argument"),
            }
            // The argument used up the rest of this word.
            i += 1;
            continue 'words;
        }
        i += 1;
    }
    opts.recipients = args[i.min(args.len())..].iter().map(|a| utf8(a.as_bytes())).collect::<Result<_, _>>()?;

    // Conflicts, in the order Postfix checks them.
    if opts.extract_recipients && mode != RawMode::Enqueue {
        return Err(UsageError::DeliveryModeOnly("t".into()));
    }
    if let Some((_, kind)) = &flush_site
        && mode != RawMode::Enqueue
    {
        return Err(UsageError::DeliveryModeOnly(format!("q{kind}")));
    }
    if flush_id && mode != RawMode::Enqueue {
        return Err(UsageError::DeliveryModeOnly("qI".into()));
    }
    let no_recipients = |what: &'static str| {
        if opts.recipients.is_empty() { Ok(()) } else { Err(UsageError::RecipientNotAllowed(what)) }
    };
    opts.mode = match mode {
        RawMode::Enqueue => match flush_site {
            Some((site, _)) => {
                no_recipients("flush site")?;
                Mode::Flush { site: Some(site) }
            }
            None if flush_id => {
                no_recipients("flush queue_id")?;
                Mode::Flush { site: None }
            }
            None if queue_interval && opts.recipients.is_empty() && !opts.extract_recipients => Mode::Nothing,
            None => Mode::Deliver,
        },
        RawMode::MailQ => {
            no_recipients("display queue mode")?;
            Mode::PrintQueue
        }
        RawMode::NewAlias => {
            no_recipients("alias initialization mode")?;
            Mode::NewAliases
        }
        RawMode::Standalone => {
            no_recipients("stand-alone mode")?;
            Mode::Smtp
        }
        RawMode::FlushQ => {
            no_recipients("flush queue mode")?;
            Mode::Flush { site: None }
        }
    };
    Ok(opts)
}

/// The character starting at byte `at` of `word`, for messages.
fn char_at(word: &[u8], at: usize) -> String {
    String::from_utf8_lossy(word.get(at..).unwrap_or_default()).chars().next().map(String::from).unwrap_or_default()
}

fn utf8(value: &[u8]) -> Result<String, UsageError> {
    std::str::from_utf8(value)
        .map(str::to_string)
        .map_err(|_| UsageError::NotUtf8(String::from_utf8_lossy(value).into_owned()))
}

fn bad(option: &str, value: &[u8], expected: &'static str) -> UsageError {
    UsageError::BadValue { option: option.to_string(), value: String::from_utf8_lossy(value).into_owned(), expected }
}

/// `-b`: only the first letter counts, as in Postfix (`-bpx` is `-bp`).
fn b_mode(value: &[u8]) -> Result<RawMode, UsageError> {
    match value.first() {
        Some(b'm') => Ok(RawMode::Enqueue),
        Some(b'p') => Ok(RawMode::MailQ),
        Some(b'i') => Ok(RawMode::NewAlias),
        Some(b's') => Ok(RawMode::Standalone),
        _ => Err(UsageError::UnsupportedMode(char_at(value, 0))),
    }
}

fn body_type(value: &[u8]) -> Result<BodyType, UsageError> {
    if value.eq_ignore_ascii_case(b"7BIT") {
        Ok(BodyType::SevenBit)
    } else if value.eq_ignore_ascii_case(b"8BITMIME") {
        Ok(BodyType::EightBitMime)
    } else {
        Err(bad("B", value, "expected 7BIT or 8BITMIME"))
    }
}

fn ret(value: &[u8]) -> Result<Ret, UsageError> {
    if value.eq_ignore_ascii_case(b"full") {
        Ok(Ret::Full)
    } else if value.eq_ignore_ascii_case(b"hdrs") {
        Ok(Ret::Hdrs)
    } else {
        Err(bad("R", value, "expected full or hdrs"))
    }
}

/// `-N`: `never`, or a list of success, delay, failure separated by commas or spaces, in any
/// case (Postfix's dsn_notify_mask).
fn notify(value: &[u8]) -> Result<Vec<Notify>, UsageError> {
    let error = || bad("N", value, "expected never, or a list of success, delay, failure");
    let mut list = Vec::new();
    for word in value.split(|&b| b == b',' || b.is_ascii_whitespace()).filter(|w| !w.is_empty()) {
        let n = if word.eq_ignore_ascii_case(b"never") {
            Notify::Never
        } else if word.eq_ignore_ascii_case(b"success") {
            Notify::Success
        } else if word.eq_ignore_ascii_case(b"delay") {
            Notify::Delay
        } else if word.eq_ignore_ascii_case(b"failure") {
            Notify::Failure
        } else {
            return Err(error());
        };
        if !list.contains(&n) {
            list.push(n);
        }
    }
    if list.is_empty() || (list.contains(&Notify::Never) && list.len() > 1) {
        return Err(error());
    }
    Ok(list)
}

/// `-V`: an RFC 3461 ENVID before xtext encoding: 1 to 100 printable ASCII characters.
fn envid(value: &[u8]) -> Result<String, UsageError> {
    if value.is_empty() || value.len() > 100 || !value.iter().all(|b| (0x21..=0x7e).contains(b)) {
        return Err(bad("V", value, "expected 1 to 100 printable ASCII characters without spaces"));
    }
    utf8(value)
}

/// `-C`: a configuration file, or a directory holding `tidemail.toml`.
fn config_file(value: &[u8]) -> Result<PathBuf, UsageError> {
    if value.is_empty() {
        return Err(bad("C", value, "expected a configuration file or directory"));
    }
    let path = PathBuf::from(OsStr::from_bytes(value));
    Ok(if path.is_dir() { path.join("tidemail.toml") } else { path })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStringExt;

    fn args(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    fn ok(words: &[&str]) -> SendmailOpts {
        parse(&args(words)).unwrap_or_else(|e| panic!("{words:?}: {e}"))
    }

    fn err(words: &[&str]) -> String {
        match parse(&args(words)) {
            Ok(o) => panic!("{words:?} accepted: {o:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn defaults() {
        let o = ok(&["a@example.com"]);
        assert_eq!(o.mode, Mode::Deliver);
        assert_eq!(o.sender, None);
        assert_eq!(o.full_name, None);
        assert!(!o.extract_recipients && !o.ignore_dots && !o.verbose);
        assert_eq!(o.notify, None);
        assert_eq!(o.ret, None);
        assert_eq!(o.envid, None);
        assert_eq!(o.body_type, BodyType::Unspecified);
        assert_eq!(o.config_file, None);
        assert_eq!(o.recipients, ["a@example.com"]);
        // No recipients at all is the caller's problem (Postfix complains after reading).
        assert_eq!(ok(&[]).recipients, Vec::<String>::new());
    }

    #[test]
    fn typical_callers() {
        // cron
        let o = ok(&["-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root"]);
        assert_eq!(o.full_name.as_deref(), Some("CronDaemon"));
        assert!(o.ignore_dots);
        assert_eq!(o.body_type, BodyType::EightBitMime);
        assert_eq!(o.recipients, ["root"]);
        // mutt
        let o = ok(&["-oi", "-oem", "--", "a@example.com", "b@example.com"]);
        assert!(o.ignore_dots);
        assert_eq!(o.recipients, ["a@example.com", "b@example.com"]);
        // git send-email
        let o = ok(&["-i", "-f", "dev@example.com", "list@example.org"]);
        assert_eq!(o.sender.as_deref(), Some("dev@example.com"));
        // scripts
        let o = ok(&["-t"]);
        assert!(o.extract_recipients);
        let o = ok(&["-t", "-oi", "-f", "bounce@example.com"]);
        assert!(o.extract_recipients && o.ignore_dots);
    }

    #[test]
    fn sender_forms() {
        assert_eq!(ok(&["-fme@example.com", "x"]).sender.as_deref(), Some("me@example.com"));
        assert_eq!(ok(&["-f", "me@example.com", "x"]).sender.as_deref(), Some("me@example.com"));
        assert_eq!(ok(&["-r", "me@example.com", "x"]).sender.as_deref(), Some("me@example.com"));
        assert_eq!(ok(&["-rme@example.com", "x"]).sender.as_deref(), Some("me@example.com"));
        assert_eq!(ok(&["-f", "<me@example.com>", "x"]).sender.as_deref(), Some("me@example.com"));
        assert_eq!(ok(&["-f", "Me Myself <me@example.com>", "x"]).sender.as_deref(), Some("me@example.com"));
        assert_eq!(ok(&["-f", "me", "x"]).sender.as_deref(), Some("me"));
        // The last one wins.
        assert_eq!(ok(&["-f", "a@b", "-r", "c@d", "x"]).sender.as_deref(), Some("c@d"));
        // The null sender.
        assert_eq!(ok(&["-f", "<>", "x"]).sender.as_deref(), Some(""));
        assert_eq!(ok(&["-f<>", "x"]).sender.as_deref(), Some(""));
        assert_eq!(ok(&["-f", "", "x"]).sender.as_deref(), Some(""));
        assert_eq!(ok(&["-r", "", "x"]).sender.as_deref(), Some(""));
        assert_eq!(ok(&["-f", " <> ", "x"]).sender.as_deref(), Some(""));
        // getopt takes the next word even if it looks like an option.
        assert_eq!(ok(&["-f", "-t", "x"]).sender.as_deref(), Some("-t"));
    }

    #[test]
    fn clustering() {
        let o = ok(&["-ti", "x"]);
        assert!(o.extract_recipients && o.ignore_dots);
        let o = ok(&["-tvi"]);
        assert!(o.extract_recipients && o.verbose && o.ignore_dots);
        // -o takes the rest of the word: -toi is -t, -o i.
        let o = ok(&["-toi"]);
        assert!(o.extract_recipients && o.ignore_dots);
        // An option with an argument ends the cluster: -tf is -t -f <next word>.
        let o = ok(&["-tf", "me@example.com"]);
        assert!(o.extract_recipients);
        assert_eq!(o.sender.as_deref(), Some("me@example.com"));
        assert_eq!(o.recipients, Vec::<String>::new());
        let o = ok(&["-tfme@example.com", "x"]);
        assert_eq!(o.sender.as_deref(), Some("me@example.com"));
        assert_eq!(o.recipients, ["x"]);
        // -it: both flags.
        assert!(ok(&["-it"]).ignore_dots);
        // -Fname with spaces, as one word.
        assert_eq!(ok(&["-F", "Joe User", "x"]).full_name.as_deref(), Some("Joe User"));
        assert_eq!(ok(&["-vFJoe", "x"]).full_name.as_deref(), Some("Joe"));
    }

    #[test]
    fn end_of_options() {
        let o = ok(&["-i", "--", "-f", "x"]);
        assert_eq!(o.sender, None);
        assert_eq!(o.recipients, ["-f", "x"]);
        // POSIX: options stop at the first non-option.
        let o = ok(&["a@example.com", "-f", "me@example.com"]);
        assert_eq!(o.sender, None);
        assert_eq!(o.recipients, ["a@example.com", "-f", "me@example.com"]);
        let o = ok(&["-t", "a@example.com", "-i"]);
        assert!(!o.ignore_dots);
        assert_eq!(o.recipients, ["a@example.com", "-i"]);
        // "-" alone is an operand.
        assert_eq!(ok(&["-", "x"]).recipients, ["-", "x"]);
        // Only the first "--" is special.
        assert_eq!(ok(&["--", "--", "x"]).recipients, ["--", "x"]);
        // An empty word is a (bad, but the caller decides) recipient.
        assert_eq!(ok(&["-i", "", "x"]).recipients, ["", "x"]);
        // Recipient lists in one word are kept as given.
        assert_eq!(ok(&["a@x, Joe <b@y>"]).recipients, ["a@x, Joe <b@y>"]);
    }

    #[test]
    fn modes() {
        assert_eq!(ok(&["-bm", "x"]).mode, Mode::Deliver);
        assert_eq!(ok(&["-bp"]).mode, Mode::PrintQueue);
        assert_eq!(ok(&["-b", "p"]).mode, Mode::PrintQueue);
        assert_eq!(ok(&["-bi"]).mode, Mode::NewAliases);
        assert_eq!(ok(&["-I"]).mode, Mode::NewAliases);
        assert_eq!(ok(&["-bs"]).mode, Mode::Smtp);
        assert_eq!(ok(&["-q"]).mode, Mode::Flush { site: None });
        // The last mode wins.
        assert_eq!(ok(&["-bp", "-bm", "x"]).mode, Mode::Deliver);
        assert_eq!(ok(&["-q", "-bp"]).mode, Mode::PrintQueue);
        assert_eq!(ok(&["-bp", "-q"]).mode, Mode::Flush { site: None });
        // Only the first letter of -b counts, as in Postfix.
        assert_eq!(ok(&["-bpx"]).mode, Mode::PrintQueue);
        // -v goes with any mode.
        assert!(ok(&["-v", "-bp"]).verbose);
        for m in ["-bd", "-bv", "-bt", "-bh", "-bH", "-bD", "-bl", "-bP", "-bx"] {
            assert_eq!(err(&[m]), format!("unsupported mode: {m}"));
        }
        assert_eq!(err(&["-b", ""]), "unsupported mode: -b");
        assert_eq!(err(&["-b"]), "option -b requires an argument");
    }

    #[test]
    fn default_mode_from_program_name() {
        let o = parse_with_default_mode(Mode::PrintQueue, &args(&[])).unwrap();
        assert_eq!(o.mode, Mode::PrintQueue);
        let o = parse_with_default_mode(Mode::NewAliases, &args(&["-v"])).unwrap();
        assert_eq!(o.mode, Mode::NewAliases);
        let o = parse_with_default_mode(Mode::PrintQueue, &args(&["-bm", "x"])).unwrap();
        assert_eq!(o.mode, Mode::Deliver);
        let e = parse_with_default_mode(Mode::PrintQueue, &args(&["x"])).unwrap_err();
        assert_eq!(e.to_string(), "display queue mode requires no recipient");
    }

    #[test]
    fn queue_flush_forms() {
        assert_eq!(ok(&["-q"]).mode, Mode::Flush { site: None });
        let site = |s: &str| Mode::Flush { site: Some(s.to_string()) };
        assert_eq!(ok(&["-qRexample.com"]).mode, site("example.com"));
        assert_eq!(ok(&["-qR", "example.com"]).mode, site("example.com"));
        assert_eq!(ok(&["-qSexample.com"]).mode, site("example.com"));
        assert_eq!(ok(&["-qS", "example.com"]).mode, site("example.com"));
        // `-q` alone is a word of its own: "R" is not its argument but a recipient.
        assert_eq!(err(&["-q", "R", "example.com"]), "flush queue mode requires no recipient");
        // -q inside a cluster takes an argument like any other option.
        assert_eq!(ok(&["-vqRexample.com"]).mode, site("example.com"));
        assert_eq!(ok(&["-vq", "Rexample.com"]).mode, site("example.com"));
        // -qI<id>: the whole queue is flushed.
        assert_eq!(ok(&["-qI4cXyZ1BcDfz2Bq"]).mode, Mode::Flush { site: None });
        // -q<interval>: accepted and ignored.
        let o = ok(&["-q30m", "x"]);
        assert_eq!(o.mode, Mode::Deliver);
        assert_eq!(o.recipients, ["x"]);
        assert_eq!(ok(&["-q30m"]).mode, Mode::Nothing);
        assert_eq!(ok(&["-q1h30m", "-bp"]).mode, Mode::PrintQueue);
        assert_eq!(ok(&["-bp", "-q15m"]).mode, Mode::PrintQueue);
        // Errors.
        assert_eq!(err(&["-qR"]), "option -qR requires an argument");
        assert_eq!(err(&["-qR", ""]), "option -qR requires an argument");
        assert_eq!(err(&["-qI"]), "option -qI requires an argument");
        assert_eq!(err(&["-qp30m"]), "unsupported option: -qp");
        assert_eq!(err(&["-qf"]), "unsupported option: -qf");
        assert_eq!(err(&["-vq"]), "option -q requires an argument");
        assert_eq!(err(&["-q", "x"]), "flush queue mode requires no recipient");
        assert_eq!(err(&["-qRexample.com", "x"]), "flush site requires no recipient");
        assert_eq!(err(&["-qIABC", "x"]), "flush queue_id requires no recipient");
        assert_eq!(err(&["-bp", "-qRexample.com"]), "option -qR can be used only in delivery mode");
        assert_eq!(err(&["-qSexample.com", "-bi"]), "option -qS can be used only in delivery mode");
        assert_eq!(err(&["-q", "-qRexample.com"]), "option -qR can be used only in delivery mode");
        assert_eq!(err(&["-bs", "-qIABC"]), "option -qI can be used only in delivery mode");
    }

    #[test]
    fn recipients_not_allowed() {
        assert_eq!(err(&["-bp", "x"]), "display queue mode requires no recipient");
        assert_eq!(err(&["-bi", "x"]), "alias initialization mode requires no recipient");
        assert_eq!(err(&["-I", "x"]), "alias initialization mode requires no recipient");
        assert_eq!(err(&["-bs", "x"]), "stand-alone mode requires no recipient");
        assert_eq!(err(&["-t", "-bp"]), "option -t can be used only in delivery mode");
        assert_eq!(err(&["-bs", "-t"]), "option -t can be used only in delivery mode");
    }

    #[test]
    fn o_options() {
        assert!(ok(&["-oi", "x"]).ignore_dots);
        assert!(ok(&["-o", "i", "x"]).ignore_dots);
        assert!(ok(&["-oitrue", "x"]).ignore_dots);
        for o in ["-oem", "-oee", "-oep", "-oeq", "-oew", "-om", "-odb", "-odi", "-odq", "-odd", "-o7", "-o8"] {
            let parsed = ok(&[o, "x"]);
            assert!(!parsed.ignore_dots, "{o}");
            assert_eq!(parsed.recipients, ["x"], "{o}");
        }
        assert_eq!(ok(&["-oA/etc/aliases", "-bi"]).mode, Mode::NewAliases);
        assert_eq!(ok(&["-oQ/var/spool", "-oL9", "-oTimeout.queuereturn=5d", "x"]).recipients, ["x"]);
        // Postfix's "-o x value" really is -o x, then "value" is a recipient.
        assert_eq!(ok(&["-o", "x", "value"]).recipients, ["value"]);
        assert_eq!(ok(&["-o", "", "x"]).recipients, ["x"]);
        assert_eq!(err(&["-oA"]), "option -oA requires an argument");
        assert_eq!(err(&["-o"]), "option -o requires an argument");
    }

    #[test]
    fn ignored_options() {
        for flag in ["-c", "-m", "-x", "-G", "-U"] {
            assert_eq!(ok(&[flag, "x"]).recipients, ["x"], "{flag}");
        }
        for (opt, value) in [
            ("-A", "m"),
            ("-L", "label"),
            ("-h", "17"),
            ("-e", "q"),
            ("-p", "SMTP:host"),
            ("-O", "DeliveryMode=b"),
            ("-X", "/tmp/log"),
        ] {
            let o = ok(&[opt, value, "x"]);
            assert_eq!(o.recipients, ["x"], "{opt} {value}");
            let attached = format!("{opt}{value}");
            assert_eq!(ok(&[&attached, "x"]).recipients, ["x"], "{attached}");
        }
        assert_eq!(ok(&["-Am", "-Ac", "-cmxGU", "x"]).recipients, ["x"]);
        // Old VERP forms.
        assert_eq!(ok(&["-XV", "x"]).recipients, ["x"]);
        assert_eq!(ok(&["-XV+=", "x"]).recipients, ["x"]);
        assert_eq!(ok(&["-V+=", "x"]).recipients, ["x"]);
        let o = ok(&["-V", "-t"]);
        assert!(o.extract_recipients);
        assert_eq!(o.envid, None);
        // `-V xy`: VERP, then "xy" is a recipient (as in Postfix).
        let o = ok(&["-V", "+=", "x"]);
        assert_eq!(o.envid, None);
        assert_eq!(o.recipients, ["+=", "x"]);
    }

    #[test]
    fn n_is_refused() {
        assert_eq!(err(&["-n", "x"]), "option -n is not supported");
        assert_eq!(err(&["-tn", "x"]), "option -n is not supported");
    }

    #[test]
    fn unknown_options() {
        assert_eq!(err(&["-a"]), "unsupported option: -a");
        assert_eq!(err(&["-tz"]), "unsupported option: -z");
        assert_eq!(err(&["-D", "x"]), "unsupported option: -D");
        assert_eq!(err(&["-é"]), "unsupported option: -é");
        assert_eq!(err(&["--help"]), "unsupported option: --");
        assert_eq!(err(&["-t-"]), "unsupported option: --");
        let e = parse(&args(&["-z"])).unwrap_err();
        assert_eq!(e.exit_code(), EX_USAGE);
        assert!(matches!(e, UsageError::UnknownOption(ref s) if s == "z"));
    }

    #[test]
    fn missing_arguments() {
        for o in ["A", "B", "C", "F", "L", "N", "O", "R", "X", "b", "e", "f", "h", "o", "p", "r"] {
            assert_eq!(err(&[&format!("-{o}")]), format!("option -{o} requires an argument"));
        }
        assert_eq!(err(&["-V"]), "option -V requires an argument");
        assert_eq!(err(&["-tf"]), "option -f requires an argument");
    }

    #[test]
    fn dsn_notify() {
        assert_eq!(ok(&["-N", "never", "x"]).notify, Some(vec![Notify::Never]));
        assert_eq!(ok(&["-NNEVER", "x"]).notify, Some(vec![Notify::Never]));
        assert_eq!(
            ok(&["-N", "success,delay,failure", "x"]).notify,
            Some(vec![Notify::Success, Notify::Delay, Notify::Failure])
        );
        assert_eq!(ok(&["-N", "Failure, Delay", "x"]).notify, Some(vec![Notify::Failure, Notify::Delay]));
        assert_eq!(ok(&["-N", "failure,failure", "x"]).notify, Some(vec![Notify::Failure]));
        assert_eq!(ok(&["-Nsuccess", "x"]).notify, Some(vec![Notify::Success]));
        assert_eq!(
            err(&["-N", "sucess", "x"]),
            r#"bad -N value: "sucess" (expected never, or a list of success, delay, failure)"#
        );
        assert!(err(&["-N", "never,success", "x"]).starts_with(r#"bad -N value: "never,success""#));
        assert!(err(&["-N", "", "x"]).starts_with(r#"bad -N value: """#));
        assert!(err(&["-N", ",", "x"]).starts_with("bad -N value"));
    }

    #[test]
    fn dsn_ret_and_envid() {
        assert_eq!(ok(&["-R", "full", "x"]).ret, Some(Ret::Full));
        assert_eq!(ok(&["-RHDRS", "x"]).ret, Some(Ret::Hdrs));
        assert_eq!(err(&["-R", "all", "x"]), r#"bad -R value: "all" (expected full or hdrs)"#);
        assert_eq!(ok(&["-V", "envid-123.x+y=z", "x"]).envid.as_deref(), Some("envid-123.x+y=z"));
        assert_eq!(ok(&["-Vabcdef", "x"]).envid.as_deref(), Some("abcdef"));
        assert_eq!(ok(&["-tV", "ab", "x"]).envid.as_deref(), Some("ab"));
        let hundred = "e".repeat(100);
        assert_eq!(ok(&["-V", &hundred, "x"]).envid.as_deref(), Some(hundred.as_str()));
        let long = "e".repeat(101);
        assert!(err(&["-V", &long, "x"]).starts_with("bad -V value"));
        assert!(err(&["-V", "has space", "x"]).starts_with(r#"bad -V value: "has space""#));
        assert!(err(&["-V", "ünïcode", "x"]).starts_with("bad -V value"));
        assert!(err(&["-V", "", "x"]).starts_with("bad -V value"));
        assert!(err(&["-V", "a\nb", "x"]).starts_with(r#"bad -V value: "a\nb""#));
    }

    #[test]
    fn body_type_values() {
        assert_eq!(ok(&["-B", "7BIT", "x"]).body_type, BodyType::SevenBit);
        assert_eq!(ok(&["-B8BITMIME", "x"]).body_type, BodyType::EightBitMime);
        assert_eq!(ok(&["-B", "8bitmime", "x"]).body_type, BodyType::EightBitMime);
        assert_eq!(err(&["-B", "BINARYMIME", "x"]), r#"bad -B value: "BINARYMIME" (expected 7BIT or 8BITMIME)"#);
    }

    #[test]
    fn config_option() {
        let o = ok(&["-C", "/nonexistent/tidemail-test.toml", "x"]);
        assert_eq!(o.config_file, Some(PathBuf::from("/nonexistent/tidemail-test.toml")));
        let dir = std::env::temp_dir();
        let o = ok(&["-C", dir.to_str().unwrap(), "x"]);
        assert_eq!(o.config_file, Some(dir.join("tidemail.toml")));
        let attached = format!("-C{}", dir.display());
        assert_eq!(ok(&[&attached, "-bp"]).config_file, Some(dir.join("tidemail.toml")));
        assert!(err(&["-C", "", "x"]).starts_with("bad -C value"));
        // Not UTF-8 is fine for a path.
        let o = parse(&[OsString::from("-C"), OsString::from_vec(b"/tmp/\xff.toml".to_vec()), "x".into()]).unwrap();
        assert_eq!(o.config_file, Some(PathBuf::from(OsString::from_vec(b"/tmp/\xff.toml".to_vec()))));
    }

    #[test]
    fn non_utf8_arguments() {
        let bad = OsString::from_vec(b"j\xfcrgen@example.com".to_vec());
        let e = parse(std::slice::from_ref(&bad)).unwrap_err();
        assert_eq!(e.to_string(), "argument is not valid UTF-8: \"j\u{fffd}rgen@example.com\"");
        assert!(parse(&["-f".into(), bad]).is_err());
        // A full name is converted lossily rather than refused.
        let o = parse(&["-F".into(), OsString::from_vec(b"J\xfcrgen".to_vec()), "x".into()]).unwrap();
        assert_eq!(o.full_name.as_deref(), Some("J\u{fffd}rgen"));
        // Ignored option values may be anything.
        assert!(parse(&["-L".into(), OsString::from_vec(vec![0xff]), "x".into()]).is_ok());
    }

    #[test]
    fn flags() {
        assert!(ok(&["-i", "x"]).ignore_dots);
        assert!(ok(&["-v", "x"]).verbose);
        assert!(ok(&["-v", "-v", "x"]).verbose);
        assert!(ok(&["-t"]).extract_recipients);
        let o = ok(&["-t", "extra@example.com"]);
        assert!(o.extract_recipients);
        assert_eq!(o.recipients, ["extra@example.com"]);
    }
}
