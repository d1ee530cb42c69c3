//! The tutorial's access table (config/tables/access) built with the real command and read
//! with Postfix's access search orders, as the SMTP server's check_*_access will read it.

mod common;

use std::process::Command;
use std::sync::Arc;

use tidemail::maps::{self, Map, search};

fn built_table() -> (tempfile::TempDir, Vec<Arc<dyn Map>>) {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("access");
    std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/config/tables/access"), &table).unwrap();
    let spec = format!("hash:{}", table.display());
    let out = Command::new(common::BIN).args(["map", "build", &spec]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (dir, vec![maps::open(&spec).unwrap()])
}

#[test]
fn tutorial_access_table_answers_as_postfix_would() {
    let (_dir, maps) = built_table();
    let parent = true; // smtpd_access_maps is in parent_domain_matches_subdomains by default
    // Senders: an address entry, a domain entry, and neither.
    assert_eq!(
        search::access_address(&maps, "ispy99@noman.com.cn", "", parent).unwrap().as_deref(),
        Some("550 Go away")
    );
    assert_eq!(search::access_address(&maps, "joe@friend.com", "", parent).unwrap().as_deref(), Some("OK"));
    assert_eq!(search::access_address(&maps, "joe@mail.friend.com", "", parent).unwrap().as_deref(), Some("OK"));
    assert_eq!(search::access_address(&maps, "other@noman.com.cn", "", parent).unwrap(), None);
    // Clients: by hostname and parent domains, then by address and its prefixes.
    assert_eq!(search::access_client(&maps, "gw.friend.com", "10.1.2.3", parent).unwrap().as_deref(), Some("OK"));
    assert_eq!(search::access_client(&maps, "unknown", "202.192.7.9", parent).unwrap().as_deref(), Some("REJECT"));
    assert_eq!(search::access_client(&maps, "unknown", "202.193.7.9", parent).unwrap(), None);
}

#[test]
fn the_tutorial_table_answers_through_map_query_too() {
    let (dir, _) = built_table();
    let spec = format!("hash:{}", dir.path().join("access").display());
    let out = Command::new(common::BIN).args(["map", "query", &spec, "202.192"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "REJECT");
    let out = Command::new(common::BIN).args(["map", "query", &spec, "Friend.COM"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "OK", "keys are case-insensitive");
}
