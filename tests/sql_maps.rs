//! sqlite:, mysql: and pgsql: tables against real databases: an SQLite file, and a MariaDB
//! and a PostgreSQL server started for this test binary only.
//!
//! The servers are private instances: a data directory under the system temp directory, a
//! Unix socket there and a loopback TCP port; run as `nobody` when the tests run as root.
//! Each is started once (the first test that needs it), shared by the tests, and stopped
//! when the test process exits, however it exits: `tests/sql/lifeline.sh` holds a pipe from
//! this process and stops the server and removes its directory when the pipe closes.
//! Every wait is bounded. Without the server programs the tests say so and pass, except
//! under CI (`CI` set), where they fail: .ci/test installs mariadb-server and postgresql.

use std::fs::{self, File};
use std::io::{Read, Seek, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tidemail::maps::{self, Map, MapError};

const LIFELINE: &str = include_str!("sql/lifeline.sh");
const FIXTURE: &str = include_str!("sql/fixture.sql");
const USER: &str = "tidemail";
const PASSWORD: &str = "Test pw-4-tidemail";
/// A second user, whose connections the reconnection tests kill.
const KILL_USER: &str = "tidemail_kill";
const STARTUP: Duration = Duration::from_secs(90);

// ---------------------------------------------------------------------------------------
// Helpers

/// Poll `cond` until it holds or `limit` passes.
fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if cond() {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Run a command to completion within `limit`, feeding it `input`; its output, or why not.
fn run(command: &mut Command, input: &str, limit: Duration) -> Result<String, String> {
    let mut out = tempfile::tempfile().map_err(|e| e.to_string())?;
    let shown = format!("{command:?}");
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(out.try_clone().map_err(|e| e.to_string())?)
        .stderr(out.try_clone().map_err(|e| e.to_string())?)
        .spawn()
        .map_err(|e| format!("{shown}: {e}"))?;
    // Small inputs only: they fit in the pipe, so this write does not block.
    let _ = child.stdin.take().expect("piped").write_all(input.as_bytes());
    let mut status = None;
    wait_until(limit, || {
        status = child.try_wait().ok().flatten();
        status.is_some()
    });
    let mut text = String::new();
    out.rewind().and_then(|_| out.read_to_string(&mut text)).map_err(|e| e.to_string())?;
    match status {
        Some(s) if s.success() => Ok(text),
        Some(s) => Err(format!("{shown}: {s}\n{text}")),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            Err(format!("{shown}: still running after {limit:?}\n{text}"))
        }
    }
}

fn in_ci() -> bool {
    std::env::var_os("CI").is_some()
}

/// The user the servers run as: `nobody` for root (database servers refuse root), else us.
fn server_user() -> Option<(u32, u32)> {
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    let user = nix::unistd::User::from_name("nobody").ok().flatten().expect("user nobody");
    Some((user.uid.as_raw(), user.gid.as_raw()))
}

fn as_server_user(command: &mut Command) -> &mut Command {
    if let Some((uid, gid)) = server_user() {
        command.uid(uid).gid(gid);
    }
    command
}

fn first_existing(candidates: &[&str]) -> Option<PathBuf> {
    candidates.iter().map(PathBuf::from).find(|p| p.exists())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A private scratch directory for a server, owned by the user it runs as. It is removed
/// by the lifeline when the server stops, not by a destructor (the server outlives tests).
fn server_dir(prefix: &str) -> PathBuf {
    let dir = tempfile::Builder::new().prefix(prefix).tempdir().unwrap().keep();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    if let Some((uid, gid)) = server_user() {
        nix::unistd::chown(&dir, Some(uid.into()), Some(gid.into())).unwrap();
    }
    dir
}

/// A running server. Dropping nothing here stops it: the process exit does.
struct Server {
    dir: PathBuf,
    /// MariaDB: the socket file; PostgreSQL: the socket directory.
    socket: PathBuf,
    port: u16,
    admin: PathBuf,
    /// The server's output, readable after the server (and its directory) are gone.
    log: File,
    /// Held for the life of the process: its closing stops the server.
    _lifeline: Mutex<ChildStdin>,
    child: Mutex<Child>,
}

impl Server {
    fn launch(dir: &Path, signal: &str, program: &Path, args: &[String], log: &File) -> (Child, ChildStdin) {
        let mut command = Command::new("/bin/sh");
        command.arg("-c").arg(LIFELINE).arg("lifeline").arg(dir).arg(signal).arg(program).args(args);
        command
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(log.try_clone().unwrap())
            .stderr(log.try_clone().unwrap());
        let mut child = as_server_user(&mut command).spawn().expect("start the lifeline shell");
        let stdin = child.stdin.take().expect("piped");
        (child, stdin)
    }

    fn log_text(&self) -> String {
        let mut text = String::new();
        let mut log = &self.log;
        let _ = log.rewind().and_then(|_| log.read_to_string(&mut text));
        text
    }

    fn exited(&self) -> bool {
        self.child.lock().unwrap().try_wait().ok().flatten().is_some()
    }

    /// Run the admin client with `sql` on its standard input, retrying while the server
    /// starts, until it works or `limit` passes.
    fn admin_until_ready(&self, args: &[String], sql: &str, limit: Duration) -> Result<String, String> {
        let start = Instant::now();
        loop {
            match run(Command::new(&self.admin).args(args), sql, Duration::from_secs(30)) {
                Ok(out) => return Ok(out),
                Err(e) if start.elapsed() > limit || self.exited() => {
                    return Err(format!("{e}\nserver output:\n{}", self.log_text()));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }
}

/// A started server, none (the programs are missing, outside CI), or why it failed.
type Fixture = Result<Option<Server>, String>;

fn missing(what: &str) -> Fixture {
    if in_ci() {
        Err(format!("{what} not found: .ci/test installs it (apt-get install mariadb-server postgresql)"))
    } else {
        eprintln!("SKIPPED: {what} not found (install it to run these tests; CI does)");
        Ok(None)
    }
}

// ---------------------------------------------------------------------------------------
// MariaDB

fn mariadb() -> Option<&'static Server> {
    static SERVER: OnceLock<Fixture> = OnceLock::new();
    match SERVER.get_or_init(start_mariadb) {
        Ok(server) => server.as_ref(),
        Err(e) => panic!("MariaDB test server: {e}"),
    }
}

fn start_mariadb() -> Fixture {
    let (Some(daemon), Some(install), Some(client)) = (
        first_existing(&["/usr/sbin/mariadbd", "/usr/sbin/mysqld"]),
        first_existing(&["/usr/bin/mariadb-install-db", "/usr/bin/mysql_install_db"]),
        first_existing(&["/usr/bin/mariadb", "/usr/bin/mysql"]),
    ) else {
        return missing("MariaDB (mariadbd, mariadb-install-db, mariadb)");
    };
    let started = Instant::now();
    let dir = server_dir("tidemail-mariadb-");
    let data = dir.join("data");
    let socket = dir.join("mysqld.sock");
    let port = free_port();
    let common = [
        "--no-defaults".to_string(),
        format!("--datadir={}", data.display()),
        "--innodb-buffer-pool-size=16M".to_string(),
        "--innodb-log-file-size=8M".to_string(),
    ];
    let mut install_cmd = Command::new(&install);
    install_cmd.args(&common).args([
        "--auth-root-authentication-method=normal",
        "--skip-test-db",
        "--skip-name-resolve",
    ]);
    run(as_server_user(install_cmd.current_dir(&dir)), "", STARTUP).map_err(|e| format!("mariadb-install-db: {e}"))?;

    let log = tempfile::tempfile().unwrap();
    let mut args = common.to_vec();
    args.extend([
        format!("--socket={}", socket.display()),
        format!("--port={port}"),
        "--bind-address=127.0.0.1".to_string(),
        format!("--pid-file={}", dir.join("mysqld.pid").display()),
        format!("--tmpdir={}", dir.display()),
        "--skip-name-resolve".to_string(),
        "--skip-log-bin".to_string(),
    ]);
    let (child, stdin) = Server::launch(&dir, "TERM", &daemon, &args, &log);
    let server =
        Server { dir, socket, port, admin: client, log, _lifeline: Mutex::new(stdin), child: Mutex::new(child) };
    if !wait_until(STARTUP, || UnixStream::connect(&server.socket).is_ok() || server.exited()) || server.exited() {
        return Err(format!("mariadbd did not start:\n{}", server.log_text()));
    }
    let setup = format!(
        "CREATE DATABASE mail;\n\
         CREATE USER '{USER}'@'localhost' IDENTIFIED BY '{PASSWORD}';\n\
         CREATE USER '{USER}'@'127.0.0.1' IDENTIFIED BY '{PASSWORD}';\n\
         CREATE USER '{KILL_USER}'@'localhost' IDENTIFIED BY '{PASSWORD}';\n\
         GRANT SELECT ON mail.* TO '{USER}'@'localhost', '{USER}'@'127.0.0.1', '{KILL_USER}'@'localhost';\n\
         USE mail;\n{FIXTURE}"
    );
    server.admin_until_ready(&server.mysql_args(), &setup, STARTUP)?;
    eprintln!("MariaDB test server ready in {:?} ({})", started.elapsed(), server.dir.display());
    Ok(Some(server))
}

impl Server {
    fn mysql_args(&self) -> Vec<String> {
        vec![
            "--no-defaults".into(),
            format!("--socket={}", self.socket.display()),
            "--user=root".into(),
            "--batch".into(),
            "--skip-column-names".into(),
        ]
    }

    fn mysql_admin(&self, sql: &str) -> String {
        run(Command::new(&self.admin).args(self.mysql_args()), sql, Duration::from_secs(30)).unwrap()
    }
}

// ---------------------------------------------------------------------------------------
// PostgreSQL

fn postgres() -> Option<&'static Server> {
    static SERVER: OnceLock<Fixture> = OnceLock::new();
    match SERVER.get_or_init(start_postgres) {
        Ok(server) => server.as_ref(),
        Err(e) => panic!("PostgreSQL test server: {e}"),
    }
}

/// The newest installed PostgreSQL's programs (Debian keeps them per version).
fn postgres_bin() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin): &(u32, PathBuf)| bin.join("postgres").exists() && bin.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn start_postgres() -> Fixture {
    let Some(bin) = postgres_bin() else { return missing("PostgreSQL (/usr/lib/postgresql/*/bin/postgres)") };
    let Some(client) = first_existing(&[bin.join("psql").to_str().unwrap(), "/usr/bin/psql"]) else {
        return missing("psql");
    };
    let started = Instant::now();
    let dir = server_dir("tidemail-pgsql-");
    let data = dir.join("data");
    let port = free_port();
    let mut initdb = Command::new(bin.join("initdb"));
    initdb.arg("-D").arg(&data).args([
        "--username=postgres",
        "--auth-local=trust",
        "--auth-host=scram-sha-256",
        "--encoding=UTF8",
        "--locale=C",
        "--no-sync",
    ]);
    run(as_server_user(initdb.current_dir(&dir)), "", STARTUP).map_err(|e| format!("initdb: {e}"))?;

    let log = tempfile::tempfile().unwrap();
    let args: Vec<String> = vec![
        "-D".into(),
        data.display().to_string(),
        "-k".into(),
        dir.display().to_string(),
        "-p".into(),
        port.to_string(),
        "-c".into(),
        "listen_addresses=127.0.0.1".into(),
        "-c".into(),
        "fsync=off".into(),
        "-c".into(),
        "max_connections=60".into(),
        "-c".into(),
        "shared_buffers=16MB".into(),
    ];
    // SIGINT: PostgreSQL's "fast" shutdown, which does not wait for clients.
    let (child, stdin) = Server::launch(&dir, "INT", &bin.join("postgres"), &args, &log);
    let socket = dir.clone();
    let server =
        Server { dir, socket, port, admin: client, log, _lifeline: Mutex::new(stdin), child: Mutex::new(child) };
    let setup = format!(
        "CREATE ROLE {USER} LOGIN PASSWORD '{PASSWORD}';\n\
         CREATE ROLE {KILL_USER} LOGIN PASSWORD '{PASSWORD}';\n\
         CREATE DATABASE mail;\n\
         \\connect mail\n{FIXTURE}\n\
         GRANT SELECT ON ALL TABLES IN SCHEMA public TO {USER}, {KILL_USER};\n"
    );
    server.admin_until_ready(&server.psql_args("postgres"), &setup, STARTUP)?;
    eprintln!("PostgreSQL test server ready in {:?} ({})", started.elapsed(), server.dir.display());
    Ok(Some(server))
}

impl Server {
    fn psql_args(&self, db: &str) -> Vec<String> {
        vec![
            "-X".into(),
            "-q".into(),
            "-A".into(),
            "-t".into(),
            "-v".into(),
            "ON_ERROR_STOP=1".into(),
            "-h".into(),
            self.socket.display().to_string(),
            "-p".into(),
            self.port.to_string(),
            "-U".into(),
            "postgres".into(),
            "-d".into(),
            db.into(),
        ]
    }

    fn psql_admin(&self, sql: &str) -> String {
        run(Command::new(&self.admin).args(self.psql_args("mail")), sql, Duration::from_secs(30)).unwrap()
    }
}

// ---------------------------------------------------------------------------------------
// The three kinds of table, behind one face

/// One database under test, and how its `.cf` files reach it.
struct Db {
    kind: &'static str,
    /// The `.cf` lines that connect (hosts, user, password, dbname; or dbpath).
    connect: String,
    /// Whether `Case@Example.com` differs from `case@example.com` (MariaDB's default
    /// collation says they are the same).
    case_sensitive: bool,
    dir: tempfile::TempDir,
}

impl Db {
    fn sqlite() -> Db {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mail.sqlite");
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(FIXTURE).unwrap();
        drop(conn);
        Db { kind: "sqlite", connect: format!("dbpath = {}\n", path.display()), case_sensitive: true, dir }
    }

    /// A mysql: or pgsql: table on `hosts`, logging in as `user`.
    fn server(kind: &'static str, hosts: &str, user: &str) -> Db {
        Db {
            kind,
            connect: format!("hosts = {hosts}\nuser = {user}\npassword = {PASSWORD}\ndbname = mail\n"),
            case_sensitive: kind != "mysql",
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn mysql_socket(server: &Server) -> Db {
        Db::server("mysql", &format!("unix:{}", server.socket.display()), USER)
    }

    fn pgsql_socket(server: &Server) -> Db {
        Db::server("pgsql", &format!("unix:{}:{}", server.socket.display(), server.port), USER)
    }

    /// Write `NAME.cf` (mode 600) with the connection lines and `body`; its table spec.
    fn spec(&self, name: &str, body: &str) -> String {
        let path = self.dir.path().join(format!("{name}.cf"));
        write_private(&path, &format!("{}{body}", self.connect));
        format!("{}:{}", self.kind, path.display())
    }

    fn open(&self, name: &str, body: &str) -> Arc<dyn Map> {
        let spec = self.spec(name, body);
        maps::open(&spec).unwrap_or_else(|e| panic!("{spec}: {e}"))
    }
}

fn write_private(path: &Path, text: &str) {
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).unwrap();
}

fn found(map: &Arc<dyn Map>, key: &str) -> Option<String> {
    map.lookup(key).unwrap_or_else(|e| panic!("{}: lookup {key:?}: {e}", map.spec()))
}

fn assert_unavailable(map: &Arc<dyn Map>, key: &str) -> String {
    match map.lookup(key) {
        Err(e @ MapError::Unavailable { .. }) => e.to_string(),
        other => panic!("{}: lookup {key:?}: expected Unavailable, got {other:?}", map.spec()),
    }
}

// ---------------------------------------------------------------------------------------
// The checks, run against each kind of database

fn check_expansions(db: &Db) {
    let alias = db.open("alias", "query = SELECT goto FROM alias WHERE address = '%s' AND active = 1 ORDER BY goto\n");
    assert_eq!(found(&alias, "joe@example.com").as_deref(), Some("joe@mailhost.example.com"));
    // Several rows: joined with commas, as Postfix does.
    assert_eq!(found(&alias, "list@example.com").as_deref(), Some("ann@example.org,bob@example.net,carol@example.com"));
    assert_eq!(found(&alias, "old@example.com"), None, "inactive row");
    assert_eq!(found(&alias, "nobody@example.com"), None);
    assert_eq!(found(&alias, "nullgoto@example.com"), None, "NULL value");
    assert_eq!(found(&alias, "emptygoto@example.com"), None, "empty value");
    assert_eq!(found(&alias, "postmaster").as_deref(), Some("root@example.com"));
    // No case folding by the table; the database's collation decides.
    let upper = found(&alias, "case@example.com");
    if db.case_sensitive {
        assert_eq!(upper, None);
    } else {
        assert_eq!(upper.as_deref(), Some("upper@example.com"));
    }
    assert_eq!(found(&alias, "Case@Example.com").as_deref(), Some("upper@example.com"));

    // %u and %d; a key without a domain is not looked up at all.
    let mailbox = db.open("mailbox", "query = SELECT maildir FROM mailbox WHERE localpart = '%u' AND domain = '%d'\n");
    assert_eq!(found(&mailbox, "joe@example.net").as_deref(), Some("example.net/joe/"));
    assert_eq!(found(&mailbox, "joe"), None);
    assert_eq!(found(&mailbox, "joe@"), None);
    // '%u@%d' in one literal.
    let rebuilt = db.open("rebuilt", "query = SELECT goto FROM alias WHERE address = '%u@%d' AND active = 1\n");
    assert_eq!(found(&rebuilt, "joe@example.com").as_deref(), Some("joe@mailhost.example.com"));
    assert_eq!(found(&rebuilt, "postmaster"), None);

    // %1 and %2: domain labels from the right; too few labels: not looked up.
    let tld = db.open("tld", "query = SELECT action FROM tld_policy WHERE tld = '%1' AND second = '%2'\n");
    assert_eq!(found(&tld, "user@mail.example.com").as_deref(), Some("OK example.com and its subdomains"));
    assert_eq!(found(&tld, "user@example.org").as_deref(), Some("REJECT"));
    assert_eq!(found(&tld, "user@localhost"), None);
    assert_eq!(found(&tld, "example.com"), None);

    // result_format, with the value's and the key's parts.
    let transport =
        db.open("transport", "query = SELECT goto FROM alias WHERE address = '%s'\nresult_format = smtp:[%d] for %U\n");
    assert_eq!(found(&transport, "joe@example.com").as_deref(), Some("smtp:[mailhost.example.com] for joe"));
    assert_eq!(found(&transport, "postmaster").as_deref(), Some("smtp:[example.com] for postmaster"));
    assert_eq!(found(&transport, "x' OR '1'='1"), None, "%d: a value without a domain is skipped");

    // A number column comes back as text.
    let quota = db.open("quota", "query = SELECT bytes FROM quota WHERE address = '%s'\n");
    assert_eq!(found(&quota, "joe@example.com").as_deref(), Some("1048576"));

    // Only keys in the listed domains are asked.
    let restricted = db.open(
        "restricted",
        "query = SELECT goto FROM alias WHERE address = '%s' ORDER BY goto\ndomain = example.com, !example.net\n",
    );
    assert_eq!(found(&restricted, "joe@example.com").as_deref(), Some("joe@mailhost.example.com"));
    assert_eq!(found(&restricted, "@example.org"), None, "a domain-only key is not asked");
    assert_eq!(found(&restricted, "postmaster"), None, "a key without a domain is not asked");
    let elsewhere = db.open("elsewhere", "query = SELECT goto FROM alias WHERE address = '%s'\ndomain = example.org\n");
    assert_eq!(found(&elsewhere, "joe@example.com"), None);
    assert_eq!(found(&elsewhere, "@example.org"), None);

    // The old form of the query, from pre-2.2 tutorials.
    let legacy = db.open(
        "legacy",
        "table = forwardings\nselect_field = destination\nwhere_field = source\nadditional_conditions = AND active = 'y'\n",
    );
    assert_eq!(found(&legacy, "info@example.com").as_deref(), Some("joe@example.com"));
    assert_eq!(found(&legacy, "joe@example.com"), None);

    // More values than expansion_limit: a temporary error, not a truncated answer.
    let limited = db.open("limited", "query = SELECT goto FROM alias WHERE address = '%s'\nexpansion_limit = 2\n");
    assert_eq!(found(&limited, "joe@example.com").as_deref(), Some("joe@mailhost.example.com"));
    assert!(assert_unavailable(&limited, "list@example.com").contains("expansion_limit"));
}

/// Keys that would break out of the quotes if they were pasted into the SQL.
fn check_hostile_keys(db: &Db) {
    let alias = db.open("hostile", "query = SELECT goto FROM alias WHERE address = '%s'\n");
    // The row whose key is the attack string itself is found; nothing else is.
    assert_eq!(found(&alias, "x' OR '1'='1").as_deref(), Some("the row whose key is the quote attack itself"));
    for key in [
        "' OR '1'='1",
        "' OR 1=1 -- ",
        "nobody' UNION SELECT value FROM secret WHERE name = 'root",
        "x'; DROP TABLE alias; --",
        "x\"; DROP TABLE alias; --",
        "\\' OR 1=1 #",
        "joe@example.com\\",
        "\\",
        "joe@example.com\0",
        "%s%u%d%%",
        "joe@example.com' AND '1'='1",
    ] {
        assert_eq!(found(&alias, key), None, "{key:?}");
    }
    // Mixed literals and unquoted expansions bind the key too.
    let mixed = db.open("hostile2", "query = SELECT goto FROM alias WHERE address = '%u@%d' OR address = %s\n");
    assert_eq!(found(&mixed, "x' OR '1'='1@example.com"), None);
    assert_eq!(found(&mixed, "1 OR 1=1"), None);
    assert_eq!(found(&alias, "joe@example.com").as_deref(), Some("joe@mailhost.example.com"), "table still there");
}

/// A closed port: Unavailable at once, never "not found"; and again at once while the
/// host is left alone for retry_interval.
fn check_server_down(db: &Db) {
    let port = free_port();
    let down = Db { connect: set_hosts(&db.connect, &format!("inet:127.0.0.1:{port}")), ..db.clone_kind() };
    let map = down.open("down", "query = SELECT goto FROM alias WHERE address = '%s'\n");
    let start = Instant::now();
    let why = assert_unavailable(&map, "joe@example.com");
    assert!(why.contains(&port.to_string()), "{why}");
    let why = assert_unavailable(&map, "joe@example.com");
    assert!(why.contains("failed recently"), "{why}");
    assert!(start.elapsed() < Duration::from_secs(5), "took {:?}", start.elapsed());
    // A socket that is not there.
    let missing = Db { connect: set_hosts(&db.connect, "unix:/nonexistent/tidemail.sock"), ..db.clone_kind() };
    assert_unavailable(
        &missing.open("nosocket", "query = SELECT goto FROM alias WHERE address = '%s'\n"),
        "joe@example.com",
    );
}

/// The first host is down, the second answers.
fn check_failover(db: &Db, working: &str) {
    let port = free_port();
    let failover =
        Db { connect: set_hosts(&db.connect, &format!("inet:127.0.0.1:{port}, {working}")), ..db.clone_kind() };
    let map = failover.open("failover", "query = SELECT goto FROM alias WHERE address = '%s'\n");
    assert_eq!(found(&map, "joe@example.com").as_deref(), Some("joe@mailhost.example.com"));
    assert_eq!(found(&map, "joe@example.com").as_deref(), Some("joe@mailhost.example.com"));
}

fn check_wrong_password(db: &Db) {
    let wrong = Db { connect: db.connect.replace(PASSWORD, "not the password"), ..db.clone_kind() };
    let map = wrong.open("wrongpw", "query = SELECT goto FROM alias WHERE address = '%s'\n");
    let why = assert_unavailable(&map, "joe@example.com");
    assert!(!why.contains("not the password"), "the password is in the message: {why}");
}

/// A server that accepts the TCP connection and then says nothing: the lookup fails
/// within the timeouts instead of hanging.
fn check_hung_server(kind: &'static str) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let db = Db {
        kind,
        connect: format!(
            "hosts = inet:127.0.0.1:{port}\nuser = {USER}\npassword = {PASSWORD}\ndbname = mail\n\
             connect_timeout = 1\nquery_timeout = 1\n"
        ),
        case_sensitive: true,
        dir: tempfile::tempdir().unwrap(),
    };
    let map = db.open("hung", "query = SELECT goto FROM alias WHERE address = '%s'\n");
    let start = Instant::now();
    assert_unavailable(&map, "joe@example.com");
    assert!(start.elapsed() < Duration::from_secs(6), "{kind}: took {:?}", start.elapsed());
    drop(listener);
}

impl Db {
    fn clone_kind(&self) -> Db {
        Db {
            kind: self.kind,
            connect: self.connect.clone(),
            case_sensitive: self.case_sensitive,
            dir: tempfile::tempdir().unwrap(),
        }
    }
}

fn set_hosts(connect: &str, hosts: &str) -> String {
    connect
        .lines()
        .map(|l| if l.starts_with("hosts =") { format!("hosts = {hosts}\n") } else { format!("{l}\n") })
        .collect()
}

// ---------------------------------------------------------------------------------------
// SQLite

#[test]
fn sqlite_expansions_rows_domains_and_legacy_form() {
    check_expansions(&Db::sqlite());
}

#[test]
fn sqlite_hostile_keys_stay_parameters() {
    check_hostile_keys(&Db::sqlite());
}

#[test]
fn sqlite_missing_file_is_unavailable_and_a_replaced_file_is_reopened() {
    let db = Db::sqlite();
    let path = db.dir.path().join("mail.sqlite");
    let map = db.open("alias", "query = SELECT goto FROM alias WHERE address = '%s'\n");
    assert_eq!(found(&map, "joe@example.com").as_deref(), Some("joe@mailhost.example.com"));

    // Rebuilt elsewhere and renamed into place: the new content is seen.
    let new = db.dir.path().join("new.sqlite");
    let conn = rusqlite::Connection::open(&new).unwrap();
    conn.execute_batch(
        "CREATE TABLE alias (address TEXT, goto TEXT); INSERT INTO alias VALUES ('joe@example.com', 'new@x');",
    )
    .unwrap();
    drop(conn);
    fs::rename(&new, &path).unwrap();
    assert_eq!(found(&map, "joe@example.com").as_deref(), Some("new@x"));

    fs::remove_file(&path).unwrap();
    let why = assert_unavailable(&map, "joe@example.com");
    assert!(why.contains("mail.sqlite"), "{why}");
    // Read-only: a statement that writes fails, and is not "not found".
    let db = Db::sqlite();
    let writer = db.open("writer", "query = UPDATE alias SET goto = 'x' WHERE address = '%s' RETURNING goto\n");
    assert!(assert_unavailable(&writer, "joe@example.com").contains("readonly"));
    let deleter = db.open("deleter", "query = DELETE FROM alias WHERE address = '%s'\n");
    assert_unavailable(&deleter, "joe@example.com");
}

#[test]
fn cf_file_errors_name_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.cf");
    write_private(&path, "dbpath = /x\n# comment\nthis line has no equals sign\n");
    match maps::open(&format!("sqlite:{}", path.display())) {
        Err(MapError::Syntax { file, line, .. }) => {
            assert_eq!(file, path.display().to_string());
            assert_eq!(line, 3);
        }
        other => panic!("{other:?}"),
    }
    let path = dir.path().join("badquery.cf");
    write_private(&path, "dbpath = /x\n\nquery = SELECT v FROM t WHERE k = '%x'\n");
    match maps::open(&format!("sqlite:{}", path.display())) {
        Err(e @ MapError::Syntax { line: 3, .. }) => assert!(e.to_string().contains("%x"), "{e}"),
        other => panic!("{other:?}"),
    }
    let path = dir.path().join("noquery.cf");
    write_private(&path, "dbpath = /x\n");
    assert!(matches!(maps::open(&format!("sqlite:{}", path.display())), Err(MapError::Syntax { .. })));
    // A missing file: the table cannot be opened now.
    assert!(matches!(
        maps::open(&format!("mysql:{}", dir.path().join("absent.cf").display())),
        Err(MapError::Unavailable { .. })
    ));
    // Settings in main.cf are not supported: the name must be a file.
    assert!(matches!(maps::open("pgsql:pgsqlname"), Err(MapError::Unavailable { .. })));
}

#[test]
fn a_password_in_a_readable_cf_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("open.cf");
    fs::write(
        &path,
        "hosts = 127.0.0.1\nuser = u\npassword = secret\ndbname = mail\nquery = SELECT 1 WHERE 'a' = '%s'\n",
    )
    .unwrap();
    for mode in [0o644, 0o640, 0o604] {
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        match maps::open(&format!("mysql:{}", path.display())) {
            Err(e @ MapError::Unavailable { .. }) => {
                let text = e.to_string();
                assert!(text.contains("password") && text.contains("readable"), "{text}");
                assert!(!text.contains("secret"), "{text}");
            }
            other => panic!("mode {mode:o}: {other:?}"),
        }
    }
    // Private: accepted (nothing connects before the first lookup).
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    let map = maps::open(&format!("mysql:{}", path.display())).unwrap();
    assert!(!format!("{map:?}").contains("secret"));
    // Without a password the mode does not matter.
    let path = dir.path().join("nopw.cf");
    fs::write(&path, "dbpath = /nonexistent.sqlite\nquery = SELECT 1 WHERE 'a' = '%s'\n").unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    assert!(maps::open(&format!("sqlite:{}", path.display())).is_ok());
}

