//! Durable queue writes per second: `QueueStore::create` + `write_content` + `commit`
//! (write under a temporary name, fdatasync for one file or one syncfs for a batch, rename to
//! the queue ID, fsync of the directory), the path every accepted message takes.
//!
//!     cargo bench --bench queue_write
//!     cargo bench --bench queue_write -- 'writers10'        # a subset
//!     TIDEMAIL_BENCH_DIR=/var/tmp cargo bench --bench queue_write
//!
//! Groups (throughput in messages/s, criterion's "thrpt" line):
//! - `queue_commit/writers1/{2KiB,100KiB}`: one thread committing messages one after another.
//! - `queue_commit/writers10/{2KiB,100KiB}`: ten threads sharing one cloned `QueueStore`, each
//!   committing its share; group commit lets the waiting writers share one syncfs.
//! - `floor/writers{1,10}/{2KiB,100KiB}`: the same bytes written with bare std calls (create,
//!   write, fdatasync, rename, directory fsync), no record format, no envelope, no group
//!   commit: what the disk costs, and what the kernel's own journal batching gives 10 writers.
//!
//! The queue lives in a temporary directory under `target/tmp` (same file system as the
//! source tree; a tmpfs /tmp would make fsync free and the figures meaningless). Its type is
//! printed at start. Between samples the committed files are removed (untimed) and the file
//! system is synced (untimed) so a sample does not pay for the previous sample's deletions.
//!
//! Figures and how they were taken: benches/RESULTS.md.

use std::fs::{self, File, OpenOptions};
use std::hint::black_box;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use tidemail::queue::{Envelope, Origin, QueueName, QueueStore, Recipient, layout};

const SIZES: [(usize, &str); 2] = [(2 * 1024, "2KiB"), (100 * 1024, "100KiB")];
const WRITERS: [usize; 2] = [1, 10];

/// A plain RFC 5322 message of exactly `size` bytes (LF line ends, as queued).
fn message(size: usize) -> Vec<u8> {
    let mut m = b"From: a@sender.example\nTo: b@remote.example\nSubject: queue write benchmark\n\
Message-ID: <bench@sender.example>\nDate: Thu, 1 Jan 2026 00:00:00 +0000\n\n"
        .to_vec();
    let line = b"The quick brown fox jumps over the lazy dog, again and again and again.\n";
    while m.len() < size {
        let take = line.len().min(size - m.len());
        m.extend_from_slice(&line[..take]);
    }
    m.truncate(size);
    if let Some(last) = m.last_mut() {
        *last = b'\n';
    }
    m
}

fn envelope() -> Envelope {
    let origin = Origin::Smtp {
        client_name: "localhost".into(),
        client_addr: "127.0.0.1".into(),
        helo: Some("client.example".into()),
        protocol: "ESMTP".into(),
    };
    Envelope::new("a@sender.example", vec![Recipient::new("b@remote.example")], origin, 0)
}

/// Where the scratch queues go: $TIDEMAIL_BENCH_DIR, else target/tmp (cargo's per-target
/// scratch directory, on the same file system as the build).
fn scratch_parent() -> PathBuf {
    let dir = std::env::var_os("TIDEMAIL_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")));
    fs::create_dir_all(&dir).expect("create the benchmark scratch directory");
    dir
}

fn fs_type(path: &Path) -> String {
    // statfs f_type magic numbers of the usual suspects.
    let st = nix::sys::statfs::statfs(path).expect("statfs");
    let magic = st.filesystem_type().0 as i64;
    let name = match magic {
        0xEF53 => "ext2/3/4",
        0x0102_1994 => "tmpfs",
        0x5846_5342 => "xfs",
        0x9123_683E => "btrfs",
        0x2FC1_2FC1 => "zfs",
        0x794C_7630 => "overlayfs",
        _ => "other",
    };
    format!("{name} (f_type {magic:#x})")
}

/// Remove every committed message (and any stray temporary) from `dir`, then flush the file
/// system so the next sample starts from a clean journal. Untimed.
fn clear(dir: &Path) {
    for entry in fs::read_dir(dir).expect("read queue dir") {
        let _ = fs::remove_file(entry.expect("dir entry").path());
    }
    let d = File::open(dir).expect("open queue dir");
    // SAFETY: syncfs takes any open descriptor on the file system; `d` is valid.
    unsafe { libc::syncfs(d.as_raw_fd()) };
}

