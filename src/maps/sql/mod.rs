//! `sqlite:`, `mysql:` and `pgsql:` tables, each described by a `.cf` file with Postfix's
//! parameters (sqlite_table(5), mysql_table(5), pgsql_table(5)):
//!
//! ```text
//! # /etc/tidemail/virtual_alias.cf (mode 600: it holds a password)
//! hosts = unix:/run/mysqld/mysqld.sock inet:db2.example.com:3306
//! user = mail
//! password = ...
//! dbname = mail
//! query = SELECT goto FROM alias WHERE address = '%s' AND active = 1
//! ```
//!
//! What is the same as in Postfix:
//! - `query` with `%s`, `%u`, `%d`, `%1`...`%9`, `%%` (and `%S %U %D`); `result_format`
//!   (default `%s`); `domain` (only `user@domain` keys in these domains are asked);
//!   `expansion_limit` (more result values than this: a temporary error); the old
//!   `table`/`select_field`/`where_field`/`additional_conditions` form (and pgsql's
//!   `select_function`); `require_result_set`; `idle_interval` and `retry_interval` (60s each).
//! - Every column of every row is one value; the values are joined with "," as Postfix
//!   does. NULLs and empty values are skipped. No rows, or only skipped values: not found.
//! - The key is looked up exactly as given, no case folding here; whether `Joe` matches
//!   `joe` is the column's collation's business. (Postfix folds keys to lower case when the
//!   caller asks, DICT_FLAG_FOLD_FIX, which most of its table users do: callers that want
//!   that fold before the lookup.)
//! - sqlite: `dbpath`, opened read-only; `query_timeout` is how long to wait for a writer's
//!   lock. A file replaced since it was opened (rebuilt and renamed) is reopened.
//! - `hosts` (mysql, pgsql): `host`, `host:port`, `inet:host:port`, `unix:/path`; several
//!   hosts are tried in turn, Unix sockets first; a host that fails is left alone for
//!   `retry_interval`. For mysql a plain `localhost` means the local Unix socket
//!   (`/run/mysqld/mysqld.sock`), as with libmysqlclient.
//!
//! What differs, on purpose:
//! - The key never becomes SQL text: every expansion is a bound parameter (see `query`).
//! - A `.cf` file with a password must be private (no group or other read permission).
//! - `connect_timeout` (default 5s) and `query_timeout` (default 10s) bound every wait, so a
//!   dead server makes a lookup fail in seconds. A connection that broke since the last
//!   lookup is reopened and the query tried once more; then the table is Unavailable.
//! - TLS to MySQL and option files are not supported: such settings are refused, rather than
//!   sending the password in clear or connecting somewhere else than configured.
//! - Settings in main.cf (`mysql:name` without a path) are not supported: name a file.

mod cf;
mod mysql;
mod pgsql;
mod query;
mod sqlite;

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use self::cf::CfFile;
use self::query::{Address, Dialect, Needs, Query, ResultFormat};
use super::{Map, MapError};

/// Postfix joins the values of several rows and columns with a bare comma.
const SEPARATOR: &str = ",";

/// The values a query returned: every column of every row, in order; `None` for NULL.
/// `None` as a whole: the statement produced no result set (not a SELECT).
type Cells = Option<Vec<Option<String>>>;

/// How long to wait, and how long to stay away from a failed server.
#[derive(Debug, Clone, Copy)]
struct Timing {
    connect: Duration,
    query: Duration,
    idle: Duration,
    retry: Duration,
}

impl Timing {
    fn from_cf(cf: &CfFile) -> Result<Timing, MapError> {
        let timing = Timing {
            connect: cf.seconds("connect_timeout", Duration::from_secs(5))?,
            query: cf.seconds("query_timeout", Duration::from_secs(10))?,
            idle: cf.seconds("idle_interval", Duration::from_secs(60))?,
            retry: cf.seconds("retry_interval", Duration::from_secs(60))?,
        };
        for (name, value) in [("connect_timeout", timing.connect), ("query_timeout", timing.query)] {
            if value.is_zero() {
                return Err(cf.error(name, "must be at least 1 second"));
            }
        }
        Ok(timing)
    }
}