#[test]
fn unsupported_tls_settings_are_refused_rather_than_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tls.cf");
    write_private(
        &path,
        "hosts = db\ndbname = mail\nquery = SELECT 1 WHERE 'a' = '%s'\ntls_CAfile = /etc/ssl/ca.pem\n",
    );
    assert!(matches!(maps::open(&format!("mysql:{}", path.display())), Err(MapError::Syntax { line: 4, .. })));
}

#[test]
fn hung_servers_time_out() {
    check_hung_server("mysql");
    check_hung_server("pgsql");
}

#[test]
fn map_query_command_reads_sql_tables() {
    let db = Db::sqlite();
    let spec = db.spec("cli", "query = SELECT goto FROM alias WHERE address = '%s' ORDER BY goto\n");
    let config = db.dir.path().join("tidemail.toml");
    fs::write(&config, "").unwrap();
    let query = |key: &str| {
        Command::new(env!("CARGO_BIN_EXE_tidemail"))
            .arg("-c")
            .arg(&config)
            .args(["map", "query", &spec, key])
            .output()
            .unwrap()
    };
    let out = query("list@example.com");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ann@example.org,bob@example.net,carol@example.com\n");
    assert_eq!(query("nobody@example.com").status.code(), Some(1));
}

// ---------------------------------------------------------------------------------------
// MariaDB

