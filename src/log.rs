//! The mail log: every line that pflogsumm, mailgraph or an admin's grep reads is built here.
//!
//! A line is `SYSLOG_NAME/SERVICE[PID]: TEXT`, exactly as Postfix writes it
//! (`tidemail/qmgr[812]: 4cXyZ1BcDfz2Bq: removed`). Field order and number formatting are an
//! interface: log parsers match them with regular expressions, so nothing here is "pretty".
//!
//! - [`log`] and the `mail_info!` / `mail_warning!` / `mail_error!` / `mail_fatal!` macros
//!   write one line. Severities other than info start the text with `warning: `, `error: `,
//!   `fatal: ` or `panic: ` (Postfix `msg_syslog.c`). `mail_fatal!` only logs: the caller
//!   decides how to stop.
//! - [`delivery`] writes the per-recipient outcome line in Postfix's `log_adhoc.c` layout,
//!   `delay=`/`delays=` formatted the way Postfix's `format_tv.c` does.
//! - [`init`] chooses where lines go (see [`LogSettings`]); it may be called again on SIGHUP.
//!   Until it is first called, lines go to stderr under the default name, so errors met while
//!   reading the configuration are still seen.
//!
//! Sinks:
//! - stderr and `maillog_file` get the whole line with a time stamp and the short host name,
//!   the layout of Postfix's postlogd (`Nov 22 04:38:26 host tidemail/smtp[77]: ...`), so
//!   pflogsumm can read either. `maillog_file` is opened `O_APPEND` and every line is one
//!   `write(2)`, so several processes can share the file without interleaving.
//!   `/dev/stdout` and `/dev/stderr` name the descriptors already open, as in Postfix.
//! - syslog: RFC 3164 datagrams to `/dev/log` with facility `mail`, read by journald or
//!   rsyslog. If `/dev/log` cannot be reached the line goes to stderr instead; that is said
//!   once per process.
//!
//! Text is sanitised like Postfix's `msg_text()`: control characters (a CR/LF smuggled in
//! through an SMTP command, an ESC sequence) become `?`, so one event is always one line.
//! The text is cut at 2000 bytes, Postfix's limit.

use std::fmt::{self, Write as _};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex, RwLock};
use std::time::Duration;

/// The program name in front of the service name when the configuration names none.
pub const DEFAULT_SYSLOG_NAME: &str = "tidemail";

/// Postfix's `MSG_LOGGER_RECLEN`/`MSG_SYSLOG_RECLEN`: longer texts are cut.
const MAX_TEXT_LEN: usize = 2000;

/// The local syslog socket (journald listens there too).
const SYSLOG_SOCKET: &str = "/dev/log";

/// Where the mail log goes. Built from the configuration (`syslog_name`, `maillog_file`)
/// and the way the program runs (a foreground daemon or a CLI command logs to stderr).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    /// Postfix's `syslog_name`: the part before the slash. `postfix` makes mailgraph work.
    pub syslog_name: String,
    /// Postfix's `maillog_file` (3.4+): append every line to this file.
    pub maillog_file: Option<PathBuf>,
    /// Write every line to stderr.
    pub stderr: bool,
    /// Send every line to the local syslog socket.
    pub syslog: bool,
}

impl Default for LogSettings {
    /// What is in effect before [`init`]: stderr only, under the default name.
    fn default() -> LogSettings {
        LogSettings { syslog_name: DEFAULT_SYSLOG_NAME.to_string(), maillog_file: None, stderr: true, syslog: false }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Info,
    Warning,
    Error,
    /// The process cannot go on (Postfix: it exits and the queue file stays for later).
    Fatal,
    /// A bug: an internal check failed.
    Panic,
}

impl Severity {
    /// What Postfix puts in front of the text.
    fn prefix(self) -> &'static str {
        match self {
            Severity::Info => "",
            Severity::Warning => "warning: ",
            Severity::Error => "error: ",
            Severity::Fatal => "fatal: ",
            Severity::Panic => "panic: ",
        }
    }
}

