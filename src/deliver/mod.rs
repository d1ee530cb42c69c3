//! Delivery agents: what takes a message out of the queue to its next hop.

pub mod local;
pub mod smtp;