#[test]
fn mysql_expansions_rows_domains_and_legacy_form() {
    let Some(server) = mariadb() else { return };
    check_expansions(&Db::mysql_socket(server));
    // Over TCP too, with host:port and inet:host:port.
    check_expansions(&Db::server("mysql", &format!("127.0.0.1:{}", server.port), USER));
}

#[test]
fn mysql_hostile_keys_stay_parameters() {
    let Some(server) = mariadb() else { return };
    check_hostile_keys(&Db::mysql_socket(server));
    let tables = server.mysql_admin("SELECT COUNT(*) FROM mail.alias;");
    assert_eq!(tables.trim(), "11");
}

#[test]
fn mysql_server_down_failover_and_bad_password() {
    let Some(server) = mariadb() else { return };
    let tcp = Db::server("mysql", &format!("inet:127.0.0.1:{}", server.port), USER);
    check_server_down(&tcp);
    check_failover(&tcp, &format!("inet:127.0.0.1:{}", server.port));
    check_wrong_password(&tcp);
}

#[test]
fn mysql_broken_connection_is_reopened_once() {
    let Some(server) = mariadb() else { return };
    let db = Db::server("mysql", &format!("unix:{}", server.socket.display()), KILL_USER);
    let map = db.open("reconnect", "query = SELECT goto FROM alias WHERE address = '%s'\n");
    for round in 0..3 {
        assert_eq!(found(&map, "joe@example.com").as_deref(), Some("joe@mailhost.example.com"), "round {round}");
        server.mysql_admin(&format!("KILL CONNECTION USER '{KILL_USER}';"));
        let gone = wait_until(Duration::from_secs(10), || {
            server
                .mysql_admin(&format!(
                    "SELECT COUNT(*) FROM information_schema.processlist WHERE user = '{KILL_USER}';"
                ))
                .trim()
                == "0"
        });
        assert!(gone, "the connection was not killed");
    }
    assert_eq!(found(&map, "joe@example.com").as_deref(), Some("joe@mailhost.example.com"));
}

