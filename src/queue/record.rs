//! The queue file format (version 1).
//!
//! ```text
//! file    = MAGIC content* envelope end update*
//! record  = kind:u8 len:u32le payload[len] crc32:u32le      (crc over kind, len and payload)
//! content = 'C' record: up to CHUNK bytes of the message (LF line endings)
//! envelope= 'E' record: the Envelope as JSON
//! end     = 'X' record: total content bytes as u64le; a file without it is incomplete
//! update  = 'U' record: an Update as JSON, appended (and fsynced) after the file was committed
//! ```
//! Content comes first so that it can be streamed while headers are still being read
//! (`sendmail -t` learns its recipients from them). Every record carries its own checksum, so a
//! damaged file is detected wherever the damage is. Only a torn *last* update record is
//! tolerated: it is what a crash during an append leaves, and the change it carried was never
//! acknowledged, so it is dropped (and truncated away before the next append).

use std::io::{self, Read, Seek, SeekFrom, Write};

pub const MAGIC: &[u8; 10] = b"TIDEMAILQ1";
pub const CHUNK: usize = 64 * 1024;
/// Envelope and update records are small; a larger length field means damage, not data.
const MAX_META: u32 = 16 * 1024 * 1024;
const HEADER_LEN: u64 = 5;
const TRAILER_LEN: u64 = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Content,
    Envelope,
    End,
    Update,
}

impl Kind {
    fn byte(self) -> u8 {
        match self {
            Kind::Content => b'C',
            Kind::Envelope => b'E',
            Kind::End => b'X',
            Kind::Update => b'U',
        }
    }

    fn from_byte(b: u8) -> Option<Kind> {
        Some(match b {
            b'C' => Kind::Content,
            b'E' => Kind::Envelope,
            b'X' => Kind::End,
            b'U' => Kind::Update,
            _ => return None,
        })
    }
}

fn checksum(kind: u8, len: [u8; 4], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&[kind]);
    h.update(&len);
    h.update(payload);
    h.finalize()
}

/// Serialise one record into `out` (a buffer or a file).
pub fn write_record(out: &mut impl Write, kind: Kind, payload: &[u8]) -> io::Result<()> {
    let len = u32::try_from(payload.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "record too large"))?
        .to_le_bytes();
    let mut head = [0u8; 5];
    head[0] = kind.byte();
    head[1..].copy_from_slice(&len);
    out.write_all(&head)?;
    out.write_all(payload)?;
    out.write_all(&checksum(kind.byte(), len, payload).to_le_bytes())
}

/// Where a record sits in the file.
#[derive(Debug, Clone, Copy)]
pub struct Span {
    pub kind: Kind,
    pub offset: u64,
    pub len: u32,
}

impl Span {
    pub fn payload_offset(&self) -> u64 {
        self.offset + HEADER_LEN
    }
    pub fn end(&self) -> u64 {
        self.offset + HEADER_LEN + self.len as u64 + TRAILER_LEN
    }
}

/// What a scan of a queue file found.
#[derive(Debug)]
pub struct Layout {
    pub content: Vec<Span>,
    pub envelope: Vec<u8>,
    pub content_size: u64,
    pub updates: Vec<Vec<u8>>,
    /// Bytes up to the last whole record; anything after it is a torn append.
    pub valid_len: u64,
    pub file_len: u64,
}

/// Why a file is not a valid queue file. Always means "set it aside", never "crash".
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    #[error("{0}")]
    Bad(String),
}

fn bad(msg: impl Into<String>) -> FormatError {
    FormatError::Bad(msg.into())
}

/// Read a record header at `offset`; `None` at a clean end of file.
fn read_head(f: &mut (impl Read + Seek), offset: u64, file_len: u64) -> Result<Option<(u8, u32)>, FormatError> {
    if offset == file_len {
        return Ok(None);
    }
    if offset + HEADER_LEN > file_len {
        return Err(bad(format!("truncated record header at offset {offset}")));
    }
    f.seek(SeekFrom::Start(offset))?;
    let mut head = [0u8; 5];
    f.read_exact(&mut head)?;
    Ok(Some((head[0], u32::from_le_bytes([head[1], head[2], head[3], head[4]]))))
}