/// A database engine: runs the table's statement with the key's values bound.
trait Backend: Send + Sync + fmt::Debug {
    fn run(&self, sql: &str, params: &[String]) -> Result<Cells, String>;
}

/// Why a query failed.
#[derive(Debug)]
enum Failure {
    /// The server answered with an error (bad SQL, missing table, no permission): the
    /// connection itself is fine and trying again would not help.
    Server(String),
    /// The connection is unusable (closed by the server, timed out, protocol error).
    Link(String),
}

impl Failure {
    fn into_reason(self) -> String {
        match self {
            Failure::Server(why) | Failure::Link(why) => why,
        }
    }
}

/// How a networked backend reaches its servers.
trait Connector {
    type Conn;
    fn hosts(&self) -> usize;
    /// Whether host `i` is a Unix socket (tried before TCP hosts, as Postfix does).
    fn is_local(&self, i: usize) -> bool;
    /// Host `i` as written in the `.cf` file, for messages.
    fn name(&self, i: usize) -> String;
    fn connect(&self, i: usize) -> Result<Self::Conn, String>;
    fn query(&self, conn: &mut Self::Conn, sql: &str, params: &[String]) -> Result<Cells, Failure>;
}

/// The one connection of a networked table, reused from lookup to lookup, and the hosts that
/// recently failed.
struct Link<C> {
    conn: Option<Open<C>>,
    down_until: Vec<Option<Instant>>,
}

struct Open<C> {
    conn: C,
    host: usize,
    used: Instant,
}

impl<C> Link<C> {
    fn new(hosts: usize) -> Link<C> {
        Link { conn: None, down_until: vec![None; hosts] }
    }

    /// Run one query: on the open connection if there is one (reopened and tried once more
    /// if it broke meanwhile), else on a new one.
    fn run<K: Connector<Conn = C>>(
        &mut self,
        k: &K,
        timing: &Timing,
        sql: &str,
        params: &[String],
    ) -> Result<Cells, String> {
        if self.conn.as_ref().is_some_and(|open| open.used.elapsed() > timing.idle) {
            self.conn = None;
        }
        let reused = self.conn.is_some();
        if !reused {
            self.connect(k, timing)?;
        }
        match self.query(k, timing, sql, params, !reused) {
            // The server may have closed an idle connection, or restarted: once more, on a
            // new connection.
            Err(Failure::Link(_)) if reused => {
                self.connect(k, timing)?;
                self.query(k, timing, sql, params, true).map_err(Failure::into_reason)
            }
            other => other.map_err(Failure::into_reason),
        }
    }

    /// Query on the open connection. A connection that breaks is dropped; when it was new,
    /// its host is also left alone for `retry_interval`.
    fn query<K: Connector<Conn = C>>(
        &mut self,
        k: &K,
        timing: &Timing,
        sql: &str,
        params: &[String],
        fresh: bool,
    ) -> Result<Cells, Failure> {
        let open = self.conn.as_mut().expect("connected");
        let host = open.host;
        match k.query(&mut open.conn, sql, params) {
            Ok(cells) => {
                open.used = Instant::now();
                Ok(cells)
            }
            Err(Failure::Server(why)) => {
                open.used = Instant::now();
                Err(Failure::Server(format!("{}: {why}", k.name(host))))
            }
            Err(Failure::Link(why)) => {
                self.conn = None;
                if fresh {
                    self.down_until[host] = Some(Instant::now() + timing.retry);
                }
                Err(Failure::Link(format!("{}: {why}", k.name(host))))
            }
        }
    }

