//! The recording smarthost (tests/smtp/sink.py, on Debian's aiosmtpd: not tidemail code) for
//! tests that run the real binary against it. Stopped when dropped.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const SINK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/smtp/sink.py");

/// A Python that has aiosmtpd, or None (the test is then skipped; CI runs as root and installs it).
pub fn python() -> Option<&'static str> {
    let found = ["/usr/bin/python3", "python3"].into_iter().find(|python| {
        Command::new(python)
            .args(["-c", "import aiosmtpd"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    });
    if found.is_none() {
        assert!(!super::is_root(), "python3-aiosmtpd is missing (.ci/test installs it)");
        eprintln!("skipped: python3-aiosmtpd is not installed (run .ci/test as root to install it)");
    }
    found
}

/// Starts a helper program that prints one line on stdout once it is ready (20 s at most);
/// returns it and that line, trimmed. Panics, after killing it, when no line comes.
pub fn spawn_ready(mut command: Command, what: &str) -> (Child, String) {
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(line) if !line.is_empty() => (child, line.trim().to_string()),
        other => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not start: {other:?}");
        }
    }
}

/// A loopback port nothing listens on (at the moment of asking).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub struct Sink {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl Sink {
    /// Starts sink.py on a free port with `args` (see its usage text).
    pub fn start(args: &[&str]) -> Option<Sink> {
        Sink::start_on(free_port(), args)
    }

    /// Like `start`, offering STARTTLS with the test certificate (`super::pki`); None, and the
    /// test skipped, when aiosmtpd or the openssl command is missing.
    pub fn start_tls(args: &[&str]) -> Option<Sink> {
        python()?;
        let mut all = super::pki::pki()?.sink_args();
        all.extend(args.iter().map(|a| a.to_string()));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        Sink::start(&all)
    }

    /// Starts sink.py on `port` with `args`.
    pub fn start_on(port: u16, args: &[&str]) -> Option<Sink> {
        let python = python()?;
        let dir = tempfile::tempdir().unwrap();
        let mut command = Command::new(python);
        command.arg(SINK).arg(port.to_string()).arg(dir.path()).args(args);
        let (child, ready) = spawn_ready(command, "sink.py");
        assert_eq!(ready, "ready", "sink.py said {ready:?}");
        Some(Sink { child, port, dir })
    }

    /// Where the sink listens.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The relayhost setting that points at this sink.
    pub fn relayhost(&self) -> String {
        format!("relayhost = \"[127.0.0.1]:{}\"\n", self.port)
    }

    /// The messages recorded so far: (envelope record, content as received).
    pub fn messages(&self) -> Vec<(serde_json::Value, Vec<u8>)> {
        let mut found = Vec::new();
        for number in 1.. {
            let base: PathBuf = self.dir.path().join(number.to_string());
            let Ok(record) = std::fs::read_to_string(base.with_extension("json")) else { break };
            let content = std::fs::read(base.with_extension("eml")).unwrap();
            found.push((serde_json::from_str(&record).unwrap(), content));
        }
        found
    }

    /// The envelope records of the messages accepted so far.
    pub fn records(&self) -> Vec<serde_json::Value> {
        self.messages().into_iter().map(|(record, _)| record).collect()
    }

    /// The mechanisms of the AUTH commands received, one a line ("" when none was).
    pub fn auth_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("auth.log")).unwrap_or_default()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
