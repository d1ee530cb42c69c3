//! `hash:`, `btree:` and `cdb:` tables: a text source compiled into a constant database.
//!
//! `hash:/etc/postfix/access` names the source `/etc/postfix/access`; `tidemail map build`
//! (postmap) or `newaliases` (postalias) writes `/etc/postfix/access.cdb` beside it, and
//! lookups read only that file, through a memory map: a lookup costs a few page reads, never
//! a parse of the table. Keys are folded to lower case at build and at lookup.
//!
//! Building writes a temporary file in the same directory, fsyncs it and renames it over the
//! old one, so a reader sees the old table or the new one, never half of one. The compiled
//! file gets the source's permission bits (a 0600 `sasl_passwd` stays private) and, when
//! root builds it, the source's owner.
//!
//! A reader notices a rebuilt file (inode, size or time change, checked at most once a
//! second) and maps the new one. It warns, once per version, when the compiled file is older
//! than its source (someone edited the table and forgot to rebuild), as Postfix does. A
//! missing compiled file is `Unavailable` (mail waits), never "not found".

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::source::{self, Watched};
use super::{Map, MapError, aliases};

/// The compiled file for a source: `FILE.cdb`.
pub fn compiled_path(source: &Path) -> PathBuf {
    let mut name = source.as_os_str().to_os_string();
    name.push(".cdb");
    PathBuf::from(name)
}

pub fn open(spec: &str, name: &str) -> Result<Arc<dyn Map>, MapError> {
    Ok(Arc::new(HashTable::open(spec, Path::new(name))?))
}

/// A compiled table being read.
pub struct HashTable {
    spec: String,
    /// Postfix writes cdb keys with a trailing NUL on some builds; a `cdb:` table made by
    /// Postfix's postmap is found either way.
    try_nul: bool,
    compiled: PathBuf,
    db: Watched<cdb2::CDB>,
}

impl std::fmt::Debug for HashTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HashTable").field("spec", &self.spec).finish()
    }
}

impl HashTable {
    pub fn open(spec: &str, source: &Path) -> Result<HashTable, MapError> {
        let compiled = compiled_path(source);
        let (spec_owned, src, db) = (spec.to_string(), source.to_path_buf(), compiled.clone());
        // Watching the source too means an edit without a rebuild is noticed and warned about.
        let paths = vec![compiled.clone(), source.to_path_buf()];
        let db = Watched::open(spec, paths, move || open_compiled(&spec_owned, &src, &db))?;
        Ok(HashTable { spec: spec.to_string(), try_nul: spec.starts_with("cdb:"), compiled, db })
    }
}

fn open_compiled(spec: &str, source: &Path, compiled: &Path) -> Result<cdb2::CDB, MapError> {
    let db = cdb2::CDB::open(compiled).map_err(|e| {
        let hint = if e.kind() == io::ErrorKind::NotFound { " (run \"tidemail map build\" or newaliases)" } else { "" };
        MapError::unavailable(spec, format!("open database {}: {e}{hint}", compiled.display()))
    })?;
    if let (Ok(src), Ok(out)) = (fs::metadata(source), fs::metadata(compiled))
        && (src.mtime(), src.mtime_nsec()) > (out.mtime(), out.mtime_nsec())
    {
        crate::mail_warning!(
            "lookup",
            "database {} is older than source file {}",
            compiled.display(),
            source.display()
        );
    }
    Ok(db)
}

impl Map for HashTable {
    fn spec(&self) -> &str {
        &self.spec
    }

    fn lookup(&self, key: &str) -> Result<Option<String>, MapError> {
        let db = self.db.get()?;
        let key = source::fold_ref(key);
        let mut found = db.get(key.as_bytes());
        if found.is_none() && self.try_nul {
            found = db.get(format!("{key}\0").as_bytes());
        }
        match found {
            None => Ok(None),
            Some(Err(e)) => Err(MapError::unavailable(&self.spec, format!("read {}: {e}", self.compiled.display()))),
            Some(Ok(mut value)) => {
                if value.last() == Some(&0) {
                    value.pop();
                }
                String::from_utf8(value).map(Some).map_err(|_| MapError::unavailable(&self.spec, "value is not UTF-8"))
            }
        }
    }
}

