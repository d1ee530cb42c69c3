//! The sendmail command: what cron, mutt, git send-email and scripts call.

use std::ffi::OsString;
use std::io::{self, BufReader};
use std::path::Path;

use crate::config::{self, Config};
use crate::submit::input::MessageInput;
use crate::submit::maildrop::{self, LocalSubmission};
use crate::sysexits::{EX_OK, EX_TEMPFAIL, EX_USAGE};

use super::sendmail_args::{self, Mode, SendmailOpts};

/// `global_config` is `tidemail -c FILE sendmail ...`; sendmail's own `-C FILE` wins over it.
pub fn run(global_config: Option<&Path>, args: &[OsString]) -> i32 {
    let opts = match sendmail_args::parse(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("sendmail: fatal: {e}");
            return EX_USAGE;
        }
    };
    let path = config::config_path(opts.config_file.as_deref().or(global_config));
    let cfg = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            // Temporary from the caller's point of view: the admin fixes it, the caller retries.
            eprintln!("sendmail: fatal: {e}");
            return EX_TEMPFAIL;
        }
    };
    match &opts.mode {
        Mode::PrintQueue => super::queue_cmd::run(&cfg, false),
        Mode::NewAliases => super::newaliases::run(&cfg),
        Mode::Flush { .. } => super::flush::run(&cfg),
        Mode::Smtp => super::smtp_stdin::run(&cfg),
        Mode::Nothing => EX_OK,
        Mode::Deliver => deliver(&cfg, opts),
    }
}

fn deliver(cfg: &Config, opts: SendmailOpts) -> i32 {
    let verbose = opts.verbose;
    let request = LocalSubmission {
        sender: opts.sender,
        full_name: opts.full_name,
        recipients: opts.recipients,
        extract_recipients: opts.extract_recipients,
        notify: opts.notify,
        ret: opts.ret,
        envid: opts.envid,
    };
    let stdin = io::stdin();
    let mut input = MessageInput::new(BufReader::with_capacity(64 * 1024, stdin.lock()), opts.ignore_dots);
    match maildrop::submit(cfg, request, &mut input) {
        Ok(id) => {
            if verbose {
                eprintln!("sendmail: message queued as {id}");
            }
            EX_OK
        }
        Err(e) => {
            eprintln!("sendmail: fatal: {e}");
            e.exit_code()
        }
    }
}
