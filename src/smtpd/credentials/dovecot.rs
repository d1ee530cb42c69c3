//! smtpd_sasl_type = dovecot: the client side of Dovecot's authentication protocol (v1) over
//! its auth socket, as Postfix's xsasl_dovecot speaks it.
//!
//! One connection per [`Dovecot`], opened on first use and again when it drops or when the
//! socket path no longer names the socket it was opened on (Dovecot restarted, or the socket
//! was removed). Requests are multiplexed by id over it: Dovecot delays its answer to a failed
//! login (auth_failure_delay, 2 s), which must not hold up the other sessions' logins.
//!
//! ```text
//! C: VERSION 1 2          C: CPID <pid>
//! S: VERSION 1 2  S: MECH PLAIN plaintext ...  S: SPID/CUID/COOKIE ...  S: DONE
//! C: AUTH <id> PLAIN service=smtp nologin lip=.. rip=.. [secured] resp=<base64(authz\0user\0pass)>
//! S: OK <id> user=<name> ...  |  FAIL <id> [reason=..] [temp] ...  |  CONT <id> <data>
//! ```

use std::collections::HashMap;
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex as SyncMutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{Mutex, oneshot};
use tokio::task::JoinHandle;
use tokio::time::timeout;

use super::Check;

/// Connecting and the whole handshake: a socket nobody serves fails within this.
const HANDSHAKE_WAIT: Duration = Duration::from_secs(3);
/// Writing one request.
const WRITE_WAIT: Duration = Duration::from_secs(3);
/// Dovecot's answer: a failure comes after auth_failure_delay (2 s), or, for a client address
/// that keeps failing, after its penalty (up to 15 s), plus a passdb lookup.
const REPLY_WAIT: Duration = Duration::from_secs(20);
/// Longer lines than this are a broken server (Dovecot's own limit is 16 KiB).
const MAX_LINE: u64 = 64 * 1024;

pub struct Dovecot {
    path: PathBuf,
    conn: Mutex<Option<Conn>>,
    next_id: AtomicU32,
    /// Timeouts, for the tests (a hung server must not take the default 10 s).
    waits: Waits,
}

#[derive(Clone, Copy)]
struct Waits {
    handshake: Duration,
    reply: Duration,
}

/// One connection: the write half, and the task that reads answers and hands them out.
struct Conn {
    writer: OwnedWriteHalf,
    shared: Arc<Shared>,
    reader: JoinHandle<()>,
    /// (device, inode) of the socket file when connected.
    socket: (u64, u64),
}

#[derive(Default)]
struct Shared {
    pending: SyncMutex<HashMap<u32, oneshot::Sender<Reply>>>,
    alive: AtomicBool,
}

