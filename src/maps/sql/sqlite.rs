//! `sqlite:` tables: an SQLite file (`dbpath`), opened read-only on the first lookup and
//! kept open. A file replaced since (a new inode, as when it is rebuilt and renamed into
//! place) is reopened; a file that is missing or unreadable makes the table unavailable.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};

use super::cf::CfFile;
use super::{Backend, Cells};
use crate::maps::MapError;

pub struct Sqlite {
    path: PathBuf,
    /// How long to wait for a writer's lock before giving up.
    busy: Duration,
    state: Mutex<Option<OpenFile>>,
}

struct OpenFile {
    conn: Connection,
    /// Device and inode of the file when it was opened.
    id: (u64, u64),
}

impl std::fmt::Debug for Sqlite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sqlite").field("path", &self.path).finish_non_exhaustive()
    }
}

impl Sqlite {
    pub fn new(cf: &CfFile) -> Result<Sqlite, MapError> {
        let path = PathBuf::from(cf.required("dbpath")?);
        let busy = cf.seconds("query_timeout", Duration::from_secs(10))?;
        Ok(Sqlite { path, busy, state: Mutex::new(None) })
    }

    fn open(&self) -> Result<OpenFile, String> {
        let shown = self.path.display();
        let meta = std::fs::metadata(&self.path).map_err(|e| format!("{shown}: {e}"))?;
        // Read-only and never created: a missing file is an error, not an empty table.
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&self.path, flags).map_err(|e| format!("{shown}: {e}"))?;
        conn.busy_timeout(self.busy).map_err(|e| format!("{shown}: {e}"))?;
        Ok(OpenFile { conn, id: (meta.dev(), meta.ino()) })
    }

    fn query(&self, open: &OpenFile, sql: &str, params: &[String]) -> rusqlite::Result<Cells> {
        let mut statement = open.conn.prepare_cached(sql)?;
        let columns = statement.column_count();
        if columns == 0 {
            return Ok(None);
        }
        let mut rows = statement.query(rusqlite::params_from_iter(params.iter()))?;
        let mut cells = Vec::new();
        while let Some(row) = rows.next()? {
            for i in 0..columns {
                cells.push(match row.get_ref(i)? {
                    ValueRef::Null => None,
                    ValueRef::Integer(n) => Some(n.to_string()),
                    ValueRef::Real(x) => Some(real(x)),
                    ValueRef::Text(bytes) | ValueRef::Blob(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
                });
            }
        }
        Ok(Some(cells))
    }
}

impl Backend for Sqlite {
    fn run(&self, sql: &str, params: &[String]) -> Result<Cells, String> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let current = std::fs::metadata(&self.path).map(|m| (m.dev(), m.ino()));
        let current = match current {
            Ok(id) => id,
            Err(e) => {
                *state = None;
                return Err(format!("{}: {e}", self.path.display()));
            }
        };
        if state.as_ref().is_some_and(|open| open.id != current) {
            *state = None;
        }
        let reused = state.is_some();
        if !reused {
            *state = Some(self.open()?);
        }
        let open = state.as_ref().expect("opened");
        match self.query(open, sql, params) {
            Ok(cells) => Ok(cells),
            Err(e) if reused => {
                // Perhaps the file changed under the open connection: reopen, once.
                *state = Some(self.open()?);
                let open = state.as_ref().expect("opened");
                self.query(open, sql, params)
                    .map_err(|e2| format!("{}: {e2} (before reopening: {e})", self.path.display()))
            }
            Err(e) => Err(format!("{}: {e}", self.path.display())),
        }
    }
}

/// A floating-point value as SQLite writes it as text: whole numbers keep a ".0".
fn real(x: f64) -> String {
    if x.is_finite() && x.fract() == 0.0 && x.abs() < 1e15 { format!("{x:.1}") } else { x.to_string() }
}
