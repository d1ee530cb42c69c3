//! `sendmail -bs`: an SMTP dialogue on standard input and output, the client being the local
//! user who runs it. Messages go into maildrop exactly as the plain sendmail command puts them
//! there, so pickup records the same submitting uid. (The network SMTP server is separate.)

use std::io::{self, BufRead, BufReader, Read, Write};

use crate::address;
use crate::config::Config;
use crate::queue::{Envelope, Origin, QueueError, Recipient, Ret, Submission};
use crate::smtpd::session::{parse_rcpt, split_path};
use crate::submit::maildrop;
use crate::sysexits::EX_OK;

/// Longest command line accepted (RFC 5321 says 512; Postfix allows more).
const MAX_COMMAND: u64 = 2048;

struct Transaction {
    sender: String,
    ret: Option<Ret>,
    envid: Option<String>,
    recipients: Vec<Recipient>,
}

pub fn run(cfg: &Config) -> i32 {
    let stdin = io::stdin();
    let stdout = io::stdout();
    let mut session = Session { cfg, input: BufReader::new(stdin.lock()), out: stdout.lock() };
    let _ = session.serve();
    EX_OK
}

struct Session<'a, R, W> {
    cfg: &'a Config,
    input: R,
    out: W,
}

impl<R: BufRead, W: Write> Session<'_, R, W> {
    fn reply(&mut self, text: &str) -> io::Result<()> {
        let mut lines = text.lines().peekable();
        while let Some(line) = lines.next() {
            // Each line is "CODE text"; continuation lines get "CODE-text".
            let (code, text) = line.split_once(' ').unwrap_or((line, ""));
            let sep = if lines.peek().is_some() { "-" } else { " " };
            write!(self.out, "{code}{sep}{text}\r\n")?;
        }
        self.out.flush()
    }

    /// One line without its CRLF/LF; `None` at end of input. Over-long lines are read to their
    /// end and reported as such.
    fn read_line(&mut self, limit: u64) -> io::Result<Option<Result<Vec<u8>, ()>>> {
        let mut line = Vec::new();
        let n = Read::by_ref(&mut self.input).take(limit).read_until(b'\n', &mut line)?;
        if n == 0 {
            return Ok(None);
        }
        if !line.ends_with(b"\n") && n as u64 == limit {
            let mut rest = Vec::new();
            self.input.read_until(b'\n', &mut rest)?;
            return Ok(Some(Err(())));
        }
        while line.last().is_some_and(|&b| b == b'\n' || b == b'\r') {
            line.pop();
        }
        Ok(Some(Ok(line)))
    }

    fn serve(&mut self) -> io::Result<()> {
        let banner = format!("220 {}", self.cfg.smtpd_banner());
        self.reply(&banner)?;
        let mut tx: Option<Transaction> = None;
        while let Some(line) = self.read_line(MAX_COMMAND)? {
            let Ok(line) = line else {
                self.reply("500 5.5.2 Error: line too long")?;
                continue;
            };
            let line = String::from_utf8_lossy(&line).into_owned();
            let (verb, arg) = line.split_once(' ').unwrap_or((&line, ""));
            let arg = arg.trim();
            match verb.to_ascii_uppercase().as_str() {
                "HELO" | "EHLO" if arg.is_empty() => {
                    self.reply(&format!("501 5.5.4 Syntax: {} hostname", verb.to_ascii_uppercase()))?
                }
                "HELO" => {
                    tx = None;
                    self.reply(&format!("250 {}", self.cfg.myhostname()))?
                }
                "EHLO" => {
                    tx = None;
                    let text = format!(
                        "250 {}\n250 PIPELINING\n250 SIZE {}\n250 ENHANCEDSTATUSCODES\n250 8BITMIME\n250 DSN",
                        self.cfg.myhostname(),
                        self.cfg.message_size_limit()
                    );
                    self.reply(&text)?
                }
                "MAIL" if tx.is_some() => self.reply("503 5.5.1 Error: nested MAIL command")?,
                "MAIL" => match self.parse_mail(arg) {
                    Ok(t) => {
                        tx = Some(t);
                        self.reply("250 2.1.0 Ok")?
                    }
                    Err(reply) => self.reply(&reply)?,
                },
                "RCPT" => match tx.as_mut() {
                    None => self.reply("503 5.5.1 Error: need MAIL command")?,
                    Some(t) => match parse_rcpt(arg).map_err(str::to_string) {
                        Ok(r) => {
                            t.recipients.push(r);
                            self.reply("250 2.1.5 Ok")?
                        }
                        Err(reply) => self.reply(&reply)?,
                    },
                },
                "DATA" if !arg.is_empty() => self.reply("501 5.5.4 Syntax: DATA")?,
                "DATA" => match tx.take() {
                    None => self.reply("503 5.5.1 Error: need RCPT command")?,
                    Some(t) if t.recipients.is_empty() => {
                        tx = Some(t);
                        self.reply("503 5.5.1 Error: need RCPT command")?
                    }
                    Some(t) => {
                        let reply = self.data(t)?;
                        self.reply(&reply)?
                    }
                },
                "RSET" => {
                    tx = None;
                    self.reply("250 2.0.0 Ok")?
                }
                "NOOP" => self.reply("250 2.0.0 Ok")?,
                "VRFY" => self.reply("502 5.5.1 VRFY command is disabled")?,
                "QUIT" => return self.reply("221 2.0.0 Bye"),
                _ => self.reply("502 5.5.2 Error: command not recognized")?,
            }
        }
        Ok(())
    }

    fn parse_mail(&self, arg: &str) -> Result<Transaction, String> {
        let (path, params) = split_path(arg, "FROM:").ok_or("501 5.5.4 Syntax: MAIL FROM:<address>")?;
        let sender = address::parse_path(path).map_err(|e| format!("501 5.1.7 Bad sender address syntax: {e}"))?;
        let mut t = Transaction { sender, ret: None, envid: None, recipients: Vec::new() };
        for (key, value) in params {
            match key.as_str() {
                "SIZE" => {
                    let size: u64 = value.parse().map_err(|_| "501 5.5.4 Bad message size syntax".to_string())?;
                    let limit = self.cfg.message_size_limit();
                    if limit > 0 && size > limit {
                        return Err("552 5.3.4 Message size exceeds fixed limit".into());
                    }
                }
                "BODY" if value.eq_ignore_ascii_case("7BIT") || value.eq_ignore_ascii_case("8BITMIME") => {}
                "RET" if value.eq_ignore_ascii_case("FULL") => t.ret = Some(Ret::Full),
                "RET" if value.eq_ignore_ascii_case("HDRS") => t.ret = Some(Ret::Hdrs),
                "ENVID" if !value.is_empty() => t.envid = Some(value),
                _ => return Err(format!("555 5.5.4 Unsupported option: {key}")),
            }
        }
        Ok(t)
    }

    /// Receive the message text after DATA and queue it; returns the final reply.
    fn data(&mut self, t: Transaction) -> io::Result<String> {
        let opened = maildrop::open(self.cfg);
        self.reply(match &opened {
            Ok(_) => "354 End data with <CR><LF>.<CR><LF>",
            Err(_) => "451 4.3.0 Error: queue file write error",
        })?;
        let (store, mut writer) = match opened {
            Ok(o) => o,
            Err(_) => return Ok(String::new()), // already answered instead of 354
        };
        let mut failure: Option<QueueError> = None;
        loop {
            let Some(line) = self.read_line(1 << 20)? else {
                return Ok("451 4.3.0 Error: unexpected end of input".into());
            };
            let mut line = line.unwrap_or_default();
            if line == b"." {
                break;
            }
            if line.first() == Some(&b'.') {
                line.remove(0); // dot-stuffing (RFC 5321 4.5.2)
            }
            line.push(b'\n');
            if failure.is_none()
                && let Err(e) = writer.write_content(&line)
            {
                failure = Some(e);
            }
        }
        match failure {
            Some(QueueError::TooBig { .. }) => return Ok("552 5.3.4 Message size exceeds fixed limit".into()),
            Some(_) => return Ok("451 4.3.0 Error: queue file write error".into()),
            None => {}
        }
        let origin = Origin::Local { uid: nix::unistd::getuid().as_raw() };
        let envelope = Envelope {
            envid: t.envid,
            ret: t.ret,
            submission: Some(Submission::default()),
            ..Envelope::new(t.sender, t.recipients, origin, writer.arrival_us())
        };
        Ok(match store.commit(writer, &envelope) {
            Ok(id) => {
                crate::control::wake_daemon(store.root());
                format!("250 2.0.0 Ok: queued as {id}")
            }
            Err(_) => "451 4.3.0 Error: queue file write error".into(),
        })
    }
}