    /// Connect to the first host that works: Unix sockets first, then TCP, each in the order
    /// of the `.cf` file, skipping hosts that failed less than `retry_interval` ago.
    fn connect<K: Connector<Conn = C>>(&mut self, k: &K, timing: &Timing) -> Result<(), String> {
        let now = Instant::now();
        let mut order: Vec<usize> = (0..k.hosts()).filter(|&i| k.is_local(i)).collect();
        order.extend((0..k.hosts()).filter(|&i| !k.is_local(i)));
        let mut errors = Vec::new();
        for i in order {
            if let Some(until) = self.down_until[i]
                && until > now
            {
                let wait = until - now;
                errors.push(format!("{}: failed recently, next try in {}s", k.name(i), wait.as_secs() + 1));
                continue;
            }
            match k.connect(i) {
                Ok(conn) => {
                    self.down_until[i] = None;
                    self.conn = Some(Open { conn, host: i, used: now });
                    return Ok(());
                }
                Err(why) => {
                    self.down_until[i] = Some(Instant::now() + timing.retry);
                    errors.push(format!("{}: {why}", k.name(i)));
                }
            }
        }
        Err(format!("cannot connect: {}", errors.join("; ")))
    }
}

/// One `hosts` entry of a mysql or pgsql table.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Endpoint {
    /// `unix:/path`: a socket (mysql) or a socket or its directory (pgsql); optional `:port`.
    Unix { path: String, port: Option<u16> },
    /// `host`, `host:port`, `inet:host:port`, `[v6addr]:port`.
    Tcp { host: String, port: Option<u16> },
    /// `postgresql://...` (pgsql only): a libpq connection URI.
    Uri(String),
}

/// Parse the `hosts` parameter; an empty one means `localhost`.
fn parse_hosts(cf: &CfFile, allow_uri: bool) -> Result<Vec<(String, Endpoint)>, MapError> {
    let text = cf.get("hosts").unwrap_or("");
    let mut hosts = Vec::new();
    for item in text.split(|c: char| c == ',' || c.is_whitespace()).filter(|s| !s.is_empty()) {
        let bad = |why: &str| cf.error("hosts", format!("\"{item}\": {why}"));
        let endpoint = if allow_uri && (item.starts_with("postgresql://") || item.starts_with("postgres://")) {
            Endpoint::Uri(item.to_string())
        } else if let Some(rest) = item.strip_prefix("unix:") {
            let (path, port) = split_port(rest).map_err(|e| bad(&e))?;
            if !path.starts_with('/') {
                return Err(bad("a Unix socket must be an absolute path"));
            }
            Endpoint::Unix { path: path.to_string(), port }
        } else {
            let rest = item.strip_prefix("inet:").unwrap_or(item);
            let (host, port) = split_port(rest).map_err(|e| bad(&e))?;
            let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
            if host.is_empty() {
                return Err(bad("no host name"));
            }
            Endpoint::Tcp { host: host.to_string(), port }
        };
        hosts.push((item.to_string(), endpoint));
    }
    if hosts.is_empty() {
        hosts.push(("localhost".to_string(), Endpoint::Tcp { host: "localhost".to_string(), port: None }));
    }
    Ok(hosts)
}

/// Split `name:port` at the last colon when what follows is a port number. A bare IPv6
/// address (several colons, no brackets) has no port.
fn split_port(text: &str) -> Result<(&str, Option<u16>), String> {
    let Some((name, port)) = text.rsplit_once(':') else { return Ok((text, None)) };
    if name.contains(':') && !name.ends_with(']') {
        return Ok((text, None));
    }
    match port.parse::<u16>() {
        Ok(port) if port > 0 => Ok((name, Some(port))),
        _ => Err(format!("bad port \"{port}\"")),
    }
}

/// The client libraries' default user: the name of the effective user.
fn login_name() -> String {
    nix::unistd::User::from_uid(nix::unistd::geteuid()).ok().flatten().map_or_else(|| "nobody".to_string(), |u| u.name)
}