/// Read and verify a record's payload.
fn read_payload(f: &mut (impl Read + Seek), span: &Span) -> Result<Vec<u8>, FormatError> {
    f.seek(SeekFrom::Start(span.payload_offset()))?;
    let mut buf = vec![0u8; span.len as usize + TRAILER_LEN as usize];
    f.read_exact(&mut buf)?;
    let stored = u32::from_le_bytes(buf[span.len as usize..].try_into().expect("4 bytes"));
    buf.truncate(span.len as usize);
    if checksum(span.kind.byte(), span.len.to_le_bytes(), &buf) != stored {
        return Err(bad(format!("checksum mismatch in record at offset {}", span.offset)));
    }
    Ok(buf)
}

/// Scan a queue file: check the magic and the structure, verify every envelope, end and update
/// record. Content records are located but their checksums are verified only when the content
/// is read (`ContentReader`), so listing a queue does not read every message body.
pub fn scan(f: &mut (impl Read + Seek)) -> Result<Layout, FormatError> {
    let file_len = f.seek(SeekFrom::End(0))?;
    f.seek(SeekFrom::Start(0))?;
    let mut magic = [0u8; MAGIC.len()];
    if file_len < MAGIC.len() as u64 {
        return Err(bad("file too short for a queue file"));
    }
    f.read_exact(&mut magic)?;
    if &magic != MAGIC {
        return Err(bad("not a tidemail queue file (bad magic or unknown version)"));
    }
    let mut offset = MAGIC.len() as u64;
    let mut layout = Layout {
        content: Vec::new(),
        envelope: Vec::new(),
        content_size: 0,
        updates: Vec::new(),
        valid_len: offset,
        file_len,
    };
    let mut seen_envelope = false;
    let mut seen_end = false;
    loop {
        let head = match read_head(f, offset, file_len) {
            Ok(Some(h)) => h,
            Ok(None) => break,
            Err(e) if seen_end => {
                let _ = e; // a torn append after a complete file: ignored, see module docs
                break;
            }
            Err(e) => return Err(e),
        };
        let (kind_byte, len) = head;
        let Some(kind) = Kind::from_byte(kind_byte) else {
            if seen_end && zeros_to_end(f, offset)? {
                break;
            }
            return Err(bad(format!("unknown record type 0x{kind_byte:02x} at offset {offset}")));
        };
        let span = Span { kind, offset, len };
        if span.end() > file_len {
            if seen_end {
                break;
            }
            return Err(bad(format!("truncated record at offset {offset}")));
        }
        match kind {
            Kind::Content => {
                if seen_envelope || len as usize > CHUNK {
                    return Err(bad(format!("misplaced or oversized content record at offset {offset}")));
                }
                layout.content_size += len as u64;
                layout.content.push(span);
            }
            Kind::Envelope | Kind::End | Kind::Update => {
                if len > MAX_META {
                    return Err(bad(format!("oversized record at offset {offset}")));
                }
                let payload = match read_payload(f, &span) {
                    Ok(p) => p,
                    // A damaged update that is the last thing in the file is a torn append.
                    Err(FormatError::Bad(_)) if kind == Kind::Update && span.end() == file_len => break,
                    Err(e) => return Err(e),
                };
                match kind {
                    Kind::Envelope if !seen_envelope => {
                        seen_envelope = true;
                        layout.envelope = payload;
                    }
                    Kind::End if seen_envelope && !seen_end => {
                        let size =
                            u64::from_le_bytes(payload.as_slice().try_into().map_err(|_| bad("bad end record"))?);
                        if size != layout.content_size {
                            return Err(bad(format!(
                                "content is {} bytes, end record says {size}",
                                layout.content_size
                            )));
                        }
                        seen_end = true;
                    }
                    Kind::Update if seen_end => layout.updates.push(payload),
                    _ => return Err(bad(format!("record out of order at offset {offset}"))),
                }
            }
        }
        offset = span.end();
        layout.valid_len = offset;
    }
    if !seen_end {
        return Err(bad("incomplete file: no end record"));
    }
    Ok(layout)
}

