//! The SMTP server through the real daemon on 127.0.0.1 and a free port, with real clients:
//! Python's smtplib, swaks, and raw sockets for what a polite client never sends (smuggling,
//! STARTTLS injection, junk). Every wait is bounded.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::sink::{Sink, free_port};
use common::{Daemon, Env};

/// A scratch installation whose SMTP service listens on 127.0.0.1:`port`. `top` goes before
/// the service table (top-level parameters), `service` into it (overrides).
fn smtpd_env(port: u16, top: &str, service: &str) -> Env {
    Env::with_config(&format!("{top}\n[service.smtp]\naddress = \"127.0.0.1\"\nport = {port}\n{service}\n"))
}

fn start(env: &Env, port: u16) -> Daemon {
    let daemon = env.start_daemon();
    daemon.wait_log(&format!("listening on 127.0.0.1:{port}"));
    daemon
}

/// A line-oriented raw client.
struct Raw {
    reader: BufReader<TcpStream>,
}

impl Raw {
    fn connect(port: u16) -> Raw {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Raw { reader: BufReader::new(stream) }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.reader.get_mut().write_all(bytes).unwrap();
    }

    /// One whole reply (continuation lines included), CRLFs kept out.
    fn reply(&mut self) -> String {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            let n = self.reader.read_line(&mut line).unwrap();
            assert!(n > 0, "connection closed; reply so far: {lines:?}");
            let line = line.trim_end().to_string();
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line);
            if last {
                return lines.join("\n");
            }
        }
    }

    /// Sends a command, returns the reply.
    fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        self.reply()
    }

    /// True when the server closed the connection (within the read time-out).
    fn closed(&mut self) -> bool {
        let mut rest = Vec::new();
        self.reader.read_to_end(&mut rest).is_ok() && rest.is_empty()
    }
}

/// Queue files in incoming, active and deferred (the queue manager may move a file while
/// we look; a held remote message ends in deferred).
fn queued(env: &Env) -> Vec<Vec<u8>> {
    let mut found = Vec::new();
    for queue in ["incoming", "active", "deferred"] {
        for name in env.files(queue) {
            if let Ok(bytes) = std::fs::read(env.queue.join(queue).join(&name)) {
                found.push(bytes);
            }
        }
    }
    found
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

fn python_ok() -> bool {
    Command::new("/usr/bin/python3").arg("-c").arg("import smtplib, ssl").status().is_ok_and(|s| s.success())
}

fn run_python(script: &str, args: &[&str]) -> String {
    let out = Command::new("/usr/bin/python3").arg("-c").arg(script).args(args).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "python failed:\n{text}");
    text
}