/// The `domain` parameter: only keys `user@domain` whose domain is listed are looked up.
/// Entries are names, `/file` (names read from a file), `type:table` (the domain looked up
/// there) and `!entry` (a match of that entry excludes the domain); the first entry that
/// matches decides, as in Postfix's lists.
#[derive(Debug)]
struct DomainList {
    rules: Vec<(bool, DomainRule)>,
}

#[derive(Debug)]
enum DomainRule {
    Name(String),
    Table(Arc<dyn Map>),
}

impl DomainList {
    fn parse(cf: &CfFile) -> Result<Option<DomainList>, MapError> {
        let Some(text) = cf.get("domain").filter(|t| !t.is_empty()) else { return Ok(None) };
        let mut rules = Vec::new();
        for item in text.split(|c: char| c == ',' || c.is_whitespace()).filter(|s| !s.is_empty()) {
            let (negate, entry) = match item.strip_prefix('!') {
                Some(rest) => (true, rest),
                None => (false, item),
            };
            if entry.starts_with('/') {
                let content =
                    std::fs::read_to_string(entry).map_err(|e| cf.error("domain", format!("{entry}: {e}")))?;
                for line in content.lines().map(|l| l.split('#').next().unwrap_or("")) {
                    for name in line.split(|c: char| c == ',' || c.is_whitespace()).filter(|s| !s.is_empty()) {
                        rules.push((negate, DomainRule::Name(name.to_ascii_lowercase())));
                    }
                }
            } else if entry.contains(':') {
                let map = super::open(entry).map_err(|e| cf.error("domain", e))?;
                rules.push((negate, DomainRule::Table(map)));
            } else {
                rules.push((negate, DomainRule::Name(entry.to_ascii_lowercase())));
            }
        }
        Ok(Some(DomainList { rules }))
    }

    /// Whether `key` may be looked up.
    fn admits(&self, key: &Address) -> Result<bool, MapError> {
        if !key.has_local_part() {
            return Ok(false);
        }
        let Some(domain) = key.domain() else { return Ok(false) };
        for (negate, rule) in &self.rules {
            let hit = match rule {
                DomainRule::Name(name) => name.eq_ignore_ascii_case(domain),
                DomainRule::Table(map) => map.lookup(domain)?.is_some(),
            };
            if hit {
                return Ok(!negate);
            }
        }
        Ok(false)
    }
}

/// An SQL table.
struct SqlTable {
    spec: String,
    query: Query,
    result: ResultFormat,
    /// What a key must have for the query and the result format.
    needs: Needs,
    domains: Option<DomainList>,
    expansion_limit: usize,
    require_result_set: bool,
    backend: Box<dyn Backend>,
}

impl fmt::Debug for SqlTable {
    // The backend holds the password: show the name and the statement only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlTable").field("spec", &self.spec).field("sql", &self.query.sql).finish_non_exhaustive()
    }
}

impl Map for SqlTable {
    fn spec(&self) -> &str {
        &self.spec
    }

    fn lookup(&self, key: &str) -> Result<Option<String>, MapError> {
        // Postfix keys are C strings: an empty key or one with a NUL is never in a table.
        if key.is_empty() || key.contains('\0') {
            return Ok(None);
        }
        let address = Address::new(key);
        if let Some(domains) = &self.domains
            && !domains.admits(&address)?
        {
            return Ok(None);
        }
        if !address.satisfies(self.needs) {
            return Ok(None);
        }
        let params = self.query.bind(&address);
        let cells = self.backend.run(&self.query.sql, &params).map_err(|why| MapError::unavailable(&self.spec, why))?;
        let Some(cells) = cells else {
            if self.require_result_set {
                return Err(MapError::unavailable(&self.spec, "the query returned no result set (is it a SELECT?)"));
            }
            return Ok(None);
        };
        let mut answer = String::new();
        let mut count = 0;
        for value in cells.iter().flatten() {
            let Some(text) = self.result.expand(value, &address) else { continue };
            count += 1;
            if self.expansion_limit > 0 && count > self.expansion_limit {
                return Err(MapError::unavailable(
                    &self.spec,
                    format!("more than expansion_limit = {} values for key \"{key}\"", self.expansion_limit),
                ));
            }
            if !answer.is_empty() {
                answer.push_str(SEPARATOR);
            }
            answer.push_str(&text);
        }
        Ok((!answer.is_empty()).then_some(answer))
    }
}

