//! `tidemail config`: show or check the configuration, like postconf(1).
//!
//! * no names: every parameter, `name = value`, sorted, values as written (`$name` unexpanded)
//! * `-n`: only what the file sets; `-d`: the built-in defaults (no file read)
//! * names: just those parameters
//! * `check`: validate quietly; the exit status says whether the file is good

use std::io::{self, Write};
use std::path::Path;

use crate::config::{Config, ConfigEntry};
use crate::sysexits::{EX_CONFIG, EX_IOERR, EX_OK, EX_USAGE};

/// Runs the command; returns the exit status. Errors are one line on stderr.
pub fn run(config_file: &Path, non_default: bool, defaults: bool, args: &[String]) -> i32 {
    if args.len() == 1 && args[0] == "check" {
        return match Config::load(config_file) {
            Ok(_) => EX_OK,
            Err(error) => fatal(&error, EX_CONFIG),
        };
    }
    if let Some(unknown) = args.iter().find(|name| !Config::is_parameter(name)) {
        let hint = match Config::suggest(unknown) {
            Some(close) => format!(" (did you mean \"{close}\"?)"),
            None => String::new(),
        };
        return fatal(&format!("unknown parameter \"{unknown}\"{hint}"), EX_USAGE);
    }
    let config = if defaults {
        Config::defaults()
    } else {
        match Config::load(config_file) {
            Ok(config) => config,
            Err(error) => return fatal(&error, EX_CONFIG),
        }
    };
    let wanted = |entry: &ConfigEntry<'_>| {
        (!non_default || entry.explicit) && (args.is_empty() || args.iter().any(|name| name == entry.name))
    };
    let mut out = io::stdout().lock();
    for entry in config.entries().filter(wanted) {
        if let Err(error) = writeln!(out, "{}", setting_line(entry.name, entry.raw)) {
            return write_failed(&error);
        }
    }
    match out.flush() {
        Ok(()) => EX_OK,
        Err(error) => write_failed(&error),
    }
}

/// `name = value` as postconf prints it: no trailing space after an empty value.
fn setting_line(name: &str, value: &str) -> String {
    if value.is_empty() { format!("{name} =") } else { format!("{name} = {value}") }
}

fn fatal(error: &dyn std::fmt::Display, status: i32) -> i32 {
    eprintln!("tidemail: fatal: {error}");
    status
}

/// A reader that went away (`tidemail config | head`) is not an error worth a message.
fn write_failed(error: &io::Error) -> i32 {
    if error.kind() == io::ErrorKind::BrokenPipe {
        return EX_OK;
    }
    fatal(&format!("cannot write to standard output: {error}"), EX_IOERR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_values_have_no_trailing_space() {
        assert_eq!(setting_line("relayhost", ""), "relayhost =");
        assert_eq!(setting_line("myorigin", "$myhostname"), "myorigin = $myhostname");
    }
}