/// The source formats a hash table can be built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// postmap(1): `key value`.
    Map,
    /// aliases(5): `name: value, value`.
    Aliases,
}

/// What a build did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    pub output: PathBuf,
    pub entries: usize,
    /// Duplicate keys (the first one was kept), as `FILE, line N: ...`.
    pub warnings: Vec<String>,
}

/// Compile `source` into `source.cdb` (postmap / postalias). A syntax error anywhere leaves
/// the previous compiled file in place. I/O failures are `Unavailable`.
pub fn build(spec: &str, source: &Path, format: Format) -> Result<Built, MapError> {
    let bytes = source::read(spec, source)?;
    let file = source.display().to_string();
    let entries = match format {
        Format::Map => source::parse_map(&file, &bytes)?,
        Format::Aliases => aliases::parse(&file, &bytes)?,
    };
    // Postmap keeps the first of duplicate keys and says so.
    let mut first: HashMap<String, usize> = HashMap::with_capacity(entries.len());
    let mut records = Vec::with_capacity(entries.len());
    let mut warnings = Vec::new();
    for entry in entries {
        let key = source::fold(&entry.key);
        if let Some(line) = first.get(&key) {
            warnings.push(format!(
                "{file}, line {}: duplicate entry: \"{key}\" (first at line {line}); keeping the first",
                entry.line
            ));
            continue;
        }
        first.insert(key.clone(), entry.line);
        records.push((key, entry.value));
    }
    let output = compiled_path(source);
    write_atomically(source, &output, &records)
        .map_err(|e| MapError::unavailable(spec, format!("write {}: {e}", output.display())))?;
    Ok(Built { output, entries: records.len(), warnings })
}

