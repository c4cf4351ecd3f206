//! The write-ahead log format (being written).
