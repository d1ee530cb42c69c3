//! `pgsql:` tables, through tokio-postgres.
//!
//! Lookups are synchronous, and may be made from a thread that runs tokio tasks, where
//! blocking on a runtime of our own would panic. So each table has one worker thread that
//! owns a small runtime and the connection; a lookup hands it the query and waits for the
//! answer, at most as long as the timeouts allow.
//!
//! Parameters are sent in text form with their type left to the server, so `'%s'` compares
//! with a column of any type exactly as the quoted literal would in Postfix's query.

use std::error::Error;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use tokio_postgres::types::{Format, IsNull, ToSql, Type, to_sql_checked};
use tokio_postgres::{Client, Config, NoTls, Row, Statement};

use super::cf::CfFile;
use super::{Backend, Cells, Connector, Endpoint, Failure, Link, Timing, login_name, parse_hosts};
use crate::maps::MapError;

const DEFAULT_PORT: u16 = 5432;

/// What the worker needs to connect.
struct Settings {
    hosts: Vec<(String, Endpoint)>,
    user: Option<String>,
    password: Option<String>,
    dbname: Option<String>,
    timing: Timing,
}

struct Job {
    sql: Arc<str>,
    params: Vec<String>,
    reply: mpsc::SyncSender<Result<Cells, String>>,
}

pub struct Pgsql {
    spec: String,
    settings: Arc<Settings>,
    worker: Mutex<Option<mpsc::Sender<Job>>>,
    /// The longest a lookup may take: connecting to every host, then a query, twice over.
    deadline: Duration,
}

impl std::fmt::Debug for Pgsql {
    // No password in debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pgsql").field("spec", &self.spec).finish_non_exhaustive()
    }
}

impl Pgsql {
    pub fn new(cf: &CfFile, spec: &str, timing: Timing) -> Result<Pgsql, MapError> {
        let hosts = parse_hosts(cf, true)?;
        let dbname = cf.get("dbname").filter(|d| !d.is_empty()).map(str::to_string);
        if dbname.is_none() && !hosts.iter().all(|(_, e)| matches!(e, Endpoint::Uri(_))) {
            cf.required("dbname")?;
        }
        let per_try = (timing.connect + Duration::from_secs(1)) * hosts.len() as u32 + timing.query;
        Ok(Pgsql {
            spec: spec.to_string(),
            deadline: per_try * 2 + Duration::from_secs(2),
            settings: Arc::new(Settings {
                hosts,
                user: cf.get("user").filter(|u| !u.is_empty()).map(str::to_string),
                password: cf.get("password").filter(|p| !p.is_empty()).map(str::to_string),
                dbname,
                timing,
            }),
            worker: Mutex::new(None),
        })
    }

    fn sender(&self, fresh: bool) -> Result<mpsc::Sender<Job>, String> {
        let mut worker = self.worker.lock().unwrap_or_else(|p| p.into_inner());
        if fresh || worker.is_none() {
            let (tx, rx) = mpsc::channel();
            let settings = self.settings.clone();
            std::thread::Builder::new()
                .name("pgsql-lookup".into())
                .spawn(move || work(&settings, rx))
                .map_err(|e| format!("cannot start the lookup thread: {e}"))?;
            *worker = Some(tx);
        }
        Ok(worker.clone().expect("worker started"))
    }
}

impl Backend for Pgsql {
    fn run(&self, sql: &str, params: &[String]) -> Result<Cells, String> {
        let (reply, answer) = mpsc::sync_channel(1);
        let job = Job { sql: Arc::from(sql), params: params.to_vec(), reply };
        if let Err(mpsc::SendError(job)) = self.sender(false)?.send(job) {
            // The worker is gone (it can only have panicked): start another, once.
            self.sender(true)?.send(job).map_err(|_| "the lookup thread stopped".to_string())?;
        }
        match answer.recv_timeout(self.deadline) {
            Ok(result) => result,
            Err(mpsc::RecvTimeoutError::Timeout) => Err(format!("no answer within {}s", self.deadline.as_secs())),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err("the lookup thread stopped".into()),
        }
    }
}

