//! `newaliases`, `sendmail -bi`, `tidemail newaliases`.
//!
//! Debian policy asks every MTA to ship newaliases, "even if it does nothing". Building
//! alias_database belongs to the lookup-table work (hash: tables); until then this command
//! checks that the configuration loads and says plainly that there is nothing to build.

use crate::config::Config;
use crate::sysexits::EX_OK;

pub fn run(cfg: &Config) -> i32 {
    eprintln!(
        "newaliases: alias_database {} is not built by this version (alias tables come with lookup-table support); nothing to do",
        cfg.alias_database().join(", ")
    );
    EX_OK
}