#[test]
fn telnet_dialogue_codes() {
    let port = free_port();
    let env = smtpd_env(port, "", "");
    let daemon = start(&env, port);
    let mut c = Raw::connect(port);
    assert_eq!(c.reply(), "220 mail.test.example ESMTP tidemail");
    assert_eq!(c.cmd("HELO"), "501 5.5.4 Syntax: HELO hostname");
    let ehlo = c.cmd("EHLO client.test");
    assert!(ehlo.starts_with("250-mail.test.example\n"), "{ehlo}");
    for keyword in ["PIPELINING", "SIZE 10240000", "ETRN", "ENHANCEDSTATUSCODES", "8BITMIME", "DSN"] {
        assert!(ehlo.contains(&format!("250-{keyword}")) || ehlo.ends_with(&format!("250 {keyword}")), "{ehlo}");
    }
    assert!(!ehlo.contains("STARTTLS") && !ehlo.contains("AUTH"), "{ehlo}");
    assert_eq!(c.cmd("RCPT TO:<a@b.test>"), "503 5.5.1 Error: need MAIL command");
    assert_eq!(c.cmd("DATA"), "503 5.5.1 Error: need RCPT command");
    assert_eq!(c.cmd("MAIL FROM:<bad address@x>"), "501 5.1.7 Bad sender address syntax");
    assert_eq!(c.cmd("MAIL FROM:<a@b.test> SIZE=99999999999"), "552 5.3.4 Message size exceeds fixed limit");
    assert_eq!(c.cmd("MAIL FROM:<a@b.test> SIZE=100 BODY=8BITMIME RET=HDRS ENVID=x1"), "250 2.1.0 Ok");
    assert_eq!(c.cmd("MAIL FROM:<a@b.test>"), "503 5.5.1 Error: nested MAIL command");
    assert_eq!(c.cmd("DATA"), "503 5.5.1 Error: need RCPT command");
    assert_eq!(c.cmd("RCPT TO:<x@y.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;x@y.test"), "250 2.1.5 Ok");
    assert_eq!(c.cmd("VRFY x@y.test"), "502 5.5.1 VRFY command is disabled");
    assert_eq!(c.cmd("XYZZY"), "502 5.5.2 Error: command not recognized");
    assert_eq!(c.cmd("STARTTLS"), "502 5.5.1 Error: command not implemented");
    assert_eq!(c.cmd("NOOP"), "250 2.0.0 Ok");
    assert_eq!(c.cmd("RSET"), "250 2.0.0 Ok");
    assert_eq!(c.cmd("RCPT TO:<x@y.test>"), "503 5.5.1 Error: need MAIL command");
    assert_eq!(c.cmd("QUIT"), "221 2.0.0 Bye");
    assert!(c.closed());
    daemon.wait_log(
        "disconnect from unknown[127.0.0.1] helo=0/1 ehlo=1 starttls=0/1 mail=1/4 rcpt=1/3 data=0/2 rset=1 \
         noop=1 vrfy=0/1 quit=1 unknown=0/1 commands=6/17",
    );
    let log = daemon.log();
    assert!(log.contains("tidemail/smtpd["), "{log}");
    assert!(log.contains("smtpd[") && log.contains("]: connect from unknown[127.0.0.1]"), "{log}");
}

#[test]
fn smtplib_message_is_queued_and_arrives_byte_exact() {
    if !python_ok() {
        return;
    }
    let Some(sink) = Sink::start(&[]) else { return };
    let port = free_port();
    let env = smtpd_env(port, &sink.relayhost(), "");
    let daemon = start(&env, port);
    // Complete headers: cleanup adds a missing Date: for clients on this machine (Postfix's
    // local_header_rewrite_clients), which would spoil the comparison.
    let body = "Subject: over smtp\r\nMessage-ID: <smtpd-1@client.test>\r\nFrom: a@client.test\r\n\
                Date: Mon, 2 Nov 2026 10:00:00 +0000\r\n\r\n\
                first line\r\n.leading dot\r\nlast line\r\n";
    let script = r#"
import smtplib, sys
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=10)
s.ehlo("client.test")
refused = s.sendmail("a@client.test", ["x@remote.test"], sys.argv[2].encode())
print("refused", refused)
s.quit()
"#;
    let out = run_python(script, &[&port.to_string(), body]);
    assert!(out.contains("refused {}"), "{out}");
    let id = daemon.queue_id_of("<smtpd-1@client.test>");
    daemon.wait_log(&format!("{id}: client=unknown[127.0.0.1]"));
    // Held (defer_transports = smtp) until a flush; then it reaches the smarthost.
    let flushed = env.tidemail(&["flush", "--wait", "--timeout", "60"]).output().unwrap();
    assert!(flushed.status.success(), "{}", String::from_utf8_lossy(&flushed.stderr));
    let messages = sink.messages();
    assert_eq!(messages.len(), 1);
    let (record, content) = &messages[0];
    assert_eq!(record["mail_from"], "a@client.test");
    let content = String::from_utf8_lossy(content).replace("\r\n", "\n");
    // Our Received: on top, then the client's bytes exactly (dot-unstuffed).
    assert!(content.starts_with("Received: from client.test (unknown [127.0.0.1])\n"), "{content}");
    assert!(content.contains("\tby mail.test.example (tidemail) with ESMTP\n\tfor <x@remote.test>; "), "{content}");
    let sent = body.replace("\r\n", "\n");
    assert!(content.ends_with(&sent), "{content}");
}