/// A crash during an append can leave zero-filled blocks after the last whole record; other
/// garbage there is damage.
fn zeros_to_end(f: &mut (impl Read + Seek), offset: u64) -> Result<bool, FormatError> {
    f.seek(SeekFrom::Start(offset))?;
    let mut rest = Vec::new();
    f.take(1 << 20).read_to_end(&mut rest)?;
    Ok(rest.iter().all(|&b| b == 0))
}

/// Streams the content of a scanned file, verifying each chunk's checksum as it goes.
pub struct ContentReader<F> {
    file: F,
    spans: std::vec::IntoIter<Span>,
    current: Vec<u8>,
    pos: usize,
}

impl<F: Read + Seek> ContentReader<F> {
    pub fn new(file: F, spans: Vec<Span>) -> Self {
        ContentReader { file, spans: spans.into_iter(), current: Vec::new(), pos: 0 }
    }
}

impl<F: Read + Seek> Read for ContentReader<F> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.current.len() {
            let Some(span) = self.spans.next() else {
                return Ok(0);
            };
            self.current = read_payload(&mut self.file, &span).map_err(|e| match e {
                FormatError::Io(e) => e,
                FormatError::Bad(msg) => io::Error::new(io::ErrorKind::InvalidData, msg),
            })?;
            self.pos = 0;
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn sample(content: &[u8], updates: &[&[u8]]) -> Vec<u8> {
        let mut f = MAGIC.to_vec();
        for chunk in content.chunks(CHUNK) {
            write_record(&mut f, Kind::Content, chunk).unwrap();
        }
        write_record(&mut f, Kind::Envelope, b"{}").unwrap();
        write_record(&mut f, Kind::End, &(content.len() as u64).to_le_bytes()).unwrap();
        for u in updates {
            write_record(&mut f, Kind::Update, u).unwrap();
        }
        f
    }

    fn content_of(bytes: &[u8]) -> Vec<u8> {
        let mut c = Cursor::new(bytes.to_vec());
        let layout = scan(&mut c).unwrap();
        let mut out = Vec::new();
        ContentReader::new(c, layout.content).read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn round_trip_multi_chunk() {
        let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let file = sample(&body, &[b"a", b"b"]);
        assert_eq!(content_of(&file), body);
        let layout = scan(&mut Cursor::new(file.clone())).unwrap();
        assert_eq!(layout.updates, vec![b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(layout.valid_len, file.len() as u64);
    }

    #[test]
    fn every_truncation_before_the_end_record_is_rejected() {
        let file = sample(b"Subject: x\n\nhello\n", &[]);
        for cut in 0..file.len() {
            assert!(scan(&mut Cursor::new(file[..cut].to_vec())).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn torn_last_update_is_dropped() {
        let full = sample(b"x\n", &[b"one", b"two"]);
        let whole_one = sample(b"x\n", &[b"one"]).len();
        for cut in whole_one..full.len() {
            let layout = scan(&mut Cursor::new(full[..cut].to_vec())).unwrap();
            assert_eq!(layout.updates, vec![b"one".to_vec()], "cut at {cut}");
            assert_eq!(layout.valid_len, whole_one as u64);
        }
    }

    #[test]
    fn any_flipped_byte_in_metadata_is_detected() {
        let file = sample(b"hello\n", &[b"upd"]);
        let content_end = MAGIC.len() + 5 + 6 + 4;
        let last_update_start = file.len() - (5 + 3 + 4);
        for i in 0..last_update_start {
            let mut damaged = file.clone();
            damaged[i] ^= 0x40;
            let scanned = scan(&mut Cursor::new(damaged.clone()));
            if i < content_end && i >= MAGIC.len() + 5 {
                // Content payload and checksum: found when the content is read.
                let mut c = Cursor::new(damaged);
                let layout = scanned.unwrap();
                let mut out = Vec::new();
                assert!(ContentReader::new(&mut c, layout.content).read_to_end(&mut out).is_err(), "byte {i}");
            } else {
                assert!(scanned.is_err(), "byte {i} flipped went unnoticed");
            }
        }
    }
}
