//! The sendmail command's side of local submission: write the message durably into maildrop.
//!
//! This works whether or not the daemon runs; the daemon is only woken up (best effort) so it
//! picks the message up at once rather than at its next maildrop scan.

use std::io::{self, BufRead};
use std::path::Path;

use crate::address;
use crate::cleanup::{CopyError, write_message};
use crate::config::Config;
use crate::message::{self, HeaderLimits};
use crate::queue::{
    self, Envelope, MessageWriter, Notify, Origin, QueueError, QueueName, QueueStore, Recipient, Ret, Submission,
};
use crate::sysexits::{EX_CANTCREAT, EX_DATAERR, EX_TEMPFAIL, EX_USAGE};

/// Why a submission failed, each with its sysexits code.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Data(String),
    #[error("{0}")]
    CantCreate(String),
    #[error("{0}")]
    TempFail(String),
}

impl SubmitError {
    pub fn exit_code(&self) -> i32 {
        match self {
            SubmitError::Usage(_) => EX_USAGE,
            SubmitError::Data(_) => EX_DATAERR,
            SubmitError::CantCreate(_) => EX_CANTCREAT,
            SubmitError::TempFail(_) => EX_TEMPFAIL,
        }
    }
}

/// What the sendmail command line asked for.
#[derive(Debug, Clone, Default)]
pub struct LocalSubmission {
    /// -f/-r; `Some("")` is the null sender; `None` means "the submitting user".
    pub sender: Option<String>,
    pub full_name: Option<String>,
    pub recipients: Vec<String>,
    /// -t: recipients from To/Cc/Bcc (or Resent-*), Bcc removed.
    pub extract_recipients: bool,
    pub notify: Option<Vec<Notify>>,
    pub ret: Option<Ret>,
    pub envid: Option<String>,
}

/// Open the queue for a new maildrop file, checking that there is room for it.
pub fn open(cfg: &Config) -> Result<(QueueStore, MessageWriter), SubmitError> {
    let root = Path::new(cfg.queue_directory());
    if !queue::layout::exists(root) {
        // First use before the daemon ever ran: create the tree if we may (root, or a
        // development setup owned by this user); otherwise say what to do.
        let owner = crate::daemon::privileges::queue_owner(cfg)
            .map_err(|e| SubmitError::TempFail(format!("cannot create queue {}: {e}", root.display())))?;
        queue::layout::ensure(root, owner).map_err(|e| {
            SubmitError::TempFail(format!("queue directory {} is missing and cannot be created: {e}", root.display()))
        })?;
    }
    let store = QueueStore::new(root);
    let free = store.free_space().map_err(|e| SubmitError::TempFail(format!("{}: {e}", root.display())))?;
    if free < cfg.queue_minfree() {
        return Err(SubmitError::TempFail(format!(
            "insufficient system storage: {free} bytes free in {}, queue_minfree is {}",
            root.display(),
            cfg.queue_minfree()
        )));
    }
    let writer = store.create(QueueName::Maildrop, cfg.message_size_limit()).map_err(|e| create_error(root, e))?;
    Ok((store, writer))
}

fn create_error(root: &Path, e: QueueError) -> SubmitError {
    let msg = format!("cannot create queue file in {}/maildrop: {e}", root.display());
    match &e {
        QueueError::Io(io) if is_temporary(io) => SubmitError::TempFail(msg),
        _ => SubmitError::CantCreate(msg),
    }
}

/// Conditions an admin fixes (permissions, space, a missing directory): the caller should retry.
fn is_temporary(e: &io::Error) -> bool {
    use nix::errno::Errno;
    matches!(
        e.raw_os_error().map(Errno::from_raw),
        Some(Errno::EACCES | Errno::EPERM | Errno::ENOENT | Errno::EROFS | Errno::ENOSPC | Errno::EDQUOT)
    )
}

fn write_error(e: QueueError) -> SubmitError {
    match e {
        QueueError::TooBig { limit } => SubmitError::Data(format!("message size exceeds limit of {limit} bytes")),
        QueueError::Io(io) if is_temporary(&io) => SubmitError::TempFail(format!("cannot write queue file: {io}")),
        e => SubmitError::CantCreate(format!("cannot write queue file: {e}")),
    }
}

/// Read a message (already LF-normalised, see `input::MessageInput`) and queue it in maildrop.
/// Returns the maildrop queue ID once the file is durable.
pub fn submit(cfg: &Config, request: LocalSubmission, input: &mut dyn BufRead) -> Result<String, SubmitError> {
    let sender = match &request.sender {
        Some(s) => Some(address::parse_path(s).map_err(|e| SubmitError::Usage(format!("bad sender address: {e}")))?),
        None => None,
    };
    let mut recipients: Vec<String> = Vec::new();
    for arg in &request.recipients {
        let parsed = address::parse_address_list(arg);
        if parsed.is_empty() {
            return Err(SubmitError::Usage(format!("bad recipient address: \"{arg}\"")));
        }
        recipients.extend(parsed);
    }
    if recipients.is_empty() && !request.extract_recipients {
        return Err(SubmitError::Usage("no recipients specified: give them on the command line or use -t".into()));
    }

    let limits =
        HeaderLimits { header_size_limit: cfg.header_size_limit(), line_length_limit: cfg.line_length_limit() };
    let (mut headers, body_start) = message::read_header_block(input, &limits)
        .map_err(|e| SubmitError::Data(format!("cannot read message: {e}")))?;
    if request.extract_recipients {
        recipients.extend(message::extract_recipients(&headers));
        message::remove_bcc(&mut headers);
        if recipients.is_empty() {
            return Err(SubmitError::Data("no recipient addresses found in message header".into()));
        }
    }

    let (store, mut writer) = open(cfg)?;
    let _cleanup_on_signal = crate::cli::signals::RemoveOnSignal::new(writer.temp_path());
    write_message(&mut writer, &headers, &body_start, input).map_err(|e| match e {
        CopyError::Read(e) => SubmitError::Data(format!("cannot read message: {e}")),
        CopyError::Write(e) => write_error(e),
    })?;

    let recipients = recipients
        .into_iter()
        .map(|r| Recipient { notify: request.notify.clone().unwrap_or_default(), ..Recipient::new(r) })
        .collect();
    // The uid is informational only: pickup takes it from the file's owner.
    let origin = Origin::Local { uid: nix::unistd::getuid().as_raw() };
    let envelope = Envelope {
        envid: request.envid,
        ret: request.ret,
        submission: Some(Submission { full_name: request.full_name, sender_from_uid: sender.is_none() }),
        ..Envelope::new(sender.clone().unwrap_or_default(), recipients, origin, writer.arrival_us())
    };
    let id = store.commit(writer, &envelope).map_err(write_error)?;
    crate::control::wake_daemon(store.root());
    Ok(id)
}