#[test]
fn swaks_message_is_queued() {
    if Command::new("swaks").arg("--version").output().is_err() {
        assert!(!common::is_root(), "swaks is missing (.ci/test installs it)");
        eprintln!("skipped: swaks is not installed");
        return;
    }
    let port = free_port();
    let env = smtpd_env(port, "", "");
    let daemon = start(&env, port);
    let out = Command::new("swaks")
        .args(["--server", &format!("127.0.0.1:{port}"), "--helo", "swaks.test", "--from", "s@client.test"])
        .args(["--to", "x@remote.test", "--timeout", "10"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let marker = "<-  250 2.0.0 Ok: queued as ";
    let at = text.find(marker).unwrap_or_else(|| panic!("{text}")) + marker.len();
    let id = text[at..].split_whitespace().next().unwrap();
    daemon.wait_log(&format!("{id}: client=unknown[127.0.0.1]"));
    daemon.wait_log("disconnect from unknown[127.0.0.1] ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5");
}

/// Each smuggling variant: the bytes after the bare-newline dot stay in the one message, and
/// the "second message" is never answered nor queued.
#[test]
fn smtp_smuggling_variants_cannot_inject_a_second_message() {
    let port = free_port();
    let env = smtpd_env(port, "", "");
    let daemon = start(&env, port);
    let variants: [(&str, &[u8]); 5] = [
        ("lf-dot-lf", b"\n.\n"),
        ("cr-dot-cr", b"\r.\r"),
        ("lf-dot-crlf", b"\n.\r\n"),
        ("crlf-dot-lf", b"\r\n.\n"),
        ("crlf-dot-cr", b"\r\n.\r"),
    ];
    for (n, (name, separator)) in variants.iter().enumerate() {
        let mut c = Raw::connect(port);
        c.reply();
        c.cmd("EHLO client.test");
        assert_eq!(c.cmd("MAIL FROM:<a@client.test>"), "250 2.1.0 Ok");
        assert_eq!(c.cmd("RCPT TO:<x@remote.test>"), "250 2.1.5 Ok");
        assert_eq!(c.cmd("DATA"), "354 End data with <CR><LF>.<CR><LF>");
        let mut data = format!("Subject: {name}\r\nMessage-ID: <smuggle-{n}@client.test>\r\n\r\nbody").into_bytes();
        data.extend_from_slice(separator);
        data.extend_from_slice(
            format!(
                "MAIL FROM:<evil@forged.test>\r\nRCPT TO:<victim-{n}@remote.test>\r\nDATA\r\n\
                 Subject: forged\r\n\r\nsmuggled-{n}\r\n.\r\n"
            )
            .as_bytes(),
        );
        c.send(&data);
        // The one end of data above ends the one message.
        let reply = c.reply();
        assert!(reply.starts_with("250 2.0.0 Ok: queued as "), "{name}: {reply}");
        assert_eq!(c.cmd("QUIT"), "221 2.0.0 Bye", "{name}: a smuggled command was answered");
        daemon.queue_id_of(&format!("<smuggle-{n}@client.test>"));
    }
    let files = queued(&env);
    assert_eq!(files.len(), variants.len(), "one queue file per session");
    for n in 0..variants.len() {
        let with = files.iter().filter(|f| contains(f, &format!("smuggled-{n}"))).count();
        assert_eq!(with, 1, "variant {n}: the smuggled bytes are in exactly one message");
        assert!(!files.iter().any(|f| contains(f, &format!("\"victim-{n}@remote.test\""))), "forged recipient");
    }
}

#[test]
fn size_limit_mid_stream_queues_nothing() {
    let port = free_port();
    let env = smtpd_env(port, "message_size_limit = 4000", "");
    let daemon = start(&env, port);
    let mut c = Raw::connect(port);
    c.reply();
    c.cmd("EHLO client.test");
    c.cmd("MAIL FROM:<a@client.test>");
    c.cmd("RCPT TO:<x@remote.test>");
    assert_eq!(c.cmd("DATA"), "354 End data with <CR><LF>.<CR><LF>");
    c.send(b"Subject: big\r\n\r\n");
    for _ in 0..200 {
        c.send(&[b'x'; 100]);
        c.send(b"\r\n");
    }
    c.send(b".\r\n");
    assert_eq!(c.reply(), "552 5.3.4 Message size exceeds fixed limit");
    // The session goes on, and nothing was queued.
    assert_eq!(c.cmd("NOOP"), "250 2.0.0 Ok");
    assert_eq!(c.cmd("QUIT"), "221 2.0.0 Bye");
    daemon.wait_log("disconnect from unknown[127.0.0.1]");
    assert!(queued(&env).is_empty());
    assert!(env.files("incoming").is_empty() && env.files("hold").is_empty());
}

#[test]
fn too_many_errors_then_421_and_disconnect() {
    let port = free_port();
    let env = smtpd_env(port, "smtpd_hard_error_limit = 3\nsmtpd_soft_error_limit = 100", "");
    let daemon = start(&env, port);
    let mut c = Raw::connect(port);
    c.reply();
    for _ in 0..3 {
        assert_eq!(c.cmd("BOGUS"), "502 5.5.2 Error: command not recognized");
    }
    assert_eq!(c.cmd("NOOP"), "421 4.7.0 mail.test.example Error: too many errors");
    assert!(c.closed());
    daemon.wait_log("too many errors after UNKNOWN from unknown[127.0.0.1]");
}

#[test]
fn idle_timeout_gives_421() {
    let port = free_port();
    let env = smtpd_env(port, "smtpd_timeout = 1", "");
    let _daemon = start(&env, port);
    let mut c = Raw::connect(port);
    c.reply();
    let started = Instant::now();
    assert_eq!(c.reply(), "421 4.4.2 mail.test.example Error: timeout exceeded");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(c.closed());
}

#[test]
fn idle_connections_do_not_block_a_new_client() {
    let port = free_port();
    let env = smtpd_env(port, "smtpd_process_limit = 300", "");
    let _daemon = start(&env, port);
    let idle: Vec<TcpStream> = (0..200).map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap()).collect();
    // Give the server every one of them before the newcomer arrives.
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let mut c = Raw::connect(port);
    let greeting = c.reply();
    assert!(started.elapsed() < Duration::from_secs(1), "greeting took {:?}", started.elapsed());
    assert!(greeting.starts_with("220 "), "{greeting}");
    drop(idle);
}

#[test]
fn connection_caps_answer_421() {
    let port = free_port();
    let env = smtpd_env(port, "smtpd_process_limit = 2", "");
    let daemon = start(&env, port);
    let mut first = Raw::connect(port);
    let mut second = Raw::connect(port);
    assert!(first.reply().starts_with("220 "));
    assert!(second.reply().starts_with("220 "));
    let mut third = Raw::connect(port);
    assert_eq!(third.reply(), "421 4.7.0 mail.test.example Error: too many connections");
    assert!(third.closed());
    daemon.wait_log("smtpd_process_limit 2 reached");
    first.cmd("QUIT");
    daemon.wait_log("disconnect from");
    let mut fourth = Raw::connect(port);
    assert!(fourth.reply().starts_with("220 "));
}

#[test]
fn etrn_starts_a_flush() {
    let port = free_port();
    let env = smtpd_env(port, "", "");
    let daemon = start(&env, port);
    let mut c = Raw::connect(port);
    c.reply();
    c.cmd("EHLO client.test");
    assert_eq!(c.cmd("ETRN"), "500 5.5.4 Syntax: ETRN domain");
    assert_eq!(c.cmd("ETRN client.test"), "250 Queuing started");
    daemon.wait_log("ETRN client.test from unknown[127.0.0.1]");
    daemon.wait_log("flush: ");
    c.cmd("QUIT");
}

/// The server's certificate and the CA that signed it, copied where mail_owner can read
/// them (the pki directory is private).
fn tls_files(env: &Env) -> Option<(std::path::PathBuf, std::path::PathBuf, std::path::PathBuf)> {
    let pki = common::pki::pki()?;
    let copy = |from: &Path, name: &str| env.write_file(name, &std::fs::read_to_string(from).unwrap());
    Some((copy(&pki.cert, "tls/cert.pem"), copy(&pki.key, "tls/key.pem"), copy(&pki.ca, "tls/ca.pem")))
}

#[test]
fn starttls_with_the_test_ca() {
    if !python_ok() {
        return;
    }
    let port = free_port();
    let probe = Env::new();
    let Some((cert, key, ca)) = tls_files(&probe) else { return };
    let service = format!(
        "smtpd_tls_security_level = \"encrypt\"\nsmtpd_tls_cert_file = \"{}\"\nsmtpd_tls_key_file = \"{}\"\n",
        cert.display(),
        key.display()
    );
    let env = smtpd_env(port, "", &service);
    let daemon = start(&env, port);

    // Before TLS, mail is refused at level encrypt.
    let mut c = Raw::connect(port);
    c.reply();
    assert!(c.cmd("EHLO client.test").contains("250-STARTTLS"));
    assert_eq!(c.cmd("MAIL FROM:<a@client.test>"), "530 5.7.0 Must issue a STARTTLS command first");
    c.cmd("QUIT");

    let script = r#"
import smtplib, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[2])
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=10)
s.ehlo("client.test")
s.starttls(context=ctx)
code, text = s.ehlo("client.test")
print("ehlo after tls", code, "STARTTLS" in text.decode())
s.sendmail("a@client.test", ["x@remote.test"], b"Subject: tls\r\nMessage-ID: <tls-1@client.test>\r\n\r\nsecret\r\n")
s.quit()
"#;
    let out = run_python(script, &[&port.to_string(), &ca.display().to_string()]);
    assert!(out.contains("ehlo after tls 250 False"), "{out}");
    daemon.queue_id_of("<tls-1@client.test>");
    daemon.wait_log("Anonymous TLS connection established from unknown[127.0.0.1]: TLSv1.3 with cipher");
    let files = queued(&env);
    assert!(files.iter().any(|f| contains(f, "with ESMTPS")), "Received: names ESMTPS");
}

