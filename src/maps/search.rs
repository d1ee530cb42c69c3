//! Postfix search orders (placeholder, being written).
