//! `tidemail map query` and `tidemail map build`: what Postfix's postmap (and postalias) do.
//!
//! - `map query TABLE KEY` prints the value and exits 0, or exits 1 when the key is not
//!   found (postmap -q). With several keys, or `-` (keys read from standard input, one per
//!   line, postmap -q -), it prints `key<TAB>value` for each key found and exits 0 when at
//!   least one was.
//! - `map build TABLE...` compiles `hash:FILE` (also `btree:`, `cdb:`) into `FILE.cdb`;
//!   `--aliases` reads the aliases(5) format instead (postalias). For tables read directly
//!   (texthash, regexp, pcre, cidr) it checks the file and builds nothing.
//!
//! A TABLE without `type:` is `hash:` (Postfix's default_database_type). The tables name
//! their own files, so the configuration is not read (`-c` is accepted and has no effect).
//!
//! Exit status: 0 done; 1 not found (query); 64 a table type that cannot be queried or
//! built this way; 75 the table cannot be read or written now (try again); 78 the table's
//! source is wrong (file and line named) or does not exist.

use std::io::{self, BufRead, Write};
use std::path::Path;

use clap::Subcommand;

use crate::maps::{self, MapError, hash};
use crate::sysexits::{EX_CONFIG, EX_OK, EX_TEMPFAIL, EX_USAGE};

#[derive(Subcommand, Debug)]
pub enum MapCommand {
    /// Look keys up, like postmap -q: print the value (exit 0), or exit 1 if not found
    Query {
        /// The table, as type:name (hash:/etc/postfix/access, regexp:/etc/x, inline:{a=b}...)
        table: String,
        /// Keys to look up; "-" reads keys from standard input and prints "key<TAB>value"
        #[arg(required = true, allow_hyphen_values = true)]
        keys: Vec<String>,
    },
    /// Compile hash:FILE into FILE.cdb, like postmap (check regexp/pcre/cidr/texthash files)
    Build {
        /// The sources are aliases(5) files ("name: value, ..."), like postalias
        #[arg(long)]
        aliases: bool,
        /// Tables, as type:name
        #[arg(required = true)]
        tables: Vec<String>,
    },
}

pub fn run(command: MapCommand) -> i32 {
    match command {
        MapCommand::Query { table, keys } => query(&with_type(&table), &keys),
        MapCommand::Build { aliases, tables } => {
            let format = if aliases { hash::Format::Aliases } else { hash::Format::Map };
            tables.iter().map(|t| build(&with_type(t), format)).fold(EX_OK, worst)
        }
    }
}

/// A table named without `type:` is `hash:`.
pub fn with_type(table: &str) -> String {
    if table.contains(':') { table.to_string() } else { format!("hash:{table}") }
}

/// The exit status for a table error.
pub fn status(e: &MapError) -> i32 {
    match e {
        MapError::Unavailable { .. } => EX_TEMPFAIL,
        MapError::Syntax { .. } => EX_CONFIG,
        MapError::UnknownType(_) | MapError::BadSpec(_) => EX_USAGE,
    }
}

/// Of two exit statuses, the one that matters more (a config error outranks a temporary one).
pub fn worst(a: i32, b: i32) -> i32 {
    let rank = |s: i32| match s {
        EX_OK => 0,
        EX_TEMPFAIL => 1,
        EX_CONFIG => 2,
        _ => 3,
    };
    if rank(b) > rank(a) { b } else { a }
}

fn fatal(e: &MapError) -> i32 {
    eprintln!("tidemail: fatal: {e}");
    status(e)
}

fn query(spec: &str, keys: &[String]) -> i32 {
    let map = match maps::open(spec) {
        Ok(map) => map,
        Err(e) => return fatal(&e),
    };
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let mut found = false;
    let mut ask = |key: &str, with_key: bool, out: &mut dyn Write| -> Result<(), MapError> {
        if let Some(value) = map.lookup(key)? {
            found = true;
            let _ = if with_key { writeln!(out, "{key}\t{value}") } else { writeln!(out, "{value}") };
        }
        Ok(())
    };
    let result = if keys == ["-"] {
        let mut result = Ok(());
        for line in io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            result = ask(line.strip_suffix('\r').unwrap_or(&line), true, &mut out);
            if result.is_err() {
                break;
            }
        }
        result
    } else {
        keys.iter().try_for_each(|key| ask(key, keys.len() > 1, &mut out))
    };
    let _ = out.flush();
    match result {
        Err(e) => fatal(&e),
        Ok(()) if found => EX_OK,
        Ok(()) => 1,
    }
}

/// Build (or, for tables without a compiled form, check) one table. Warnings and errors go
/// to stderr, one line each. Shared with newaliases.
pub fn build(spec: &str, format: hash::Format) -> i32 {
    let (kind, name) = match maps::split_spec(spec) {
        Ok(parts) => parts,
        Err(e) => return fatal(&e),
    };
    match kind {
        "hash" | "btree" | "cdb" => {
            let source = Path::new(name);
            if !source.exists() {
                eprintln!("tidemail: fatal: {spec}: source file {name} does not exist");
                return EX_CONFIG;
            }
            match hash::build(spec, source, format) {
                Ok(built) => {
                    for warning in &built.warnings {
                        eprintln!("tidemail: warning: {warning}");
                    }
                    EX_OK
                }
                Err(e) => fatal(&e),
            }
        }
        "texthash" | "regexp" | "pcre" | "cidr" if format == hash::Format::Map => match maps::open(spec) {
            Ok(_) => {
                eprintln!("tidemail: {spec}: no errors; {kind}: tables are read directly, nothing to build");
                EX_OK
            }
            Err(e) => fatal(&e),
        },
        _ => {
            eprintln!(
                "tidemail: fatal: {spec}: {kind}: tables cannot be built{}",
                match format {
                    hash::Format::Aliases => " from an aliases file (use hash:)",
                    hash::Format::Map => "",
                }
            );
            EX_USAGE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(worst(EX_OK, EX_TEMPFAIL), EX_TEMPFAIL);
        assert_eq!(worst(EX_CONFIG, EX_TEMPFAIL), EX_CONFIG);
        assert_eq!(worst(EX_OK, EX_OK), EX_OK);
        assert_eq!(status(&MapError::unavailable("x", "y")), EX_TEMPFAIL);
        assert_eq!(status(&MapError::BadSpec("x".into())), EX_USAGE);
        assert_eq!(with_type("/etc/aliases"), "hash:/etc/aliases");
        assert_eq!(with_type("inline:{a=b}"), "inline:{a=b}");
    }
}
