//! Text sources of tables (placeholder, being written).
