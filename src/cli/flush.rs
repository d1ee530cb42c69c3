//! `tidemail flush`, `sendmail -q`: ask the daemon to attempt every deferred message now,
//! held transports included. Returns at once.

use std::path::Path;
use std::time::Duration;

use crate::config::Config;
use crate::control::{self, Reply, Request};
use crate::sysexits::{EX_OK, EX_SOFTWARE, EX_TEMPFAIL};

pub fn run(cfg: &Config) -> i32 {
    match control::request(Path::new(cfg.queue_directory()), &Request::Flush, Duration::from_secs(10)) {
        Ok(Reply::Ok { .. }) => EX_OK,
        Ok(Reply::Error { message }) => {
            eprintln!("tidemail: fatal: flush refused: {message}");
            EX_SOFTWARE
        }
        Err(e) if control::is_daemon_down(&e) => {
            eprintln!("tidemail: fatal: cannot flush the mail queue: the mail system is down (start tidemail daemon)");
            EX_TEMPFAIL
        }
        Err(e) => {
            eprintln!("tidemail: fatal: cannot flush the mail queue: {e}");
            EX_TEMPFAIL
        }
    }
}