/// The worker thread: answer jobs until the table is dropped.
fn work(settings: &Settings, jobs: mpsc::Receiver<Job>) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(e) => {
            for job in jobs {
                let _ = job.reply.send(Err(format!("cannot start a runtime: {e}")));
            }
            return;
        }
    };
    let connector = PgConnector { runtime: &runtime, settings };
    let mut link = Link::new(settings.hosts.len());
    for job in jobs {
        let result = link.run(&connector, &settings.timing, &job.sql, &job.params);
        let _ = job.reply.send(result);
    }
}

struct PgConnector<'a> {
    runtime: &'a tokio::runtime::Runtime,
    settings: &'a Settings,
}

struct PgConn {
    client: Client,
    /// The table's statement, prepared once per connection.
    prepared: Option<(Arc<str>, Statement)>,
}

impl Connector for PgConnector<'_> {
    type Conn = PgConn;

    fn hosts(&self) -> usize {
        self.settings.hosts.len()
    }

    fn is_local(&self, i: usize) -> bool {
        matches!(self.settings.hosts[i].1, Endpoint::Unix { .. })
    }

    fn name(&self, i: usize) -> String {
        // A URI may carry a password: show only what precedes it.
        let name = &self.settings.hosts[i].0;
        match &self.settings.hosts[i].1 {
            Endpoint::Uri(_) => format!("pgsql server {}", redact(name)),
            _ => format!("pgsql server {name}"),
        }
    }

    fn connect(&self, i: usize) -> Result<PgConn, String> {
        let s = self.settings;
        let mut config = match &s.hosts[i].1 {
            Endpoint::Uri(uri) => uri.parse::<Config>().map_err(|e| e.to_string())?,
            Endpoint::Unix { path, port } => {
                let (dir, port) = socket_dir(path, *port)?;
                let mut config = Config::new();
                config.host_path(dir).port(port);
                config
            }
            Endpoint::Tcp { host, port } => {
                let mut config = Config::new();
                config.host(host).port(port.unwrap_or(DEFAULT_PORT));
                config
            }
        };
        if config.get_user().is_none() {
            config.user(s.user.clone().unwrap_or_else(login_name));
        }
        if config.get_password().is_none()
            && let Some(password) = &s.password
        {
            config.password(password);
        }
        if config.get_dbname().is_none()
            && let Some(dbname) = &s.dbname
        {
            config.dbname(dbname);
        }
        config.connect_timeout(s.timing.connect).tcp_user_timeout(s.timing.query).application_name("tidemail");
        let limit = s.timing.connect + Duration::from_secs(1);
        let (client, connection) = self
            .runtime
            .block_on(async { tokio::time::timeout(limit, config.connect(NoTls)).await })
            .map_err(|_| format!("no connection within {}s", limit.as_secs()))?
            .map_err(|e| e.to_string())?;
        // The connection task runs whenever the worker waits on the runtime.
        self.runtime.spawn(async move {
            let _ = connection.await;
        });
        Ok(PgConn { client, prepared: None })
    }

    fn query(&self, conn: &mut PgConn, sql: &str, params: &[String]) -> Result<Cells, Failure> {
        let limit = self.settings.timing.query;
        let outcome = self.runtime.block_on(async {
            tokio::time::timeout(limit, async {
                let statement = match &conn.prepared {
                    Some((text, statement)) if &**text == sql => statement.clone(),
                    _ => {
                        let statement = conn.client.prepare(sql).await?;
                        conn.prepared = Some((Arc::from(sql), statement.clone()));
                        statement
                    }
                };
                let args: Vec<TextParam> = params.iter().map(|p| TextParam(p)).collect();
                let refs: Vec<&(dyn ToSql + Sync)> = args.iter().map(|a| a as &(dyn ToSql + Sync)).collect();
                let rows = conn.client.query(&statement, &refs).await?;
                Ok::<_, tokio_postgres::Error>((statement, rows))
            })
            .await
        });
        let (statement, rows) = match outcome {
            Err(_) => return Err(Failure::Link(format!("no answer within {}s", limit.as_secs()))),
            Ok(Err(e)) => return Err(classify(&conn.client, &e)),
            Ok(Ok(answer)) => answer,
        };
        if statement.columns().is_empty() {
            return Ok(None);
        }
        let mut cells = Vec::new();
        for row in &rows {
            for i in 0..row.len() {
                cells.push(text(row, i).map_err(Failure::Server)?);
            }
        }
        Ok(Some(cells))
    }
}

