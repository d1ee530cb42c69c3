//! The command line: one binary, many names. Run as `sendmail`, `mailq` or `newaliases`
//! (argv[0], so a symlink works) it is that command; otherwise it takes subcommands.

pub mod config_cmd;
pub mod flush;
pub mod mailq;
pub mod map_cmd;
pub mod newaliases;
pub mod queue_cmd;
pub mod sendmail;
pub mod sendmail_args;
pub mod signals;
pub mod smtp_stdin;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

use crate::config::{self, Config};
use crate::sysexits::EX_USAGE;

#[derive(Parser)]
#[command(name = "tidemail", version, about = "A mail server for small offices and laptops on links that come and go")]
struct Cli {
    /// Configuration file [default: $TIDEMAIL_CONFIG, else /etc/tidemail/tidemail.toml]
    #[arg(short = 'c', long = "config", global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the mail system in the foreground (pickup, queue manager, control socket)
    Daemon,
    /// Submit a message, as the sendmail command does (same options: -t, -f, -i, -bp, -q ...)
    Sendmail {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "ARGS")]
        args: Vec<OsString>,
    },
    /// List the queue, like mailq / postqueue -p
    Queue {
        /// One JSON object per message, like postqueue -j
        #[arg(long)]
        json: bool,
    },
    /// Print the effective configuration (like postconf), or `config check` to validate it
    Config {
        /// Only settings made in the file
        #[arg(short = 'n')]
        non_default: bool,
        /// Built-in defaults
        #[arg(short = 'd')]
        defaults: bool,
        /// `check`, or parameter names to print
        args: Vec<String>,
    },
    /// Ask the daemon to attempt all deferred mail now, held transports included
    Flush {
        /// Wait until the flush is over; print a summary; exit 0 if nothing is left deferred, 75 if something is.
        /// Without a running daemon, deliver the queue in this process.
        #[arg(long)]
        wait: bool,
        /// With --wait: give up waiting after this many seconds (exit 75; the flush goes on)
        #[arg(long, value_name = "SECS", requires = "wait")]
        timeout: Option<u64>,
    },
    /// Rebuild the alias database (newaliases)
    Newaliases,
    /// Query or build lookup tables (postmap, postalias)
    Map {
        #[command(subcommand)]
        command: map_cmd::MapCommand,
    },
}

/// Entry point; returns the process exit status.
pub fn main() -> i32 {
    let args: Vec<OsString> = std::env::args_os().collect();
    let name = args
        .first()
        .and_then(|a| Path::new(a).file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    let rest = &args[1.min(args.len())..];
    match name.as_str() {
        "sendmail" => sendmail::run(None, rest),
        "mailq" => sendmail::run(None, &with_mode("-bp", rest)),
        "newaliases" => sendmail::run(None, &with_mode("-bi", rest)),
        _ => subcommand(args),
    }
}

fn with_mode(mode: &str, rest: &[OsString]) -> Vec<OsString> {
    std::iter::once(OsString::from(mode)).chain(rest.iter().cloned()).collect()
}

fn subcommand(args: Vec<OsString>) -> i32 {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { EX_USAGE } else { 0 };
        }
    };
    let path = config::config_path(cli.config.as_deref());
    match cli.command {
        Command::Daemon => crate::daemon::run(&path),
        Command::Sendmail { args } => sendmail::run(cli.config.as_deref(), &args),
        Command::Config { non_default, defaults, args } => config_cmd::run(&path, non_default, defaults, &args),
        Command::Queue { json } => with_config(&path, |cfg| queue_cmd::run(cfg, json)),
        Command::Flush { wait: false, .. } => with_config(&path, flush::run),
        Command::Flush { wait: true, timeout } => {
            with_config(&path, |cfg| flush::run_wait(cfg, timeout.map(std::time::Duration::from_secs)))
        }
        Command::Newaliases => with_config(&path, newaliases::run),
        Command::Map { command } => map_cmd::run(command),
    }
}

/// Load the configuration or say why not (one line) and exit EX_CONFIG.
fn with_config(path: &Path, f: impl FnOnce(&Config) -> i32) -> i32 {
    match Config::load(path) {
        Ok(cfg) => f(&cfg),
        Err(e) => {
            eprintln!("tidemail: fatal: {e}");
            crate::sysexits::EX_CONFIG
        }
    }
}
