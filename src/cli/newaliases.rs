//! `newaliases`, `sendmail -bi`, `tidemail newaliases`: build every alias_database table
//! (`hash:/etc/aliases` → `/etc/aliases.cdb`), as Postfix's newaliases runs postalias.
//!
//! Unlike Postfix, which warns about a bad line and builds the table without it, a syntax
//! error stops that table's build and leaves the previous compiled file in use: an alias
//! silently missing would bounce mail or, worse, let it reach the wrong mailbox. The error
//! names the file and line. The other tables are still built.
//!
//! Tables of a type without a compiled form (texthash, regexp, sql...) are skipped with a
//! warning: the local delivery agent reads them directly.
//!
//! Exit status: 0 all built; 75 a table could not be read or written (try again); 78 a
//! source has a syntax error or does not exist (the configuration or the file needs fixing).

use crate::config::Config;
use crate::maps::{self, hash};
use crate::sysexits::EX_OK;

use super::map_cmd;

pub fn run(cfg: &Config) -> i32 {
    let mut status = EX_OK;
    for spec in cfg.alias_database() {
        let spec = &map_cmd::with_type(spec);
        let kind = maps::split_spec(spec).map(|(kind, _)| kind).unwrap_or("");
        let result = match kind {
            // A bad name is reported by build.
            "hash" | "btree" | "cdb" | "" => map_cmd::build(spec, hash::Format::Aliases),
            _ => {
                eprintln!("tidemail: warning: alias_database {spec}: {kind}: tables have nothing to build; skipped");
                EX_OK
            }
        };
        status = map_cmd::worst(status, result);
    }
    status
}