/// CVE-2011-0411: a command sent in the same packet as STARTTLS must not be run after the
/// handshake.
#[test]
fn starttls_injection_is_discarded() {
    if !python_ok() {
        return;
    }
    let port = free_port();
    let probe = Env::new();
    let Some((cert, key, ca)) = tls_files(&probe) else { return };
    let service = format!(
        "smtpd_tls_security_level = \"may\"\nsmtpd_tls_cert_file = \"{}\"\nsmtpd_tls_key_file = \"{}\"\n",
        cert.display(),
        key.display()
    );
    let env = smtpd_env(port, "", &service);
    let daemon = start(&env, port);
    let script = r#"
import socket, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[2])
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
f = s.makefile("rb")
def reply(f):
    lines = []
    while True:
        line = f.readline().decode().rstrip()
        lines.append(line)
        if len(line) < 4 or line[3] != "-":
            return "\n".join(lines)
reply(f)
s.sendall(b"EHLO client.test\r\n"); reply(f)
s.sendall(b"STARTTLS\r\nRSET\r\n")
print("starttls:", reply(f))
t = ctx.wrap_socket(s, server_hostname="localhost")
g = t.makefile("rb")
t.sendall(b"HELP\r\n")
print("first after tls:", reply(g))
t.sendall(b"QUIT\r\n")
print("quit:", reply(g))
"#;
    let out = run_python(script, &[&port.to_string(), &ca.display().to_string()]);
    assert!(out.contains("starttls: 220 2.0.0 Ready to start TLS"), "{out}");
    assert!(out.contains("first after tls: 214 "), "the injected RSET was answered:\n{out}");
    assert!(out.contains("quit: 221 2.0.0 Bye"), "{out}");
    daemon.wait_log("discarding 6 byte(s) sent after STARTTLS");
}