/// Write one line. Prefer the `mail_info!` family, which builds the `Arguments`.
pub fn log(service: &str, severity: Severity, text: fmt::Arguments<'_>) {
    current().write(service, severity, text);
}

/// `mail_info!("qmgr", "{id}: removed")`: an info line from `service`.
#[macro_export]
macro_rules! mail_info {
    ($service:expr, $($arg:tt)*) => {
        $crate::log::log($service, $crate::log::Severity::Info, format_args!($($arg)*))
    };
}

/// `mail_warning!("pickup", "...")`: a line starting `warning: `.
#[macro_export]
macro_rules! mail_warning {
    ($service:expr, $($arg:tt)*) => {
        $crate::log::log($service, $crate::log::Severity::Warning, format_args!($($arg)*))
    };
}

/// `mail_error!("cleanup", "...")`: a line starting `error: `.
#[macro_export]
macro_rules! mail_error {
    ($service:expr, $($arg:tt)*) => {
        $crate::log::log($service, $crate::log::Severity::Error, format_args!($($arg)*))
    };
}

/// `mail_fatal!("daemon", "...")`: a line starting `fatal: `. It does not exit.
#[macro_export]
macro_rules! mail_fatal {
    ($service:expr, $($arg:tt)*) => {
        $crate::log::log($service, $crate::log::Severity::Fatal, format_args!($($arg)*))
    };
}

/// Switch the log to `settings`. On error (the maillog file cannot be opened) the previous
/// sinks stay in effect, so a bad reload does not silence the log.
pub fn init(settings: LogSettings) -> io::Result<()> {
    let logger = Logger::open(&settings, Path::new(SYSLOG_SOCKET))?;
    *STATE.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(logger);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Delivery lines
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Sent,
    Deferred,
    Bounced,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Sent => "sent",
            Status::Deferred => "deferred",
            Status::Bounced => "bounced",
        }
    }
}

/// One recipient's outcome, as the `to=<...>` line reports it.
#[derive(Debug, Clone)]
pub struct Delivery<'a> {
    pub queue_id: &'a str,
    pub to: &'a str,
    /// The address before rewriting; logged only when it differs (ignoring case) from `to`.
    pub orig_to: Option<&'a str>,
    /// `host[addr]:port`, `local`, or `none` when no delivery agent was reached.
    pub relay: &'a str,
    /// From arrival to this outcome.
    pub delay: Duration,
    /// Before the queue manager / in the queue manager / connection set-up / transmission.
    pub delays: [Duration; 4],
    /// Enhanced status code, e.g. `2.0.0`, `4.3.2`.
    pub dsn: &'a str,
    pub status: Status,
    /// The explanation in parentheses: the remote reply, or why it was deferred.
    pub text: &'a str,
}

/// Log one recipient's outcome:
/// `QID: to=<r>, [orig_to=<o>, ]relay=R, delay=D, delays=a/b/c/d, dsn=X.Y.Z, status=S (text)`.
///
/// pflogsumm matches this with one regular expression: never add fields between `delays=`
/// and `dsn=` (CRATES.md §7).
pub fn delivery(service: &str, d: &Delivery<'_>) {
    log(service, Severity::Info, format_args!("{}", DeliveryText(d)));
}

struct DeliveryText<'d, 'a>(&'d Delivery<'a>);

impl fmt::Display for DeliveryText<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        write!(f, "{}: to=<{}>", d.queue_id, d.to)?;
        // Postfix (log_adhoc.c) leaves orig_to out when it says nothing new.
        if let Some(orig) = d.orig_to.filter(|o| !o.is_empty() && !same_address(o, d.to)) {
            write!(f, ", orig_to=<{orig}>")?;
        }
        let [before_qmgr, in_qmgr, conn_setup, transmission] = d.delays;
        write!(
            f,
            ", relay={}, delay={}, delays={}/{}/{}/{}, dsn={}, status={} ({})",
            d.relay,
            Delay(d.delay),
            Delay(before_qmgr),
            Delay(in_qmgr),
            Delay(conn_setup),
            Delay(transmission),
            d.dsn,
            d.status.as_str(),
            d.text
        )
    }
}

