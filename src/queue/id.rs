//! Queue IDs in Postfix's long form: seconds (base 52, 6+ digits), microseconds (base 52,
//! exactly 4 digits), the separator `z`, then the file's inode number (base 51).
//!
//! The alphabet has no vowels (no words in IDs) and sorts in ASCII order, so IDs sort by
//! arrival time; the inode makes two messages of the same microsecond distinct, and log
//! analysers (pflogsumm, mailgraph) recognise exactly this alphabet.

/// Digits of Postfix's "safe" alphabet; base 51 uses all but the final `z`.
const ALPHABET: &[u8; 52] = b"0123456789BCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz";
const SEC_BASE: u64 = 52;
const SEC_PAD: usize = 6;
const USEC_BASE: u64 = 52;
const USEC_PAD: usize = 4;
const INODE_BASE: u64 = 51;
const SEPARATOR: char = 'z';

fn encode(mut value: u64, base: u64, min_width: usize, out: &mut String) {
    let mut digits = Vec::with_capacity(12);
    loop {
        digits.push(ALPHABET[(value % base) as usize]);
        value /= base;
        if value == 0 {
            break;
        }
    }
    for _ in digits.len()..min_width {
        out.push('0');
    }
    out.extend(digits.iter().rev().map(|&d| d as char));
}

/// The ID of a message that arrived at `arrival_us` (microseconds since the epoch) and whose
/// queue file has inode `inode`.
pub fn queue_id(arrival_us: i64, inode: u64) -> String {
    let us = arrival_us.max(0) as u64;
    let mut id = String::with_capacity(20);
    encode(us / 1_000_000, SEC_BASE, SEC_PAD, &mut id);
    encode(us % 1_000_000, USEC_BASE, USEC_PAD, &mut id);
    id.push(SEPARATOR);
    encode(inode, INODE_BASE, 1, &mut id);
    id
}

/// True if `name` has the shape of one of our queue IDs (used to skip strangers in queue dirs
/// and to refuse path tricks in IDs given on the command line or the control socket).
pub fn is_queue_id(name: &str) -> bool {
    // The time digits may contain `z` (the last base-52 digit); the inode's never do, so the
    // separator is the last `z`.
    let Some((time, inode)) = name.rsplit_once(SEPARATOR) else {
        return false;
    };
    time.len() >= SEC_PAD + USEC_PAD
        && !inode.is_empty()
        && time.bytes().all(|b| ALPHABET.contains(&b))
        && inode.bytes().all(|b| ALPHABET[..INODE_BASE as usize].contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn has_postfix_shape() {
        let id = queue_id(1_795_321_106_123_456, 1_234_567);
        assert!(is_queue_id(&id), "{id}");
        assert_eq!(id.find('z'), Some(10));
        // mailgraph's received-line pattern for long IDs: no vowels, letters and digits only.
        assert!(id.chars().all(|c| c.is_ascii_alphanumeric() && !"AEIOUaeiou".contains(c)));
    }

    #[test]
    fn sorts_by_arrival() {
        let mut last = String::new();
        for (i, t) in
            [0i64, 1, 999_999, 1_000_000, 52_000_000, 1_795_321_106_000_000, 9_000_000_000_000_000].iter().enumerate()
        {
            let id = queue_id(*t, 1_000 - i as u64);
            assert!(id > last, "{id} after {last}");
            last = id;
        }
    }

    #[test]
    fn time_digits_may_contain_z() {
        // 51 microseconds encode as the digit `z`.
        let id = queue_id(1_795_321_106_000_051, 7);
        assert!(id[..10].contains('z'), "{id}");
        assert!(is_queue_id(&id), "{id}");
    }

    #[test]
    fn same_instant_distinct_inodes() {
        assert_ne!(queue_id(5, 10), queue_id(5, 11));
    }

    #[test]
    fn rejects_path_tricks() {
        for bad in ["", "../x", "abc", "0000000000z", "0000000000z/", "ABCDEFGHIJz1", "4cXyZ1BcDfz2Bq/../x"] {
            assert!(!is_queue_id(bad), "{bad}");
        }
    }
}
