//! The cache state machine (being written).
