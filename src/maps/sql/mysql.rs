//! `mysql:` tables (MySQL and MariaDB), through the synchronous `mysql` crate: server-side
//! prepared statements, so the key travels as a parameter, never in the statement text.

use std::sync::Mutex;

use mysql::consts::ColumnType;
use mysql::prelude::Queryable;
use mysql::{Conn, OptsBuilder, Params, Value};

use super::cf::CfFile;
use super::{Backend, Cells, Connector, Endpoint, Failure, Link, Timing, login_name, parse_hosts};
use crate::maps::MapError;

/// Where libmysqlclient (and so Postfix) goes for the host `localhost`.
const DEFAULT_SOCKET: &str = "/run/mysqld/mysqld.sock";
const DEFAULT_PORT: u16 = 3306;

pub struct Mysql {
    hosts: Vec<(String, Endpoint)>,
    user: Option<String>,
    password: Option<String>,
    dbname: String,
    timing: Timing,
    link: Mutex<Link<Conn>>,
}

impl std::fmt::Debug for Mysql {
    // No password in debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mysql").field("hosts", &self.hosts).field("dbname", &self.dbname).finish_non_exhaustive()
    }
}

impl Mysql {
    pub fn new(cf: &CfFile, timing: Timing) -> Result<Mysql, MapError> {
        for name in cf.names() {
            let set = cf.get(name).is_some_and(|v| !v.is_empty());
            if set && (name == "option_file" || name == "option_group") {
                return Err(cf.error(name, "MySQL option files are not supported: set hosts, user, password here"));
            }
            // "tls_verify_cert = no" alone asks for nothing; any other tls_ setting asks for TLS.
            let wants_tls = name != "tls_verify_cert" || cf.boolean(name, false)?;
            if set && name.starts_with("tls_") && wants_tls {
                return Err(cf.error(
                    name,
                    "TLS to the MySQL server is not supported: use a Unix socket, or a server on a trusted network",
                ));
            }
        }
        let hosts = parse_hosts(cf, false)?
            .into_iter()
            .map(|(name, endpoint)| match endpoint {
                // The MySQL way: "localhost" is the local Unix socket.
                Endpoint::Tcp { host, .. } if host.eq_ignore_ascii_case("localhost") => {
                    (name, Endpoint::Unix { path: DEFAULT_SOCKET.to_string(), port: None })
                }
                other => (name, other),
            })
            .collect::<Vec<_>>();
        let hosts_len = hosts.len();
        Ok(Mysql {
            hosts,
            // No user: the login name, as libmysqlclient does.
            user: Some(cf.get("user").filter(|u| !u.is_empty()).map_or_else(login_name, str::to_string)),
            password: cf.get("password").filter(|p| !p.is_empty()).map(str::to_string),
            dbname: cf.required("dbname")?.to_string(),
            timing,
            link: Mutex::new(Link::new(hosts_len)),
        })
    }
}

impl Backend for Mysql {
    fn run(&self, sql: &str, params: &[String]) -> Result<Cells, String> {
        let mut link = self.link.lock().unwrap_or_else(|p| p.into_inner());
        link.run(self, &self.timing, sql, params)
    }
}

impl Connector for Mysql {
    type Conn = Conn;

    fn hosts(&self) -> usize {
        self.hosts.len()
    }

    fn is_local(&self, i: usize) -> bool {
        matches!(self.hosts[i].1, Endpoint::Unix { .. })
    }

    fn name(&self, i: usize) -> String {
        format!("mysql server {}", self.hosts[i].0)
    }

    fn connect(&self, i: usize) -> Result<Conn, String> {
        let mut opts = OptsBuilder::new()
            .user(self.user.clone())
            .pass(self.password.clone())
            .db_name(Some(self.dbname.clone()))
            // Go where the .cf file says, not to a socket the server advertises.
            .prefer_socket(false)
            .tcp_connect_timeout(Some(self.timing.connect))
            .read_timeout(Some(self.timing.query))
            .write_timeout(Some(self.timing.query))
            .tcp_user_timeout_ms(u32::try_from(self.timing.query.as_millis()).ok())
            .stmt_cache_size(Some(8));
        opts = match &self.hosts[i].1 {
            Endpoint::Unix { path, .. } => opts.socket(Some(path.clone())),
            Endpoint::Tcp { host, port } => {
                opts.ip_or_hostname(Some(host.clone())).tcp_port(port.unwrap_or(DEFAULT_PORT))
            }
            Endpoint::Uri(uri) => return Err(format!("{uri}: not a MySQL host")),
        };
        Conn::new(opts).map_err(|e| e.to_string())
    }

    fn query(&self, conn: &mut Conn, sql: &str, params: &[String]) -> Result<Cells, Failure> {
        let values: Vec<Value> = params.iter().map(|p| Value::Bytes(p.as_bytes().to_vec())).collect();
        let params = if values.is_empty() { Params::Empty } else { Params::Positional(values) };
        match collect(conn, sql, params) {
            Ok(cells) => Ok(cells),
            // The connection itself failed.
            Err(e @ (mysql::Error::IoError(_) | mysql::Error::CodecError(_))) => Err(Failure::Link(e.to_string())),
            // The server said no; or did it die saying so (a killed connection)?
            Err(e) => match conn.ping() {
                Ok(()) => Err(Failure::Server(e.to_string())),
                Err(_) => Err(Failure::Link(e.to_string())),
            },
        }
    }
}

/// Run the statement; collect every column of every row of the first result set.
fn collect(conn: &mut Conn, sql: &str, params: Params) -> mysql::Result<Cells> {
    let mut result = conn.exec_iter(sql, params)?;
    let mut cells = Vec::new();
    let mut has_columns = false;
    if let Some(set) = result.iter() {
        has_columns = !set.columns().as_ref().is_empty();
        for row in set {
            let row = row?;
            for i in 0..row.len() {
                let kind = row.columns_ref()[i].column_type();
                cells.push(row.as_ref(i).and_then(|v| text(v, kind)));
            }
        }
    }
    // Further result sets (a stored procedure's status) are read and dropped with `result`.
    drop(result);
    Ok(has_columns.then_some(cells))
}

/// A value of the binary protocol as the text protocol would show it.
fn text(value: &Value, kind: ColumnType) -> Option<String> {
    Some(match *value {
        Value::NULL => return None,
        Value::Bytes(ref bytes) => String::from_utf8_lossy(bytes).into_owned(),
        Value::Int(n) => n.to_string(),
        Value::UInt(n) => n.to_string(),
        Value::Float(x) => x.to_string(),
        Value::Double(x) => x.to_string(),
        Value::Date(y, mo, d, h, mi, s, us) => {
            let date = format!("{y:04}-{mo:02}-{d:02}");
            match kind {
                ColumnType::MYSQL_TYPE_DATE | ColumnType::MYSQL_TYPE_NEWDATE => date,
                _ if us > 0 => format!("{date} {h:02}:{mi:02}:{s:02}.{us:06}"),
                _ => format!("{date} {h:02}:{mi:02}:{s:02}"),
            }
        }
        Value::Time(negative, days, h, mi, s, us) => {
            let sign = if negative { "-" } else { "" };
            let hours = u64::from(days) * 24 + u64::from(h);
            if us > 0 {
                format!("{sign}{hours:02}:{mi:02}:{s:02}.{us:06}")
            } else {
                format!("{sign}{hours:02}:{mi:02}:{s:02}")
            }
        }
    })
}