fn write_atomically(source: &Path, output: &Path, records: &[(String, String)]) -> io::Result<()> {
    let meta = fs::metadata(source)?;
    let mut tmp_name = output.as_os_str().to_os_string();
    tmp_name.push(format!(".tmp.{}", std::process::id()));
    let tmp = PathBuf::from(tmp_name);
    let _ = fs::remove_file(&tmp); // a leftover of an earlier run with the same pid
    let file = OpenOptions::new().write(true).create_new(true).mode(meta.mode() & 0o666).open(&tmp)?;
    let result = (|| {
        // The umask may have taken bits away; the source's mode is what the table deserves.
        file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(meta.mode() & 0o666))?;
        if nix::unistd::geteuid().is_root() {
            std::os::unix::fs::fchown(&file, Some(meta.uid()), Some(meta.gid()))?;
        }
        let mut db = cdb2::CDBMake::new(file.try_clone()?)?;
        for (key, value) in records {
            db.add(key.as_bytes(), value.as_bytes())?;
        }
        db.finish()?;
        file.sync_all()?;
        fs::rename(&tmp, output)?;
        sync_dir(output)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Make the rename durable.
fn sync_dir(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn setup(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access");
        fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn build_and_look_up() {
        let (_dir, path) = setup("# table\nExample.COM   OK\nspam@x.test REJECT go away\n  and stay away\n");
        let built = build("hash:t", &path, Format::Map).unwrap();
        assert_eq!(built.entries, 2);
        assert!(built.warnings.is_empty());
        assert_eq!(built.output, path.with_file_name("access.cdb"));
        let t = HashTable::open("hash:t", &path).unwrap();
        assert_eq!(t.lookup("example.com").unwrap().as_deref(), Some("OK"));
        assert_eq!(t.lookup("EXAMPLE.com").unwrap().as_deref(), Some("OK"));
        assert_eq!(t.lookup("Spam@X.test").unwrap().as_deref(), Some("REJECT go away  and stay away"));
        assert_eq!(t.lookup("nothing").unwrap(), None);
        assert_eq!(t.kind(), super::super::MapKind::Exact);
    }

    #[test]
    fn duplicates_warn_and_keep_the_first() {
        let (_dir, path) = setup("a 1\nb 2\nA 3\n");
        let built = build("hash:t", &path, Format::Map).unwrap();
        assert_eq!(built.entries, 2);
        assert_eq!(built.warnings.len(), 1);
        assert!(
            built.warnings[0].ends_with("access, line 3: duplicate entry: \"a\" (first at line 1); keeping the first")
        );
        let t = HashTable::open("hash:t", &path).unwrap();
        assert_eq!(t.lookup("a").unwrap().as_deref(), Some("1"));
    }

    #[test]
    fn a_syntax_error_keeps_the_old_database() {
        let (_dir, path) = setup("a 1\n");
        build("hash:t", &path, Format::Map).unwrap();
        fs::write(&path, "a 2\nbroken\n").unwrap();
        let err = build("hash:t", &path, Format::Map).unwrap_err();
        assert!(matches!(err, MapError::Syntax { line: 2, .. }), "{err}");
        assert_eq!(HashTable::open("hash:t", &path).unwrap().lookup("a").unwrap().as_deref(), Some("1"));
        let leftovers: Vec<_> = fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(leftovers.len(), 2, "no temporary file is left behind");
    }

    #[test]
    fn a_missing_compiled_file_is_unavailable() {
        let (_dir, path) = setup("a 1\n");
        let err = HashTable::open("hash:t", &path).unwrap_err();
        assert!(matches!(err, MapError::Unavailable { .. }), "{err}");
        assert!(err.to_string().contains("access.cdb"), "{err}");
    }

    #[test]
    fn a_missing_source_is_unavailable_at_build() {
        let dir = tempfile::tempdir().unwrap();
        let err = build("hash:x", &dir.path().join("none"), Format::Map).unwrap_err();
        assert!(matches!(err, MapError::Unavailable { .. }), "{err}");
    }

    #[test]
    fn a_rebuilt_file_is_reopened() {
        let (_dir, path) = setup("a 1\n");
        build("hash:t", &path, Format::Map).unwrap();
        let t = HashTable::open("hash:t", &path).unwrap();
        assert_eq!(t.lookup("a").unwrap().as_deref(), Some("1"));
        fs::write(&path, "a 2\n").unwrap();
        build("hash:t", &path, Format::Map).unwrap();
        std::thread::sleep(source::RECHECK + std::time::Duration::from_millis(50));
        assert_eq!(t.lookup("a").unwrap().as_deref(), Some("2"));
        fs::remove_file(compiled_path(&path)).unwrap();
        std::thread::sleep(source::RECHECK + std::time::Duration::from_millis(50));
        assert!(matches!(t.lookup("a"), Err(MapError::Unavailable { .. })));
    }

    #[test]
    fn the_compiled_file_keeps_the_source_mode() {
        let (_dir, path) = setup("user:pass secret\n");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        build("hash:t", &path, Format::Map).unwrap();
        assert_eq!(fs::metadata(compiled_path(&path)).unwrap().mode() & 0o777, 0o600);
    }

    #[test]
    fn aliases_format() {
        let (_dir, path) = setup("Postmaster: root\n\"foo bar\": x, y\n");
        let built = build("hash:t", &path, Format::Aliases).unwrap();
        assert_eq!(built.entries, 2);
        let t = HashTable::open("hash:t", &path).unwrap();
        assert_eq!(t.lookup("postmaster").unwrap().as_deref(), Some("root"));
        assert_eq!(t.lookup("Foo Bar").unwrap().as_deref(), Some("x, y"));
    }

    #[test]
    fn postfix_style_nul_terminated_cdb_keys() {
        let (_dir, path) = setup("");
        let mut db = cdb2::CDBWriter::create(compiled_path(&path)).unwrap();
        db.add(b"key\0", b"value\0").unwrap();
        db.finish().unwrap();
        let t = HashTable::open("cdb:t", &path).unwrap();
        assert_eq!(t.lookup("KEY").unwrap().as_deref(), Some("value"));
    }
}
