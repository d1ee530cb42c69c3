//! Lookups per second in the tables mail passes through on every recipient.
//!
//!     cargo bench --bench map_lookup
//!     cargo bench --bench map_lookup -- 'hash'          # a subset
//!
//! Groups (throughput in lookups/s, criterion's "thrpt" line):
//! - `hash_100k/{hit,miss}`: a 100 000-key `hash:` table (compiled `.cdb`, memory-mapped),
//!   keys asked in a scattered order so the cache does not only see one page.
//! - `regexp_1k/{hit_first,hit_last,miss}`: a 1 000-rule `regexp:` table; a key matching the
//!   first rule, one matching only the last rule (with `$1` substitution), one matching none.
//! - `regexp_1k_each/miss`: the same 1 000 patterns tried one `Regex` after another, the way
//!   a table without a `RegexSet` would: what the set saves.
//!
//! The tables are written under `target/tmp` (untimed). Figures: benches/RESULTS.md.

use std::fs;
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tidemail::maps::{self, Map, hash};

const HASH_KEYS: usize = 100_000;
const RULES: usize = 1_000;

fn scratch() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("map_lookup.{}", std::process::id()));
    fs::create_dir_all(&dir).expect("create the scratch directory");
    dir
}

/// `user<i>@dept<i % 97>.example.com  user<i>@mail.example.net` (virtual-alias shaped).
fn hash_key(i: usize) -> String {
    format!("user{i}@dept{}.example.com", i % 97)
}

fn hash_table(dir: &std::path::Path) -> Arc<dyn Map> {
    let source = dir.join("virtual");
    let mut text = String::with_capacity(HASH_KEYS * 64);
    for i in 0..HASH_KEYS {
        text.push_str(&format!("{}\tuser{i}@mail.example.net\n", hash_key(i)));
    }
    fs::write(&source, text).unwrap();
    let spec = format!("hash:{}", source.display());
    hash::build(&spec, &source, hash::Format::Map).unwrap();
    maps::open(&spec).unwrap()
}

/// Rule i: `/^(list<i>)-[a-z]+@host<i>\.example$/  ${1}@lists.example` — anchored, with a
/// literal part, as header_checks and canonical tables usually are.
fn rule_pattern(i: usize) -> String {
    format!("^(list{i})-[a-z]+@host{i}\\.example$")
}

fn regexp_table(dir: &std::path::Path) -> Arc<dyn Map> {
    let source = dir.join("canonical.regexp");
    let text: String = (0..RULES).map(|i| format!("/{}/ ${{1}}@lists.example\n", rule_pattern(i))).collect();
    fs::write(&source, text).unwrap();
    maps::open(&format!("regexp:{}", source.display())).unwrap()
}

fn bench(c: &mut Criterion) {
    let dir = scratch();

    let table = hash_table(&dir);
    // A fixed scatter over the key space (a multiplier coprime with the table size).
    let hits: Vec<String> = (0..HASH_KEYS).map(|i| hash_key((i * 7919) % HASH_KEYS)).collect();
    let misses: Vec<String> = (0..HASH_KEYS).map(|i| format!("nobody{i}@dept{}.example.com", i % 97)).collect();
    let mut group = c.benchmark_group("hash_100k");
    group.throughput(Throughput::Elements(1)).measurement_time(Duration::from_secs(5));
    for (name, keys, want) in [("hit", &hits, true), ("miss", &misses, false)] {
        let mut n = 0usize;
        group.bench_function(name, |b| {
            b.iter(|| {
                n = (n + 1) % keys.len();
                let found = table.lookup(black_box(&keys[n])).unwrap();
                debug_assert_eq!(found.is_some(), want);
                found
            })
        });
    }
    group.finish();

    let table = regexp_table(&dir);
    assert_eq!(table.lookup("list999-abc@host999.example").unwrap().as_deref(), Some("list999@lists.example"));
    let mut group = c.benchmark_group("regexp_1k");
    group.throughput(Throughput::Elements(1)).measurement_time(Duration::from_secs(5));
    for (name, key) in [
        ("hit_first", "list0-abc@host0.example"),
        ("hit_last", "list999-abc@host999.example"),
        ("miss", "someone@elsewhere.example"),
    ] {
        group.bench_function(name, |b| b.iter(|| table.lookup(black_box(key)).unwrap()));
    }
    group.finish();

    let each: Vec<regex::Regex> =
        (0..RULES).map(|i| regex::Regex::new(&format!("(?is){}", rule_pattern(i))).unwrap()).collect();
    let mut group = c.benchmark_group("regexp_1k_each");
    group.throughput(Throughput::Elements(1)).measurement_time(Duration::from_secs(5));
    group.bench_function("miss", |b| {
        b.iter(|| each.iter().position(|r| r.is_match(black_box("someone@elsewhere.example"))))
    });
    group.finish();

    let _ = fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);