#[test]
fn explicit_port_in_use_stops_start_up() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let env = smtpd_env(port, "", "");
    let out = env.tidemail(&["daemon"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("fatal: service smtp: cannot listen on 127.0.0.1:{port}")), "{err}");
}

#[test]
fn service_overrides_make_their_own_configuration() {
    let text = "myhostname = \"mail.test.example\"\nsmtpd_banner = \"$myhostname ESMTP\"\n\
                [service.smtp]\nport = 2525\n\
                [service.submission]\nmyhostname = \"submit.test.example\"\nsmtpd_sasl_auth_enable = true\n";
    let cfg = tidemail::config::Config::from_toml_str(text, Path::new("/tmp/t.toml")).unwrap();
    let services = cfg.services();
    assert_eq!(services.len(), 2);
    assert_eq!((services[0].port, services[1].port), (2525, 587));
    assert!(!services[0].config.smtpd_sasl_auth_enable());
    assert!(services[1].config.smtpd_sasl_auth_enable());
    // Overrides are expanded with the rest: $myhostname in the banner is the service's.
    assert_eq!(services[1].config.smtpd_banner(), "submit.test.example ESMTP");
    assert!(!cfg.smtpd_sasl_auth_enable());

    let bad = "[service.smtp]\nsmtpd_tls_security_level = \"sometimes\"\n";
    let error = tidemail::config::Config::from_toml_str(bad, Path::new("/tmp/t.toml")).unwrap_err().to_string();
    assert!(error.contains("line 2: bad value for smtpd_tls_security_level"), "{error}");

    let none = tidemail::config::Config::from_toml_str("", Path::new("/tmp/t.toml")).unwrap();
    let default = none.services();
    assert_eq!((default.len(), default[0].name.as_str(), default[0].port, default[0].explicit), (1, "smtp", 25, false));
}

