//! The `local` transport: mail for this machine's own users (Postfix's local(8)).
//!
//! - [`expand`]: a recipient becomes delivery targets: aliases (recursively, with loop
//!   detection), `:include:` files, `.forward` files, and finally the user's mailbox;
//! - [`mbox`], [`maildir`], [`lock`]: writing a mailbox file (fcntl and dotlock locking as
//!   Debian's mail programs expect) or a Maildir;
//! - [`command`]: `|command` targets and mailbox_command (procmail), run without a shell
//!   unless the command needs one, with a time limit;
//!
//! Every target is written or run as the user it belongs to, never as root.

pub mod agent;
pub mod command;
pub mod expand;
pub mod lock;
pub mod maildir;
pub mod mbox;
pub mod privsep;

/// A message as local delivery writes it.
#[derive(Debug, Clone)]
pub struct LocalMessage<'a> {
    /// The envelope sender; empty for the null sender (written `MAILER-DAEMON` in the mbox
    /// `From ` line, `<>` in Return-Path:).
    pub sender: &'a str,
    /// Header lines to put on top, without line ends (`Return-Path: <a@b>`, `Delivered-To:
    /// tom@example.com`, `X-Original-To: root@example.com`), in order.
    pub prepend: Vec<String>,
    /// The message as queued: header, blank line, body, with `\n` line ends.
    pub content: &'a [u8],
}

/// Why a target was not delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[error("{text}")]
pub struct LocalError {
    /// Try again later (4.x.x) rather than bounce (5.x.x).
    pub temporary: bool,
    /// Enhanced status code, e.g. `4.2.0`, `5.2.2`.
    pub dsn: String,
    /// The reason, as the log line's parenthesised text and the DSN shows it.
    pub text: String,
}

impl LocalError {
    pub fn temporary(dsn: &str, text: impl Into<String>) -> LocalError {
        LocalError { temporary: true, dsn: dsn.to_string(), text: text.into() }
    }

    pub fn permanent(dsn: &str, text: impl Into<String>) -> LocalError {
        LocalError { temporary: false, dsn: dsn.to_string(), text: text.into() }
    }
}

/// The identity a target is written or run as: a user's uid, primary gid and supplementary
/// groups (the recipient, the alias file's owner, or default_privs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Privs {
    pub user: String,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub home: std::path::PathBuf,
    pub shell: String,
}