/// A server-side error leaves the connection usable, unless the server is closing it.
fn classify(client: &Client, e: &tokio_postgres::Error) -> Failure {
    let message = match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => match e.source() {
            Some(source) => format!("{e}: {source}"),
            None => e.to_string(),
        },
    };
    let fatal = e.as_db_error().is_some_and(|db| matches!(db.severity(), "FATAL" | "PANIC"));
    if client.is_closed() || e.is_closed() || fatal || e.as_db_error().is_none() && e.source().is_some_and(is_io) {
        Failure::Link(message)
    } else {
        Failure::Server(message)
    }
}

fn is_io(e: &(dyn Error + 'static)) -> bool {
    e.is::<std::io::Error>()
}

/// Column `i` of `row` as text, for the types a lookup table returns.
fn text(row: &Row, i: usize) -> Result<Option<String>, String> {
    let column = &row.columns()[i];
    let kind = column.type_();
    let fail = |e: tokio_postgres::Error| format!("column {}: {e}", column.name());
    if <&str as tokio_postgres::types::FromSql>::accepts(kind) {
        return row.try_get::<_, Option<&str>>(i).map(|v| v.map(str::to_string)).map_err(fail);
    }
    let value = match *kind {
        Type::BOOL => row.try_get::<_, Option<bool>>(i).map(|v| v.map(|b| if b { "t" } else { "f" }.to_string())),
        Type::INT2 => row.try_get::<_, Option<i16>>(i).map(|v| v.map(|n| n.to_string())),
        Type::INT4 => row.try_get::<_, Option<i32>>(i).map(|v| v.map(|n| n.to_string())),
        Type::INT8 => row.try_get::<_, Option<i64>>(i).map(|v| v.map(|n| n.to_string())),
        Type::OID => row.try_get::<_, Option<u32>>(i).map(|v| v.map(|n| n.to_string())),
        Type::FLOAT4 => row.try_get::<_, Option<f32>>(i).map(|v| v.map(|x| x.to_string())),
        Type::FLOAT8 => row.try_get::<_, Option<f64>>(i).map(|v| v.map(|x| x.to_string())),
        _ => {
            return Err(format!(
                "column {name} is of type {kind}: return text (e.g. SELECT {name}::text)",
                name = column.name()
            ));
        }
    };
    value.map_err(fail)
}

/// A lookup parameter: text, its type left for the server to infer from the statement.
#[derive(Debug)]
struct TextParam<'a>(&'a str);

impl ToSql for TextParam<'_> {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        out.extend_from_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    fn encode_format(&self, _: &Type) -> Format {
        Format::Text
    }

    to_sql_checked!();
}

/// `unix:/dir` or `unix:/dir/.s.PGSQL.5432`: the socket directory and port.
fn socket_dir(path: &str, port: Option<u16>) -> Result<(String, u16), String> {
    if let Some((dir, file)) = path.rsplit_once('/')
        && let Some(number) = file.strip_prefix(".s.PGSQL.")
    {
        let number = number.parse().map_err(|_| format!("{path}: bad port in the socket name"))?;
        return Ok((if dir.is_empty() { "/".to_string() } else { dir.to_string() }, number));
    }
    Ok((path.to_string(), port.unwrap_or(DEFAULT_PORT)))
}

/// A connection URI without its password (in the user part, or as a parameter).
fn redact(uri: &str) -> String {
    let uri = match uri.split_once('?') {
        Some((base, query)) if query.contains("password") => format!("{base}?..."),
        _ => uri.to_string(),
    };
    let Some((scheme, rest)) = uri.split_once("://") else { return uri };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{user}@{host}{}", &rest[authority_end..])
        }
        None => uri,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_paths() {
        assert_eq!(socket_dir("/run/postgresql", None).unwrap(), ("/run/postgresql".into(), 5432));
        assert_eq!(socket_dir("/run/postgresql", Some(5433)).unwrap(), ("/run/postgresql".into(), 5433));
        assert_eq!(socket_dir("/tmp/x/.s.PGSQL.6000", None).unwrap(), ("/tmp/x".into(), 6000));
    }

    #[test]
    fn uris_lose_their_password_in_messages() {
        assert_eq!(redact("postgresql://mail:s3cret@db.example/mail"), "postgresql://mail@db.example/mail");
        assert_eq!(redact("postgresql://db.example/mail"), "postgresql://db.example/mail");
        assert_eq!(redact("postgresql://db/mail?password=x&user=u"), "postgresql://db/mail?...");
    }
}
