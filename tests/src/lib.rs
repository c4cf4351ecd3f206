//! Integration tests against real `simple-cache` processes on loopback.
//!
//! Placeholder: the tests arrive with the server issue, once there is a server to start.