/// Case-insensitive address comparison (Postfix uses `strcasecmp_utf8`).
fn same_address(a: &str, b: &str) -> bool {
    a.chars().flat_map(char::to_lowercase).eq(b.chars().flat_map(char::to_lowercase))
}

/// A time as Postfix's `format_tv(.., sig_dig = 2, max_dig = 2)` prints it: at most two
/// significant digits below 10 s, at most two decimals, whole seconds from 10 s up, trailing
/// zeros dropped, rounded half up: `0`, `0.01`, `0.12`, `1.2`, `12`, `3600`.
/// (max_dig is Postfix's `delay_logging_resolution_limit`, default 2.)
struct Delay(Duration);

impl fmt::Display for Delay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const MILLION: u64 = 1_000_000;
        const SIG_DIGITS: u32 = 2;
        const MAX_DIGITS: u32 = 2;

        let mut sec = self.0.as_secs();
        let mut usec = u64::from(self.0.subsec_micros());
        let width = 10u64.pow(SIG_DIGITS);

        // The resolution: the smallest unit still printed. Seconds use up significant digits.
        let mut resolution = MILLION / 10u64.pow(MAX_DIGITS);
        if resolution < MILLION {
            if sec > 0 {
                let mut n = 1;
                while sec >= n && n <= width / 10 {
                    n *= 10;
                }
                resolution = (MILLION / width) * n;
            } else {
                while usec >= width * resolution {
                    resolution *= 10;
                }
            }
        }

        // Round half up at that resolution; what lies below it is not printed.
        if resolution > 1 {
            usec += resolution / 2;
            if usec >= MILLION {
                sec += 1;
                usec -= MILLION;
            }
        }

        write!(f, "{sec}")?;
        if usec >= resolution {
            f.write_char('.')?;
            let (mut rem, mut n) = (usec, MILLION / 10);
            while rem >= resolution && n > 0 {
                f.write_char(char::from(b'0' + (rem / n) as u8))?;
                rem %= n;
                n /= 10;
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// The logger
// ---------------------------------------------------------------------------------------------

/// The sinks in effect. Replaced as a whole by `init`; a line being written while that
/// happens finishes on the old sinks (it holds its own `Arc`).
static STATE: LazyLock<RwLock<Arc<Logger>>> =
    LazyLock::new(|| RwLock::new(Arc::new(Logger::stderr_only(DEFAULT_SYSLOG_NAME))));

/// "No syslog" is reported once per process, not at every reload.
static SYSLOG_MISSING_SAID: AtomicBool = AtomicBool::new(false);

fn current() -> Arc<Logger> {
    STATE.read().unwrap_or_else(|e| e.into_inner()).clone()
}

type SyslogLogger = syslog::Logger<syslog::LoggerBackend, syslog::Formatter3164>;

/// Where a maillog_file line goes.
enum FileSink {
    File(File),
    Stdout,
}

struct Logger {
    syslog_name: String,
    /// First label of the host name, as postlogd writes it.
    host: String,
    stderr: bool,
    file: Option<FileSink>,
    /// The socket path (kept to reconnect after syslogd restarts) and the connection.
    /// The formatter's `process` and `pid` are set per line, hence the lock.
    syslog: Option<(PathBuf, Mutex<SyslogLogger>)>,
}

impl Logger {
    fn stderr_only(syslog_name: &str) -> Logger {
        Logger { syslog_name: syslog_name.to_string(), host: short_hostname(), stderr: true, file: None, syslog: None }
    }

    fn open(settings: &LogSettings, syslog_socket: &Path) -> io::Result<Logger> {
        let mut logger = Logger::stderr_only(&settings.syslog_name);
        logger.stderr = settings.stderr;

        if let Some(path) = &settings.maillog_file {
            if path == Path::new("/dev/stderr") {
                logger.stderr = true;
            } else if path == Path::new("/dev/stdout") {
                logger.file = Some(FileSink::Stdout);
            } else {
                // Postfix 3.9's maillog_file_permissions default: readable by root only.
                let file = OpenOptions::new()
                    .append(true)
                    .create(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(|e| io::Error::new(e.kind(), format!("open {}: {e}", path.display())))?;
                logger.file = Some(FileSink::File(file));
            }
        }

        if settings.syslog {
            match syslog_connect(syslog_socket, &settings.syslog_name) {
                Ok(sys) => logger.syslog = Some((syslog_socket.to_path_buf(), Mutex::new(sys))),
                Err(e) => {
                    // Keep the lines: stderr instead (the journal under systemd).
                    logger.stderr = true;
                    if !SYSLOG_MISSING_SAID.swap(true, Ordering::Relaxed) {
                        logger.write(
                            "log",
                            Severity::Warning,
                            format_args!(
                                "cannot reach syslog at {}: {e}; logging to stderr only",
                                syslog_socket.display()
                            ),
                        );
                    }
                }
            }
        }
        Ok(logger)
    }

    fn write(&self, service: &str, severity: Severity, args: fmt::Arguments<'_>) {
        let text = sanitize(args);
        let pid = std::process::id();
        let mut delivered = false;

        if let Some((socket, sys)) = &self.syslog {
            let mut sys = sys.lock().unwrap_or_else(|e| e.into_inner());
            delivered = self.send_syslog(&mut sys, socket, service, pid, severity, &text);
        }

        if self.stderr || self.file.is_some() || !delivered {
            let stamp = chrono::Local::now().format("%b %d %H:%M:%S");
            let line = format!(
                "{stamp} {} {}\n",
                self.host,
                LineText { name: &self.syslog_name, service, pid, severity, text: &text }
            );
            // Nothing sensible can be done when the log itself fails; the line is dropped.
            match &self.file {
                // `&File` is a writer: appends need no lock, O_APPEND keeps them apart.
                Some(FileSink::File(file)) => {
                    let mut file: &File = file;
                    _ = file.write_all(line.as_bytes());
                }
                Some(FileSink::Stdout) => _ = io::stdout().lock().write_all(line.as_bytes()),
                None => {}
            }
            if self.stderr || (self.file.is_none() && !delivered) {
                _ = io::stderr().lock().write_all(line.as_bytes());
            }
        }
    }

    /// Send to syslog, reconnecting once if syslogd went away (restart, log rotation).
    fn send_syslog(
        &self,
        sys: &mut SyslogLogger,
        socket: &Path,
        service: &str,
        pid: u32,
        severity: Severity,
        text: &str,
    ) -> bool {
        sys.formatter.process.clear();
        _ = write!(sys.formatter.process, "{}/{service}", self.syslog_name);
        sys.formatter.pid = pid;
        let message = format!("{}{text}", severity.prefix());
        if syslog_send(sys, severity, &message) {
            return true;
        }
        match syslog_connect(socket, &sys.formatter.process) {
            Ok(mut fresh) => {
                fresh.formatter.pid = pid;
                let sent = syslog_send(&mut fresh, severity, &message);
                *sys = fresh;
                sent
            }
            Err(_) => false,
        }
    }
}

fn syslog_connect(socket: &Path, process: &str) -> Result<SyslogLogger, syslog::Error> {
    let formatter = syslog::Formatter3164 {
        facility: syslog::Facility::LOG_MAIL,
        hostname: None,
        process: process.to_string(),
        pid: std::process::id(),
    };
    syslog::unix_custom(formatter, socket)
}

/// Postfix's syslog levels: fatal and panic are both LOG_CRIT (msg_syslog.c).
fn syslog_send(sys: &mut SyslogLogger, severity: Severity, message: &str) -> bool {
    match severity {
        Severity::Info => sys.info(message),
        Severity::Warning => sys.warning(message),
        Severity::Error => sys.err(message),
        Severity::Fatal | Severity::Panic => sys.crit(message),
    }
    .is_ok()
}

/// `NAME/SERVICE[PID]: [severity: ]TEXT`, the part of a line every sink shares.
struct LineText<'a> {
    name: &'a str,
    service: &'a str,
    pid: u32,
    severity: Severity,
    text: &'a str,
}

impl fmt::Display for LineText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}[{}]: {}{}", self.name, self.service, self.pid, self.severity.prefix(), self.text)
    }
}