#[derive(Debug, PartialEq, Eq)]
enum Reply {
    Ok { user: Option<String> },
    Fail { temp: bool, reason: Option<String> },
    Cont,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Marks the connection dead when the reader ends however it ends (EOF, error, its runtime
/// shutting down), and drops the waiting requests' senders so they answer at once.
struct ReaderGuard(Arc<Shared>);

impl Drop for ReaderGuard {
    fn drop(&mut self) {
        self.0.alive.store(false, Ordering::SeqCst);
        self.0.pending.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

impl Dovecot {
    pub fn new(path: PathBuf) -> Dovecot {
        Dovecot::with_waits(path, HANDSHAKE_WAIT, REPLY_WAIT)
    }

    fn with_waits(path: PathBuf, handshake: Duration, reply: Duration) -> Dovecot {
        Dovecot { path, conn: Mutex::new(None), next_id: AtomicU32::new(1), waits: Waits { handshake, reply } }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub async fn check(
        &self,
        authzid: Option<&str>,
        username: &str,
        password: &str,
        client: IpAddr,
        local: Option<IpAddr>,
        secured: bool,
    ) -> Check {
        let (id, answer) = match self.send(authzid, username, password, client, local, secured).await {
            Ok(sent) => sent,
            Err(why) => return Check::Unavailable(why),
        };
        let reply = match timeout(self.waits.reply, answer).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => return Check::Unavailable(format!("{}: connection lost", self.path.display())),
            Err(_) => {
                // The connection stays: other logins may be waiting on it, and a dead server is
                // noticed by its closing the socket, or its socket file changing.
                self.forget(id).await;
                return Check::Unavailable(format!(
                    "{}: no answer within {}s",
                    self.path.display(),
                    self.waits.reply.as_secs()
                ));
            }
        };
        match reply {
            // Dovecot's name for the user (auth_username_format may have changed it), fit for the log.
            Reply::Ok { user } => Check::Ok { username: printable(user.as_deref().unwrap_or(username)) },
            Reply::Fail { temp: false, .. } => Check::Failed,
            Reply::Fail { temp: true, reason } => Check::Unavailable(format!(
                "{}: temporary failure{}",
                self.path.display(),
                reason.map(|r| format!(": {r}")).unwrap_or_default()
            )),
            Reply::Cont => {
                // PLAIN with its initial response needs no second round; the server's state is
                // unclear, so the connection is dropped.
                *self.conn.lock().await = None;
                Check::Unavailable(format!("{}: unexpected CONT for PLAIN", self.path.display()))
            }
        }
    }

    /// Writes the AUTH request (connecting first when needed); the receiver gets the answer.
    async fn send(
        &self,
        authzid: Option<&str>,
        username: &str,
        password: &str,
        client: IpAddr,
        local: Option<IpAddr>,
        secured: bool,
    ) -> Result<(u32, oneshot::Receiver<Reply>), String> {
        let mut slot = self.conn.lock().await;
        let current = std::fs::metadata(&self.path).map(|m| (m.dev(), m.ino()));
        let usable = |c: &Conn| c.shared.alive.load(Ordering::SeqCst) && current.as_ref().ok() == Some(&c.socket);
        if !slot.as_ref().is_some_and(usable) {
            *slot = None;
            let socket = current.map_err(|e| format!("cannot connect to {}: {}", self.path.display(), strerror(&e)))?;
            let conn = timeout(self.waits.handshake, connect(&self.path, socket))
                .await
                .map_err(|_| {
                    format!("{}: no handshake within {}s", self.path.display(), self.waits.handshake.as_secs())
                })?
                .map_err(|e| format!("{}: {e}", self.path.display()))?;
            *slot = Some(conn);
        }
        let conn = slot.as_mut().expect("connected above");
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        conn.shared.pending.lock().unwrap_or_else(|p| p.into_inner()).insert(id, tx);
        let line = auth_line(id, authzid, username, password, client, local, secured);
        match timeout(WRITE_WAIT, conn.writer.write_all(line.as_bytes())).await {
            Ok(Ok(())) => Ok((id, rx)),
            Ok(Err(e)) => {
                *slot = None;
                Err(format!("{}: {}", self.path.display(), strerror(&e)))
            }
            Err(_) => {
                *slot = None;
                Err(format!("{}: cannot write the request", self.path.display()))
            }
        }
    }

    async fn forget(&self, id: u32) {
        if let Some(conn) = self.conn.lock().await.as_ref() {
            conn.shared.pending.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
        }
    }
}

/// Connects and does the handshake; the reader task runs from then on.
async fn connect(path: &Path, socket: (u64, u64)) -> Result<Conn, String> {
    let stream = UnixStream::connect(path).await.map_err(|e| strerror(&e))?;
    let (read, mut writer) = stream.into_split();
    let hello = format!("VERSION\t1\t2\nCPID\t{}\n", std::process::id());
    writer.write_all(hello.as_bytes()).await.map_err(|e| strerror(&e))?;
    let mut reader = BufReader::new(read);
    let mut version_ok = false;
    let mut plain = false;
    loop {
        let line = read_line(&mut reader).await?.ok_or("connection closed during the handshake")?;
        let mut fields = line.split('\t');
        match fields.next() {
            Some("VERSION") => {
                if fields.next() != Some("1") {
                    return Err(format!("unsupported protocol version: {}", printable(&line)));
                }
                version_ok = true;
            }
            Some("MECH") => plain |= fields.next().is_some_and(|m| m.eq_ignore_ascii_case("PLAIN")),
            Some("DONE") => break,
            // SPID, CUID, COOKIE and whatever later versions add.
            _ => {}
        }
    }
    if !version_ok {
        return Err("no VERSION in the handshake".to_string());
    }
    if !plain {
        return Err("the server does not offer the PLAIN mechanism".to_string());
    }
    let shared = Arc::new(Shared { alive: AtomicBool::new(true), ..Shared::default() });
    let reader = tokio::spawn(read_replies(reader, ReaderGuard(Arc::clone(&shared))));
    Ok(Conn { writer, shared, reader, socket })
}

async fn read_replies(mut reader: BufReader<OwnedReadHalf>, guard: ReaderGuard) {
    while let Ok(Some(line)) = read_line(&mut reader).await {
        if let Some((id, reply)) = parse_reply(&line) {
            let waiting = guard.0.pending.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
            if let Some(tx) = waiting {
                let _ = tx.send(reply);
            }
        }
    }
}

/// One line without its LF; None at a clean end of stream.
async fn read_line(reader: &mut BufReader<OwnedReadHalf>) -> Result<Option<String>, String> {
    let mut buf = Vec::new();
    let n = (&mut *reader).take(MAX_LINE).read_until(b'\n', &mut buf).await.map_err(|e| strerror(&e))?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() != Some(&b'\n') {
        return Err(if n as u64 >= MAX_LINE { "line too long" } else { "connection closed mid-line" }.to_string());
    }
    buf.pop();
    Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
}

fn auth_line(
    id: u32,
    authzid: Option<&str>,
    username: &str,
    password: &str,
    client: IpAddr,
    local: Option<IpAddr>,
    secured: bool,
) -> String {
    let mut response = Vec::with_capacity(authzid.map_or(0, str::len) + username.len() + password.len() + 2);
    response.extend_from_slice(authzid.unwrap_or_default().as_bytes());
    response.push(0);
    response.extend_from_slice(username.as_bytes());
    response.push(0);
    response.extend_from_slice(password.as_bytes());
    let mut line = format!("AUTH\t{id}\tPLAIN\tservice=smtp\tnologin");
    if let Some(local) = local {
        line.push_str(&format!("\tlip={local}"));
    }
    line.push_str(&format!("\trip={client}"));
    if secured {
        line.push_str("\tsecured");
    }
    line.push_str("\tresp=");
    line.push_str(&BASE64.encode(&response));
    line.push('\n');
    line
}

/// `OK|FAIL|CONT <id> ...`; other lines (and unknown ids) are not answers to us.
fn parse_reply(line: &str) -> Option<(u32, Reply)> {
    let mut fields = line.split('\t');
    let command = fields.next()?;
    let id: u32 = fields.next()?.parse().ok()?;
    let params = || fields.clone().map(|f| f.split_once('=').map_or((f, None), |(k, v)| (k, Some(unescape(v)))));
    let reply = match command {
        "OK" => Reply::Ok { user: params().find(|(k, _)| *k == "user").and_then(|(_, v)| v) },
        "FAIL" => Reply::Fail {
            temp: params().any(|(k, _)| k == "temp"),
            reason: params().find(|(k, _)| *k == "reason").and_then(|(_, v)| v).map(|r| printable(&r)),
        },
        "CONT" => Reply::Cont,
        _ => return None,
    };
    Some((id, reply))
}

/// Dovecot's tab-escaping: \x01 then 0 (NUL), 1 (\x01), t (TAB), r (CR), n or l (LF).
fn unescape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '\u{1}' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('0') => out.push('\0'),
            Some('1') => out.push('\u{1}'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('n' | 'l') => out.push('\n'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

/// Server text fit for the log.
fn printable(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { '?' } else { c }).collect()
}

fn strerror(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error ") {
        Some(cut) => text[..cut].to_string(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;
    use tokio::net::UnixListener;

    #[test]
    fn request_line() {
        let line =
            auth_line(7, None, "alice", "pw", "192.0.2.1".parse().unwrap(), Some("192.0.2.25".parse().unwrap()), true);
        assert_eq!(
            line,
            format!(
                "AUTH\t7\tPLAIN\tservice=smtp\tnologin\tlip=192.0.2.25\trip=192.0.2.1\tsecured\tresp={}\n",
                BASE64.encode(b"\0alice\0pw")
            )
        );
        let line = auth_line(8, Some("boss"), "a", "b", "::1".parse().unwrap(), None, false);
        assert_eq!(
            line,
            format!("AUTH\t8\tPLAIN\tservice=smtp\tnologin\trip=::1\tresp={}\n", BASE64.encode(b"boss\0a\0b"))
        );
    }

    #[test]
    fn replies() {
        assert_eq!(
            parse_reply("OK\t3\tuser=alice@example.org"),
            Some((3, Reply::Ok { user: Some("alice@example.org".into()) }))
        );
        assert_eq!(parse_reply("OK\t3"), Some((3, Reply::Ok { user: None })));
        assert_eq!(
            parse_reply("OK\t4\tuser=a\u{1}tb\u{1}1c"),
            Some((4, Reply::Ok { user: Some("a\tb\u{1}c".into()) }))
        );
        assert_eq!(
            parse_reply("FAIL\t5\tuser=bob\treason=Password mismatch"),
            Some((5, Reply::Fail { temp: false, reason: Some("Password mismatch".into()) }))
        );
        assert_eq!(parse_reply("FAIL\t6\ttemp"), Some((6, Reply::Fail { temp: true, reason: None })));
        assert_eq!(parse_reply("CONT\t7\t"), Some((7, Reply::Cont)));
        assert_eq!(parse_reply("MECH\tPLAIN"), None);
        assert_eq!(parse_reply("OK\tx"), None);
        assert_eq!(parse_reply(""), None);
    }

    /// A scripted server: the handshake, then for each AUTH the answer `answer` gives to the
    /// decoded user and password (None: say nothing).
    async fn fake_server(
        path: &Path,
        answer: impl Fn(u32, &str, &str) -> Option<String> + Send + Sync + 'static,
    ) -> JoinHandle<()> {
        let listener = UnixListener::bind(path).unwrap();
        let answer = Arc::new(answer);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let answer = Arc::clone(&answer);
                tokio::spawn(async move {
                    let (read, mut write) = stream.into_split();
                    let hello = "VERSION\t1\t2\nMECH\tPLAIN\tplaintext\nMECH\tLOGIN\tplaintext\nSPID\t1\nCUID\t1\nCOOKIE\tabc\nDONE\n";
                    write.write_all(hello.as_bytes()).await.unwrap();
                    let mut lines = BufReader::new(read).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        let fields: Vec<&str> = line.split('\t').collect();
                        if fields[0] != "AUTH" {
                            continue;
                        }
                        let id: u32 = fields[1].parse().unwrap();
                        let resp = fields.iter().find_map(|f| f.strip_prefix("resp=")).unwrap();
                        let decoded = BASE64.decode(resp).unwrap();
                        let parts: Vec<String> =
                            decoded.split(|b| *b == 0).map(|p| String::from_utf8_lossy(p).into()).collect();
                        if let Some(reply) = answer(id, &parts[1], &parts[2]) {
                            write.write_all(reply.as_bytes()).await.unwrap();
                        }
                    }
                });
            }
        })
    }

    fn ip() -> IpAddr {
        "127.0.0.1".parse().unwrap()
    }

    #[tokio::test]
    async fn against_a_scripted_server() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth");
        let server = fake_server(&path, |id, user, pass| match (user, pass) {
            ("alice", "good") => Some(format!("OK\t{id}\tuser=alice@example.org\n")),
            ("slow", _) => None,
            ("temp", _) => Some(format!("FAIL\t{id}\ttemp\treason=db down\n")),
            _ => Some(format!("FAIL\t{id}\tuser={user}\n")),
        })
        .await;
        let dovecot = Dovecot::with_waits(path.clone(), Duration::from_secs(2), Duration::from_millis(500));
        let check = |u: &'static str, p: &'static str| dovecot.check(None, u, p, ip(), None, true);
        assert_eq!(check("alice", "good").await, Check::Ok { username: "alice@example.org".into() });
        assert_eq!(check("alice", "bad").await, Check::Failed);
        assert!(matches!(check("temp", "x").await, Check::Unavailable(why) if why.contains("db down")));
        let started = Instant::now();
        assert!(matches!(check("slow", "x").await, Check::Unavailable(why) if why.contains("no answer")));
        assert!(started.elapsed() < Duration::from_secs(2));
        // The next login is served (a late answer to the forgotten one is ignored).
        assert_eq!(check("alice", "good").await, Check::Ok { username: "alice@example.org".into() });
        // Several logins at once share the connection, each gets its own answer.
        let alice = Check::Ok { username: "alice@example.org".into() };
        let (a, b, c) = tokio::join!(check("alice", "good"), check("bob", "x"), check("alice", "good"));
        assert_eq!((a, b, c), (alice.clone(), Check::Failed, alice));
        server.abort();
        let _ = server.await;
        std::fs::remove_file(&path).unwrap();
        let started = Instant::now();
        assert!(matches!(check("alice", "good").await, Check::Unavailable(why) if why.contains("No such file")));
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn a_socket_nobody_answers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth");
        // Bound and listening, never accepted: connect succeeds, the handshake never comes.
        let _listener = UnixListener::bind(&path).unwrap();
        let dovecot = Dovecot::with_waits(path.clone(), Duration::from_millis(300), Duration::from_secs(1));
        let started = Instant::now();
        let check = dovecot.check(None, "a", "b", ip(), None, false).await;
        assert!(matches!(&check, Check::Unavailable(why) if why.contains("no handshake")), "{check:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
        // A socket file with no listener behind it at all.
        drop(_listener);
        let check = dovecot.check(None, "a", "b", ip(), None, false).await;
        assert!(matches!(&check, Check::Unavailable(why) if why.contains("refused")), "{check:?}");
    }

    #[tokio::test]
    async fn refuses_a_server_without_plain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth");
        let listener = UnixListener::bind(&path).unwrap();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            stream.write_all(b"VERSION\t1\t2\nMECH\tGSSAPI\nDONE\n").await.unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
        });
        let dovecot = Dovecot::new(path);
        let check = dovecot.check(None, "a", "b", ip(), None, false).await;
        assert!(matches!(&check, Check::Unavailable(why) if why.contains("PLAIN")), "{check:?}");
    }
}