#[test]
fn mysql_map_query_command() {
    let Some(server) = mariadb() else { return };
    let db = Db::mysql_socket(server);
    let spec = db.spec("cli", "query = SELECT goto FROM alias WHERE address = '%s' ORDER BY goto\n");
    let config = db.dir.path().join("tidemail.toml");
    fs::write(&config, "").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tidemail"))
        .arg("-c")
        .arg(&config)
        .args(["map", "query", &spec, "joe@example.com"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "joe@mailhost.example.com\n");
    // A server that is down: EX_TEMPFAIL, as for any table that cannot be read now.
    let down = Db { connect: set_hosts(&db.connect, &format!("inet:127.0.0.1:{}", free_port())), ..db.clone_kind() };
    let spec = down.spec("clidown", "query = SELECT goto FROM alias WHERE address = '%s'\n");
    let out = Command::new(env!("CARGO_BIN_EXE_tidemail"))
        .arg("-c")
        .arg(&config)
        .args(["map", "query", &spec, "joe@example.com"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(75), "{out:?}");
}

// ---------------------------------------------------------------------------------------
// PostgreSQL

#[test]
fn pgsql_expansions_rows_domains_and_legacy_form() {
    let Some(server) = postgres() else { return };
    check_expansions(&Db::pgsql_socket(server));
    // Over TCP (password authentication), and through a connection URI.
    check_expansions(&Db::server("pgsql", &format!("inet:127.0.0.1:{}", server.port), USER));
    check_expansions(&Db::server("pgsql", &format!("postgresql://{USER}@127.0.0.1:{}/mail", server.port), USER));
}

#[test]
fn pgsql_hostile_keys_stay_parameters() {
    let Some(server) = postgres() else { return };
    check_hostile_keys(&Db::pgsql_socket(server));
    assert_eq!(server.psql_admin("SELECT COUNT(*) FROM alias;").trim(), "11");
}

#[test]
fn pgsql_server_down_failover_and_bad_password() {
    let Some(server) = postgres() else { return };
    let tcp = Db::server("pgsql", &format!("127.0.0.1:{}", server.port), USER);
    check_server_down(&tcp);
    check_failover(&tcp, &format!("127.0.0.1:{}", server.port));
    check_wrong_password(&tcp);
}

#[test]
fn pgsql_broken_connection_is_reopened_once() {
    let Some(server) = postgres() else { return };
    let db = Db::server("pgsql", &format!("unix:{}:{}", server.socket.display(), server.port), KILL_USER);
    let map = db.open("reconnect", "query = SELECT goto FROM alias WHERE address = '%s'\n");
    for round in 0..3 {
        assert_eq!(found(&map, "joe@example.com").as_deref(), Some("joe@mailhost.example.com"), "round {round}");
        let killed = server.psql_admin(&format!(
            "WITH victim AS MATERIALIZED (SELECT pid FROM pg_stat_activity WHERE usename = '{KILL_USER}') \
             SELECT COUNT(*) FROM victim WHERE pg_terminate_backend(pid, 10000);"
        ));
        assert_eq!(killed.trim(), "1", "round {round}");
    }
    assert_eq!(found(&map, "joe@example.com").as_deref(), Some("joe@mailhost.example.com"));
}

#[test]
fn pgsql_parameters_take_the_column_type_like_a_quoted_literal() {
    let Some(server) = postgres() else { return };
    let db = Db::pgsql_socket(server);
    // '%s' compared with an integer column: the server reads the text as a number.
    let by_number = db.open("bynumber", "query = SELECT address FROM quota WHERE bytes = '%s'\n");
    assert_eq!(found(&by_number, "1048576").as_deref(), Some("joe@example.com"));
    // Text that is not a number is an error from the server, as the literal would be.
    assert_unavailable(&by_number, "lots");
    // A column type without a text form here: a clear error.
    let typed = db.open("typed", "query = SELECT CAST(bytes AS numeric) FROM quota WHERE address = '%s'\n");
    assert!(assert_unavailable(&typed, "joe@example.com").contains("::text"));
}

// ---------------------------------------------------------------------------------------
// All kinds

/// The daemon looks tables up from threads that run tokio tasks: a lookup there must block
/// that thread for its answer, never panic for blocking inside a runtime.
#[test]
fn lookups_work_from_inside_a_tokio_runtime() {
    let mut dbs = vec![Db::sqlite()];
    dbs.extend(mariadb().map(Db::mysql_socket));
    dbs.extend(postgres().map(Db::pgsql_socket));
    let maps: Vec<Arc<dyn Map>> =
        dbs.iter().map(|db| db.open("inruntime", "query = SELECT goto FROM alias WHERE address = '%s'\n")).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        for map in &maps {
            let task = {
                let map = map.clone();
                tokio::spawn(async move { map.lookup("joe@example.com") })
            };
            let answer = task.await.expect("the lookup task panicked");
            assert_eq!(answer.unwrap().as_deref(), Some("joe@mailhost.example.com"), "{}", map.spec());
        }
    });
}