/// Parameters every SQL table understands.
const COMMON: &[&str] = &[
    "query",
    "result_format",
    "domain",
    "expansion_limit",
    "table",
    "select_field",
    "where_field",
    "additional_conditions",
    "require_result_set",
];
const NETWORK: &[&str] =
    &["hosts", "user", "password", "dbname", "idle_interval", "retry_interval", "connect_timeout", "query_timeout"];

/// Open `kind:name` (kind is sqlite, mysql or pgsql; name the `.cf` file).
pub fn open(spec: &str, kind: &str, name: &str) -> Result<Arc<dyn Map>, MapError> {
    let dialect = match kind {
        "sqlite" => Dialect::Sqlite,
        "mysql" => Dialect::Mysql,
        "pgsql" => Dialect::Pgsql,
        other => return Err(MapError::UnknownType(other.to_string())),
    };
    if !(name.starts_with('/') || name.starts_with('.')) {
        return Err(MapError::unavailable(
            spec,
            format!("{kind} settings are read from a file: name it with a path ({kind}:/etc/tidemail/{name}.cf)"),
        ));
    }
    let cf = CfFile::read(Path::new(name), spec)?;
    let own: &[&str] = match dialect {
        Dialect::Sqlite => &["dbpath", "query_timeout"],
        Dialect::Mysql => &["charset", "option_file", "option_group", "tls_"],
        Dialect::Pgsql => &["encoding", "select_function"],
    };
    for param in cf.names() {
        let known = COMMON.contains(&param)
            || own.iter().any(|p| *p == param || (p.ends_with('_') && param.starts_with(p)))
            || (dialect != Dialect::Sqlite && NETWORK.contains(&param));
        if !known {
            let candidates = COMMON.iter().chain(own).chain(if dialect == Dialect::Sqlite { &[][..] } else { NETWORK });
            let close = candidates.filter(|c| !c.ends_with('_')).find(|c| strsim::levenshtein(c, param) <= 2);
            let hint = close.map(|c| format!(" (did you mean \"{c}\"?)")).unwrap_or_default();
            crate::mail_warning!(
                "dict",
                "{}, line {}: unknown parameter \"{param}\" ignored{hint}",
                cf.file,
                cf.line(param)
            );
        }
    }

    let (template, template_param) = query_template(&cf, dialect)?;
    let query = Query::compile(&template, dialect).map_err(|why| cf.error(template_param, why))?;
    let result =
        ResultFormat::parse(cf.get("result_format").unwrap_or("%s")).map_err(|why| cf.error("result_format", why))?;
    let needs = query.needs.union(result.key_needs);
    let backend: Box<dyn Backend> = match dialect {
        Dialect::Sqlite => Box::new(sqlite::Sqlite::new(&cf)?),
        Dialect::Mysql => Box::new(mysql::Mysql::new(&cf, Timing::from_cf(&cf)?)?),
        Dialect::Pgsql => Box::new(pgsql::Pgsql::new(&cf, spec, Timing::from_cf(&cf)?)?),
    };
    Ok(Arc::new(SqlTable {
        spec: spec.to_string(),
        query,
        result,
        needs,
        domains: DomainList::parse(&cf)?,
        expansion_limit: cf.count("expansion_limit", 0)?,
        require_result_set: cf.boolean("require_result_set", true)?,
        backend,
    }))
}