/// Python: a session from `source` (an address on loopback); prints each reply code.
const RELAY_PROBE: &str = r#"
import smtplib, sys
port, source = int(sys.argv[1]), sys.argv[2]
s = smtplib.SMTP("127.0.0.1", port, timeout=10, source_address=(source, 0))
s.ehlo("client.test")
s.mail("a@client.test")
for rcpt in sys.argv[3:]:
    code, text = s.rcpt(rcpt)
    print(rcpt, code, text.decode())
s.quit()
"#;

#[test]
fn not_an_open_relay_by_default() {
    if !python_ok() {
        return;
    }
    let port = free_port();
    // Only 127.0.0.1 is trusted; the client comes from 127.0.0.2.
    let env = smtpd_env(port, "mynetworks = [\"127.0.0.1/32\"]\n", "");
    let daemon = start(&env, port);
    let tricks = [
        "victim@remote.example",
        "victim@REMOTE.EXAMPLE",
        "victim%remote.example@mail.test.example",
        "@mail.test.example:victim@remote.example",
        "remote.example!victim@mail.test.example",
        "\"victim@remote.example\"@mail.test.example",
        "victim@[192.0.2.1]",
    ];
    let mut args = vec![port.to_string(), "127.0.0.2".to_string()];
    args.extend(tricks.iter().map(|t| t.to_string()));
    args.push("postmaster@mail.test.example".into());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run_python(RELAY_PROBE, &refs);
    for trick in tricks {
        let line = out.lines().find(|l| l.starts_with(&format!("{trick} "))).unwrap_or_default();
        assert!(
            line.contains(" 454 ") || line.contains(" 554 ") || line.contains(" 550 "),
            "{trick} was accepted: {out}"
        );
    }
    let local = out.lines().find(|l| l.starts_with("postmaster@mail.test.example ")).unwrap();
    assert!(local.contains(" 250 "), "{out}");
    let log = daemon.log();
    assert!(log.contains("NOQUEUE: reject: RCPT from unknown[127.0.0.2]: 454 4.7.1 <victim@remote.example>: Relay access denied; from=<a@client.test> to=<victim@remote.example> proto=ESMTP helo=<client.test>"), "{log}");
    // From the trusted address the same remote recipient is accepted.
    let out = run_python(RELAY_PROBE, &[&port.to_string(), "127.0.0.1", "victim@remote.example"]);
    assert!(out.contains("victim@remote.example 250"), "{out}");
}