/// Format the text, replace control characters with `?` and cut it at `MAX_TEXT_LEN` bytes
/// (on a character boundary).
fn sanitize(args: fmt::Arguments<'_>) -> String {
    let mut text = match args.as_str() {
        Some(s) => s.to_string(),
        None => args.to_string(),
    };
    if text.len() > MAX_TEXT_LEN {
        let mut cut = MAX_TEXT_LEN;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    if text.contains(char::is_control) {
        text = text.chars().map(|c| if c.is_control() { '?' } else { c }).collect();
    }
    text
}

/// The host name up to the first dot; `localhost` if the system has none.
fn short_hostname() -> String {
    let name = nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_default();
    match name.split('.').next() {
        Some(short) if !short.is_empty() => short.to_string(),
        _ => "localhost".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn line(name: &str, service: &str, severity: Severity, text: &str) -> String {
        LineText { name, service, pid: 1234, severity, text }.to_string()
    }

    fn deferred_by_qmgr() -> Delivery<'static> {
        Delivery {
            queue_id: "4cXyZ1BcDfz2Bq",
            to: "r@x",
            orig_to: None,
            relay: "none",
            delay: ms(120),
            delays: [ms(100), ms(20), ms(0), ms(0)],
            dsn: "4.3.2",
            status: Status::Deferred,
            text: "deferred transport",
        }
    }

    #[test]
    fn postfix_example_lines_exactly() {
        for name in ["tidemail", "postfix"] {
            let id = "4cXyZ1BcDfz2Bq";
            assert_eq!(
                line(name, "pickup", Severity::Info, &format!("{id}: uid=1000 from=<a@b>")),
                format!("{name}/pickup[1234]: 4cXyZ1BcDfz2Bq: uid=1000 from=<a@b>")
            );
            assert_eq!(
                line(name, "cleanup", Severity::Info, &format!("{id}: message-id=<x@y>")),
                format!("{name}/cleanup[1234]: 4cXyZ1BcDfz2Bq: message-id=<x@y>")
            );
            assert_eq!(
                line(name, "qmgr", Severity::Info, &format!("{id}: from=<a@b>, size=512, nrcpt=2 (queue active)")),
                format!("{name}/qmgr[1234]: 4cXyZ1BcDfz2Bq: from=<a@b>, size=512, nrcpt=2 (queue active)")
            );
            assert_eq!(
                line(name, "qmgr", Severity::Info, &format!("{id}: removed")),
                format!("{name}/qmgr[1234]: 4cXyZ1BcDfz2Bq: removed")
            );
            let text = DeliveryText(&deferred_by_qmgr()).to_string();
            assert_eq!(
                line(name, "qmgr", Severity::Info, &text),
                format!(
                    "{name}/qmgr[1234]: 4cXyZ1BcDfz2Bq: to=<r@x>, relay=none, delay=0.12, \
                     delays=0.1/0.02/0/0, dsn=4.3.2, status=deferred (deferred transport)"
                )
            );
        }
    }

    #[test]
    fn severity_prefixes() {
        let cases = [
            (Severity::Info, "tidemail/smtpd[1234]: t"),
            (Severity::Warning, "tidemail/smtpd[1234]: warning: t"),
            (Severity::Error, "tidemail/smtpd[1234]: error: t"),
            (Severity::Fatal, "tidemail/smtpd[1234]: fatal: t"),
            (Severity::Panic, "tidemail/smtpd[1234]: panic: t"),
        ];
        for (severity, want) in cases {
            assert_eq!(line("tidemail", "smtpd", severity, "t"), want);
        }
    }

    #[test]
    fn delivery_line_with_orig_to_and_relay() {
        let d = Delivery {
            queue_id: "4cXyZ1BcDfz2Bq",
            to: "tom@office.example",
            orig_to: Some("root@office.example"),
            relay: "smtp.example.net[192.0.2.25]:587",
            delay: Duration::from_millis(1234),
            delays: [ms(10), ms(0), ms(30), ms(51)],
            dsn: "2.0.0",
            status: Status::Sent,
            text: "250 2.0.0 Ok: queued as 3F2A1",
        };
        assert_eq!(
            DeliveryText(&d).to_string(),
            "4cXyZ1BcDfz2Bq: to=<tom@office.example>, orig_to=<root@office.example>, \
             relay=smtp.example.net[192.0.2.25]:587, delay=1.2, delays=0.01/0/0.03/0.05, \
             dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as 3F2A1)"
        );
        // An orig_to equal to to (ignoring case), or empty, is left out, as in Postfix.
        for orig in [Some("TOM@Office.Example"), Some(""), None] {
            let d = Delivery { orig_to: orig, ..d.clone() };
            assert!(!DeliveryText(&d).to_string().contains("orig_to"), "{orig:?}");
        }
    }

    #[test]
    fn delay_formatting_follows_format_tv() {
        let cases = [
            (0, "0"),
            (1, "0"),        // 1 us: below the resolution
            (4_999, "0"),    // rounds down
            (5_000, "0.01"), // rounds half up
            (10_000, "0.01"),
            (30_000, "0.03"),
            (100_000, "0.1"), // trailing zero dropped
            (120_000, "0.12"),
            (123_456, "0.12"),
            (994_999, "0.99"),
            (995_000, "1"), // carries into the seconds
            (1_000_000, "1"),
            (1_230_000, "1.2"),
            (1_250_000, "1.3"),
            (1_960_000, "2"),
            (9_940_000, "9.9"),
            (9_950_000, "10"),
            (12_400_000, "12"),
            (12_500_000, "13"),
            (99_600_000, "100"),
            (3_600_000_000, "3600"),
        ];
        for (us, want) in cases {
            assert_eq!(Delay(Duration::from_micros(us)).to_string(), want, "{us} us");
        }
    }

    #[test]
    fn text_is_sanitised_and_capped() {
        assert_eq!(sanitize(format_args!("a\r\nb\x1b[0m\tc")), "a??b?[0m?c");
        let long = "é".repeat(1500); // 3000 bytes
        let cut = sanitize(format_args!("{long}"));
        assert_eq!(cut.len(), MAX_TEXT_LEN);
        assert!(cut.chars().all(|c| c == 'é'));
        assert_eq!(sanitize(format_args!("plain {}", 42)), "plain 42");
    }

    /// The regular expressions of pflogsumm 1.1.5 and mailgraph 1.14, as quoted in
    /// CRATES.md §7, applied to whole lines as the maillog file holds them.
    #[test]
    fn pflogsumm_and_mailgraph_parse_our_lines() {
        use regex::Regex;

        let stamp = Regex::new(r"^(...) {1,2}(\d{1,2}) (\d{2}):(\d{2}):(\d{2}) \S+ (.+)$").unwrap();
        let size = Regex::new(r"from=<([^>]*)>, size=(\d+)").unwrap();
        let pickup = Regex::new(r": (sender|uid)=").unwrap();
        let deliv = Regex::new(
            r"to=<([^>]*)>, (?:orig_to=<[^>]*>, )?relay=([^,]+), (?:conn_use=[^,]+, )?delay=([^,]+), (?:delays=[^,]+, )?(?:dsn=[^,]+, )?status=(\S+)(.*)$",
        )
        .unwrap();
        // Parse::Syslog's split into program, pid and text, then mailgraph's program test.
        let syslog = Regex::new(r"^(\S+?)(?:\[(\d+)\])?:\s+(.*)$").unwrap();
        let mailgraph_prog = Regex::new(r"^postfix/(.*)").unwrap();
        let mailgraph_sent = Regex::new(r"\bstatus=sent\b").unwrap();

        let sent = Delivery {
            relay: "smtp.example.net[192.0.2.25]:587",
            orig_to: Some("alias@x"),
            dsn: "2.0.0",
            status: Status::Sent,
            text: "250 2.0.0 Ok",
            ..deferred_by_qmgr()
        };
        for name in ["tidemail", "postfix"] {
            let program =
                Regex::new(&format!(r"^(?:postfix-?\w*|{name})(?:/(?:smtps|submission))?/([^\[:]*).*?: ([^:\s]+)"))
                    .unwrap();
            let full = |service: &str, text: &str| {
                format!("Nov  2 04:38:26 laptop {}", line(name, service, Severity::Info, text))
            };

            let pickup_line = full("pickup", "4cXyZ1BcDfz2Bq: uid=1000 from=<a@b>");
            let qmgr_line = full("qmgr", "4cXyZ1BcDfz2Bq: from=<a@b>, size=512, nrcpt=1 (queue active)");
            let smtp_line = full("smtp", &DeliveryText(&sent).to_string());
            let deferred_line = full("qmgr", &DeliveryText(&deferred_by_qmgr()).to_string());

            for l in [&pickup_line, &qmgr_line, &smtp_line, &deferred_line] {
                let rest = stamp.captures(l).expect(l).get(6).unwrap().as_str();
                let p = program.captures(rest).expect(rest);
                assert_eq!(&p[2], "4cXyZ1BcDfz2Bq", "{l}");
            }
            assert!(pickup.is_match(&pickup_line));
            let s = size.captures(&qmgr_line).unwrap();
            assert_eq!((&s[1], &s[2]), ("a@b", "512"));

            let c = deliv.captures(&smtp_line).unwrap();
            assert_eq!((&c[1], &c[2], &c[3], &c[4]), ("r@x", "smtp.example.net[192.0.2.25]:587", "0.12", "sent"));
            let c = deliv.captures(&deferred_line).unwrap();
            assert_eq!((&c[2], &c[4], &c[5]), ("none", "deferred", " (deferred transport)"));

            // mailgraph: only "postfix/..." programs count, whatever the options.
            let rest = stamp.captures(&smtp_line).unwrap().get(6).unwrap().as_str();
            let sys = syslog.captures(rest).unwrap();
            let counted =
                mailgraph_prog.captures(&sys[1]).is_some_and(|p| &p[1] == "smtp" && mailgraph_sent.is_match(&sys[3]));
            assert_eq!(counted, name == "postfix", "{smtp_line}");
        }
    }

    fn read_lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path).unwrap().lines().map(str::to_string).collect()
    }

    #[test]
    fn maillog_file_lines_stay_whole_across_threads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("maillog");
        let settings = LogSettings {
            syslog_name: "postfix".into(),
            maillog_file: Some(path.clone()),
            stderr: false,
            syslog: false,
        };
        // Two loggers on the same file stand for two processes appending to it.
        let a = Arc::new(Logger::open(&settings, Path::new("/nonexistent")).unwrap());
        let b = Arc::new(Logger::open(&settings, Path::new("/nonexistent")).unwrap());
        let filler = "x".repeat(1500);
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let logger = if t % 2 == 0 { a.clone() } else { b.clone() };
                let filler = filler.clone();
                std::thread::spawn(move || {
                    for i in 0..200 {
                        logger.write("smtp", Severity::Info, format_args!("T{t} L{i} {filler} end"));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }

        let lines = read_lines(&path);
        assert_eq!(lines.len(), 8 * 200);
        let shape =
            regex::Regex::new(r"^[A-Z][a-z]{2} \d{2} \d{2}:\d{2}:\d{2} \S+ postfix/smtp\[\d+\]: T\d L\d+ x{1500} end$")
                .unwrap();
        for l in &lines {
            assert!(shape.is_match(l), "torn or malformed line: {l:.80}");
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn syslog_datagrams_carry_name_service_and_facility() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("log");
        let server = std::os::unix::net::UnixDatagram::bind(&socket).unwrap();
        server.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let settings = LogSettings { syslog_name: "postfix".into(), maillog_file: None, stderr: false, syslog: true };
        let logger = Logger::open(&settings, &socket).unwrap();
        assert!(logger.syslog.is_some());
        logger.write("qmgr", Severity::Info, format_args!("4cXyZ1BcDfz2Bq: removed"));
        logger.write("smtpd", Severity::Warning, format_args!("hostname x does not resolve"));

        let mut buf = [0u8; 4096];
        let n = server.recv(&mut buf).unwrap();
        let got = std::str::from_utf8(&buf[..n]).unwrap();
        let pid = std::process::id();
        // <22> = facility mail (2) * 8 + info (6).
        assert!(got.starts_with("<22>"), "{got}");
        assert!(got.ends_with(&format!(" postfix/qmgr[{pid}]: 4cXyZ1BcDfz2Bq: removed")), "{got}");
        let n = server.recv(&mut buf).unwrap();
        let got = std::str::from_utf8(&buf[..n]).unwrap();
        // <20> = mail + warning (4).
        assert!(got.starts_with("<20>"), "{got}");
        assert!(got.ends_with(&format!(" postfix/smtpd[{pid}]: warning: hostname x does not resolve")), "{got}");
    }

    #[test]
    fn missing_syslog_falls_back_to_stderr() {
        let dir = tempfile::tempdir().unwrap();
        let settings = LogSettings { syslog_name: "tidemail".into(), maillog_file: None, stderr: false, syslog: true };
        let logger = Logger::open(&settings, &dir.path().join("no-such-socket")).unwrap();
        assert!(logger.syslog.is_none());
        assert!(logger.stderr);
    }

    #[test]
    fn init_switches_sinks_and_keeps_them_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let first = dir.path().join("first");
        let second = dir.path().join("second");
        let to_file = |path: &Path| LogSettings {
            syslog_name: "tidemail".into(),
            maillog_file: Some(path.to_path_buf()),
            stderr: false,
            syslog: false,
        };

        init(to_file(&first)).unwrap();
        crate::mail_info!("pickup", "init test {}: one", "4cXyZ1BcDfz2Bq");
        // A file that cannot be opened: an error, and the first file stays in use.
        assert!(init(to_file(&dir.path().join("missing-dir/log"))).is_err());
        crate::mail_warning!("pickup", "init test {}: two", "4cXyZ1BcDfz2Bq");
        init(to_file(&second)).unwrap();
        delivery("local", &Delivery { queue_id: "4cXyZ1BcDfz2Bq", ..deferred_by_qmgr() });
        // Back to the built-in default for whatever runs next in this process.
        init(LogSettings::default()).unwrap();

        // Other tests may log through the global logger meanwhile: look for ours only.
        let first = read_lines(&first);
        let pid = std::process::id();
        assert!(first.iter().any(|l| l.ends_with(&format!(" tidemail/pickup[{pid}]: init test 4cXyZ1BcDfz2Bq: one"))));
        assert!(
            first
                .iter()
                .any(|l| l.ends_with(&format!(" tidemail/pickup[{pid}]: warning: init test 4cXyZ1BcDfz2Bq: two")))
        );
        assert!(read_lines(&second).iter().any(|l| l.ends_with(&format!(
            " tidemail/local[{pid}]: 4cXyZ1BcDfz2Bq: to=<r@x>, relay=none, delay=0.12, \
             delays=0.1/0.02/0/0, dsn=4.3.2, status=deferred (deferred transport)"
        ))));
    }
}