/// One durable message through the library: what cleanup/smtpd do for every message.
fn write_one(store: &QueueStore, body: &[u8], env: &Envelope) -> String {
    let mut w = store.create(QueueName::Incoming, 0).expect("create");
    w.write_content(body).expect("write_content");
    store.commit(w, env).expect("commit")
}

/// `per_writer` messages from each of `writers` threads; returns the wall time from the moment
/// all threads are ready until the last commit returned.
fn run_writers(store: &QueueStore, writers: usize, per_writer: u64, body: &[u8], env: &Envelope) -> Duration {
    if writers == 1 {
        let t = Instant::now();
        for _ in 0..per_writer {
            black_box(write_one(store, body, env));
        }
        return t.elapsed();
    }
    let start = Barrier::new(writers + 1);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..writers)
            .map(|_| {
                let store = store.clone();
                let start = &start;
                s.spawn(move || {
                    start.wait();
                    for _ in 0..per_writer {
                        black_box(write_one(&store, body, env));
                    }
                })
            })
            .collect();
        start.wait();
        let t = Instant::now();
        for h in handles {
            h.join().expect("writer thread");
        }
        t.elapsed()
    })
}

/// The floor: the same bytes, the same durability steps, bare std calls, each writer on its
/// own (concurrent fdatasyncs are batched only by the file system's journal, jbd2 on ext4).
fn floor_one(dir: &Path, writer: usize, n: u64, body: &[u8]) {
    let tmp = dir.join(format!(".tmp.floor.{writer}.{n}"));
    let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp).expect("create");
    f.write_all(body).expect("write");
    f.sync_data().expect("fdatasync");
    fs::rename(&tmp, dir.join(format!("floor.{writer}.{n}"))).expect("rename");
    File::open(dir).expect("open dir").sync_all().expect("fsync dir");
}

fn run_floor(dir: &Path, writers: usize, per_writer: u64, body: &[u8]) -> Duration {
    let start = Barrier::new(writers + 1);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..writers)
            .map(|w| {
                let start = &start;
                s.spawn(move || {
                    start.wait();
                    for n in 0..per_writer {
                        floor_one(dir, w, n, body);
                    }
                })
            })
            .collect();
        start.wait();
        let t = Instant::now();
        for h in handles {
            h.join().expect("floor thread");
        }
        t.elapsed()
    })
}

fn bench(c: &mut Criterion) {
    let parent = scratch_parent();
    let scratch = tempfile::Builder::new().prefix("queue-write-").tempdir_in(&parent).expect("scratch dir");
    eprintln!("queue_write: scratch queue in {} on {}", scratch.path().display(), fs_type(scratch.path()));
    let root = scratch.path().join("queue");
    layout::ensure(&root, None).expect("create queue tree");
    let store = QueueStore::new(&root);
    let incoming = store.dir(QueueName::Incoming);
    let env = envelope();

    let mut group = c.benchmark_group("queue_commit");
    // Each message costs milliseconds (a device flush); keep the run to about a minute.
    group.sampling_mode(SamplingMode::Flat).sample_size(10).warm_up_time(Duration::from_secs(2));
    group.measurement_time(Duration::from_secs(8)).nresamples(10_000);
    for writers in WRITERS {
        for (size, label) in SIZES {
            let body = message(size);
            // One criterion iteration = one message per writer.
            group.throughput(Throughput::Elements(writers as u64));
            group.bench_with_input(BenchmarkId::new(format!("writers{writers}"), label), &body, |b, body| {
                b.iter_custom(|iters| {
                    let took = run_writers(&store, writers, iters, body, &env);
                    clear(&incoming);
                    took
                })
            });
        }
    }
    group.finish();

    let floor_dir = scratch.path().join("floor");
    fs::create_dir(&floor_dir).expect("floor dir");
    let mut group = c.benchmark_group("floor");
    group.sampling_mode(SamplingMode::Flat).sample_size(10).warm_up_time(Duration::from_secs(2));
    group.measurement_time(Duration::from_secs(8)).nresamples(10_000);
    for writers in WRITERS {
        for (size, label) in SIZES {
            let body = message(size);
            group.throughput(Throughput::Elements(writers as u64));
            group.bench_with_input(BenchmarkId::new(format!("writers{writers}"), label), &body, |b, body| {
                b.iter_custom(|iters| {
                    let took = run_floor(&floor_dir, writers, iters, body);
                    clear(&floor_dir);
                    took
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