/// The query template, and the parameter to blame for errors in it: `query`, or the one
/// built from the old-style parameters as Postfix builds it.
fn query_template(cf: &CfFile, dialect: Dialect) -> Result<(String, &'static str), MapError> {
    if let Some(query) = cf.get("query") {
        return Ok((query.to_string(), "query"));
    }
    if dialect == Dialect::Pgsql
        && let Some(function) = cf.get("select_function")
    {
        return Ok((format!("SELECT {function}('%s')"), "select_function"));
    }
    if ["table", "select_field", "where_field"].iter().all(|p| cf.get(p).is_none()) {
        return Err(MapError::Syntax {
            file: cf.file.clone(),
            line: cf.line("query"),
            reason: "no \"query\" (nor the older table, select_field and where_field)".into(),
        });
    }
    let table = cf.required("table")?;
    let select = cf.required("select_field")?;
    let column = cf.required("where_field")?;
    let more = cf.get("additional_conditions").unwrap_or("");
    let blame = if more.is_empty() { "where_field" } else { "additional_conditions" };
    Ok((format!("SELECT {select} FROM {table} WHERE {column}='%s' {more}").trim_end().to_string(), blame))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cf(text: &str) -> CfFile {
        CfFile::parse("/t.cf", text).unwrap()
    }

    #[test]
    fn hosts_are_parsed_like_postfix() {
        let hosts = parse_hosts(
            &cf("hosts = db1, db2:3307 inet:10.0.0.1:5433 unix:/run/mysqld/mysqld.sock [::1]:3306 ::1\n"),
            false,
        )
        .unwrap();
        let endpoints: Vec<Endpoint> = hosts.into_iter().map(|(_, e)| e).collect();
        assert_eq!(
            endpoints,
            vec![
                Endpoint::Tcp { host: "db1".into(), port: None },
                Endpoint::Tcp { host: "db2".into(), port: Some(3307) },
                Endpoint::Tcp { host: "10.0.0.1".into(), port: Some(5433) },
                Endpoint::Unix { path: "/run/mysqld/mysqld.sock".into(), port: None },
                Endpoint::Tcp { host: "::1".into(), port: Some(3306) },
                Endpoint::Tcp { host: "::1".into(), port: None },
            ]
        );
        assert_eq!(parse_hosts(&cf("user = x\n"), false).unwrap()[0].0, "localhost");
        assert!(parse_hosts(&cf("hosts = db:port\n"), false).is_err());
        assert!(parse_hosts(&cf("hosts = unix:relative\n"), false).is_err());
        let uri = parse_hosts(&cf("hosts = postgresql://u@db/mail\n"), true).unwrap();
        assert_eq!(uri[0].1, Endpoint::Uri("postgresql://u@db/mail".into()));
    }

    #[test]
    fn legacy_parameters_build_postfix_s_query() {
        let (q, _) = query_template(
            &cf(
                "table = alias\nselect_field = goto\nwhere_field = address\nadditional_conditions = AND active = '1'\n",
            ),
            Dialect::Mysql,
        )
        .unwrap();
        assert_eq!(q, "SELECT goto FROM alias WHERE address='%s' AND active = '1'");
        let (q, _) = query_template(&cf("table = t\nselect_field = v\nwhere_field = k\n"), Dialect::Sqlite).unwrap();
        assert_eq!(q, "SELECT v FROM t WHERE k='%s'");
        assert!(matches!(
            query_template(&cf("table = t\nwhere_field = k\n"), Dialect::Sqlite),
            Err(MapError::Syntax { .. })
        ));
        assert!(query_template(&cf("user = x\n"), Dialect::Sqlite).is_err());
        let (q, _) = query_template(&cf("select_function = lookup\n"), Dialect::Pgsql).unwrap();
        assert_eq!(q, "SELECT lookup('%s')");
    }

    #[test]
    fn domain_lists_decide_by_first_match() {
        let list = DomainList::parse(&cf("domain = !private.example.com, example.com EXAMPLE.net\n")).unwrap().unwrap();
        let admits = |k: &str| list.admits(&Address::new(k)).unwrap();
        assert!(admits("joe@example.com"));
        assert!(admits("joe@Example.NET"));
        assert!(!admits("joe@private.example.com"));
        assert!(!admits("joe@other.org"));
        assert!(!admits("@example.com"));
        assert!(!admits("example.com"));
        assert!(DomainList::parse(&cf("domain =\n")).unwrap().is_none());
    }

    /// A backend that answers from a list, to test what the table does with the answers.
    #[derive(Debug)]
    struct Canned(Vec<Option<&'static str>>);

    impl Backend for Canned {
        fn run(&self, _sql: &str, _params: &[String]) -> Result<Cells, String> {
            Ok(Some(self.0.iter().map(|v| v.map(str::to_string)).collect()))
        }
    }

    fn table(text: &str, answers: Vec<Option<&'static str>>) -> SqlTable {
        let cf = cf(text);
        let (template, _) = query_template(&cf, Dialect::Sqlite).unwrap();
        let query = Query::compile(&template, Dialect::Sqlite).unwrap();
        let result = ResultFormat::parse(cf.get("result_format").unwrap_or("%s")).unwrap();
        SqlTable {
            spec: "sqlite:/t.cf".into(),
            needs: query.needs.union(result.key_needs),
            query,
            result,
            domains: DomainList::parse(&cf).unwrap(),
            expansion_limit: cf.count("expansion_limit", 0).unwrap(),
            require_result_set: true,
            backend: Box::new(Canned(answers)),
        }
    }

    #[test]
    fn values_are_joined_skipped_and_limited_like_postfix() {
        let t = table("query = SELECT v FROM t WHERE k='%s'\n", vec![Some("a@x"), None, Some(""), Some("b@y")]);
        assert_eq!(t.lookup("k").unwrap().as_deref(), Some("a@x,b@y"));
        assert_eq!(t.lookup("").unwrap(), None);
        assert_eq!(t.lookup("a\0b").unwrap(), None);
        let t = table("query = SELECT v FROM t WHERE k='%s'\nexpansion_limit = 1\n", vec![Some("a"), Some("b")]);
        assert!(matches!(t.lookup("k"), Err(MapError::Unavailable { .. })));
        let t = table(
            "query = SELECT v FROM t WHERE k='%s'\nresult_format = smtp:[%d]\n",
            vec![Some("plain"), Some("x@mx.example")],
        );
        assert_eq!(t.lookup("k").unwrap().as_deref(), Some("smtp:[mx.example]"));
        let t = table("query = SELECT v FROM t WHERE k='%s'\n", vec![None, Some("")]);
        assert_eq!(t.lookup("k").unwrap(), None);
    }

    #[test]
    fn keys_that_cannot_fill_the_query_are_not_found_without_asking() {
        #[derive(Debug)]
        struct Never;
        impl Backend for Never {
            fn run(&self, _: &str, _: &[String]) -> Result<Cells, String> {
                Err("the query should not have been made".into())
            }
        }
        let mut t = table("query = SELECT v FROM t WHERE d='%d' AND u='%u'\n", vec![]);
        t.backend = Box::new(Never);
        assert_eq!(t.lookup("no-domain").unwrap(), None);
        assert_eq!(t.lookup("@example.com").unwrap(), None);
        assert!(t.lookup("joe@example.com").is_err());
        let mut t = table("query = SELECT v FROM t WHERE k='%s'\ndomain = example.com\n", vec![]);
        t.backend = Box::new(Never);
        assert_eq!(t.lookup("joe@example.org").unwrap(), None);
        assert_eq!(t.lookup("example.com").unwrap(), None);
    }
}