#[test]
fn auth_over_tls_permits_relaying_and_is_not_offered_in_clear() {
    if !python_ok() {
        return;
    }
    let port = free_port();
    let probe = Env::new();
    let Some((cert, key, ca)) = tls_files(&probe) else { return };
    // A passwd-file with a SHA-512-crypt hash (openssl passwd -6), readable by mail_owner only.
    let hash = Command::new("openssl").args(["passwd", "-6", "-salt", "saltsalt", "s3cret"]).output().unwrap();
    let hash = String::from_utf8(hash.stdout).unwrap();
    let passwords = probe.write_file("passwd", &format!("alice:{}", hash.trim()));
    if common::is_root() {
        let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
        nix::unistd::chown(&passwords, Some(nobody.uid), None).unwrap();
    }
    std::fs::set_permissions(&passwords, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let service = format!(
        "smtpd_tls_security_level = \"may\"\nsmtpd_tls_cert_file = \"{}\"\nsmtpd_tls_key_file = \"{}\"\n\
         smtpd_sasl_auth_enable = true\nsmtpd_sasl_type = \"passwd-file\"\nsmtpd_sasl_path = \"{}\"\n",
        cert.display(),
        key.display(),
        passwords.display()
    );
    let env = smtpd_env(port, "mynetworks = [\"192.0.2.0/24\"]\n", &service);
    let daemon = start(&env, port);

    let mut c = Raw::connect(port);
    c.reply();
    let ehlo = c.cmd("EHLO client.test");
    assert!(!ehlo.contains("AUTH"), "AUTH offered without TLS: {ehlo}");
    c.cmd("QUIT");

    let script = r#"
import smtplib, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[2])
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=10)
s.ehlo("client.test")
code, _ = s.mail("a@client.test"); r = s.rcpt("far@remote.example"); print("before auth", r[0]); s.rset()
s.starttls(context=ctx)
s.ehlo("client.test")
try:
    s.login("alice", "wrong")
except smtplib.SMTPAuthenticationError as e:
    print("bad password", e.smtp_code)
s.login("alice", sys.argv[3])
s.sendmail("alice@client.test", ["far@remote.example"], b"Subject: auth\r\nMessage-ID: <auth-1@client.test>\r\n\r\nrelayed\r\n")
print("sent")
s.quit()
"#;
    let out = run_python(script, &[&port.to_string(), &ca.display().to_string(), "s3cret"]);
    assert!(out.contains("before auth 454"), "{out}");
    assert!(out.contains("bad password 535"), "{out}");
    assert!(out.contains("sent"), "{out}");
    let id = daemon.queue_id_of("<auth-1@client.test>");
    let log = daemon.log();
    assert!(log.contains(&format!("{id}: client=unknown[127.0.0.1], sasl_method=PLAIN, sasl_username=alice")), "{log}");
}
