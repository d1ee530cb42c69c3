//! The way in for local programs: the sendmail command writes to maildrop (`maildrop`), and
//! the daemon's pickup hands what it finds there to cleanup (`pickup`).

pub mod input;
pub mod maildrop;
pub mod pickup;
