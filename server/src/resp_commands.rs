//! The commands the RESP front end answers (`resp_server`), as `COMMAND` reports them: arity,
//! flags, key positions, group and summary, in Redis 7's shapes.

use crate::resp::Reply;
use bytes::{Bytes, BytesMut};

type RespError = String;

/// A command as the table describes it (what `COMMAND` reports).
#[derive(Debug)]
pub struct Spec {
    pub name: &'static str,
    /// Redis's arity: exactly `n` arguments (the name counts), or at least `-n`.
    pub arity: i64,
    pub write: bool,
    /// A key command planned by `plan_keys`.
    pub(crate) key_plan: bool,
    /// May be queued in `MULTI`.
    pub(crate) in_multi: bool,
    pub first_key: i64,
    pub last_key: i64,
    pub step: i64,
    pub group: &'static str,
    pub summary: &'static str,
}

macro_rules! spec {
    ($name:literal, $arity:expr, $write:expr, $plan:expr, $multi:expr, $keys:expr, $group:literal, $summary:literal) => {
        Spec {
            name: $name,
            arity: $arity,
            write: $write,
            key_plan: $plan,
            in_multi: $multi,
            first_key: $keys.0,
            last_key: $keys.1,
            step: $keys.2,
            group: $group,
            summary: $summary,
        }
    };
}

const ONE: (i64, i64, i64) = (1, 1, 1);
const ALL: (i64, i64, i64) = (1, -1, 1);
const NONE: (i64, i64, i64) = (0, 0, 0);

/// Every command this front end answers.
#[rustfmt::skip]
pub static COMMANDS: &[Spec] = &[
    spec!("get", 2, false, true, true, ONE, "string", "Returns the string value of a key."),
    spec!("set", -3, true, true, true, ONE, "string", "Sets the string value of a key, ignoring its type."),
    spec!("setnx", 3, true, true, true, ONE, "string", "Set the string value of a key only when the key doesn't exist."),
    spec!("setex", 4, true, true, true, ONE, "string", "Sets the string value and expiration time of a key."),
    spec!("psetex", 4, true, true, true, ONE, "string", "Sets both string value and expiration time in milliseconds of a key."),
    spec!("getset", 3, true, true, true, ONE, "string", "Returns the previous string value of a key after setting it to a new value."),
    spec!("getdel", 2, true, true, true, ONE, "string", "Returns the string value of a key after deleting the key."),
    spec!("getex", -2, true, true, true, ONE, "string", "Returns the string value of a key after setting its expiration time."),
    spec!("mget", -2, false, true, true, ALL, "string", "Atomically returns the string values of one or more keys."),
    spec!("mset", -3, true, true, true, (1, -1, 2), "string", "Atomically creates or modifies the string values of one or more keys."),
    spec!("msetnx", -3, true, true, true, (1, -1, 2), "string", "Atomically modifies the string values of one or more keys only when all keys don't exist."),
    spec!("del", -2, true, true, true, ALL, "generic", "Deletes one or more keys."),
    spec!("unlink", -2, true, true, true, ALL, "generic", "Deletes one or more keys."),
    spec!("exists", -2, false, true, true, ALL, "generic", "Determines whether one or more keys exist."),
    spec!("touch", -2, false, true, true, ALL, "generic", "Returns the number of existing keys out of those specified."),
    spec!("expire", -3, true, true, true, ONE, "generic", "Sets the expiration time of a key in seconds."),
    spec!("pexpire", -3, true, true, true, ONE, "generic", "Sets the expiration time of a key in milliseconds."),
    spec!("expireat", -3, true, true, true, ONE, "generic", "Sets the expiration time of a key to a Unix timestamp."),
    spec!("pexpireat", -3, true, true, true, ONE, "generic", "Sets the expiration time of a key to a Unix milliseconds timestamp."),
    spec!("ttl", 2, false, true, true, ONE, "generic", "Returns the expiration time in seconds of a key."),
    spec!("pttl", 2, false, true, true, ONE, "generic", "Returns the expiration time in milliseconds of a key."),
    spec!("expiretime", 2, false, true, true, ONE, "generic", "Returns the expiration time of a key as a Unix timestamp."),
    spec!("pexpiretime", 2, false, true, true, ONE, "generic", "Returns the expiration time of a key as a Unix milliseconds timestamp."),
    spec!("persist", 2, true, true, true, ONE, "generic", "Removes the expiration time of a key."),
    spec!("type", 2, false, true, true, ONE, "generic", "Determines the type of value stored at a key."),
    spec!("incr", 2, true, true, true, ONE, "string", "Increments the integer value of a key by one."),
    spec!("incrby", 3, true, true, true, ONE, "string", "Increments the integer value of a key by a number."),
    spec!("decr", 2, true, true, true, ONE, "string", "Decrements the integer value of a key by one."),
    spec!("decrby", 3, true, true, true, ONE, "string", "Decrements a number from the integer value of a key."),
    spec!("incrbyfloat", 3, true, true, true, ONE, "string", "Increment the floating point value of a key by a number."),
    spec!("append", 3, true, true, true, ONE, "string", "Appends a string to the value of a key."),
    spec!("strlen", 2, false, true, true, ONE, "string", "Returns the length of a string value."),
    spec!("getrange", 4, false, true, true, ONE, "string", "Returns a substring of the string stored at a key."),
    spec!("substr", 4, false, true, true, ONE, "string", "Returns a substring from a string value."),
    spec!("setrange", 4, true, true, true, ONE, "string", "Overwrites a part of a string value with another by an offset."),
    spec!("rename", 3, true, true, true, (1, 2, 1), "generic", "Renames a key and overwrites the destination."),
    spec!("renamenx", 3, true, true, true, (1, 2, 1), "generic", "Renames a key only when the target key name doesn't exist."),
    spec!("keys", 2, false, false, false, NONE, "generic", "Returns all key names that match a pattern."),
    spec!("scan", -2, false, false, false, NONE, "generic", "Iterates over the key names in the database."),
    spec!("dbsize", 1, false, false, false, NONE, "server", "Returns the number of keys in the database."),
    spec!("randomkey", 1, false, false, false, NONE, "generic", "Returns a random key name from the database."),
    spec!("flushdb", -1, true, false, false, NONE, "server", "Remove all keys from the current database."),
    spec!("flushall", -1, true, false, false, NONE, "server", "Removes all keys from all databases."),
    spec!("ping", -1, false, false, true, NONE, "connection", "Returns the server's liveliness response."),
    spec!("echo", 2, false, false, true, NONE, "connection", "Returns the given string."),
    spec!("hello", -1, false, false, false, NONE, "connection", "Handshakes with the Redis server."),
    spec!("auth", -2, false, false, false, NONE, "connection", "Authenticates the connection."),
    spec!("select", 2, false, false, true, NONE, "connection", "Changes the selected database."),
    spec!("quit", -1, false, false, false, NONE, "connection", "Closes the connection."),
    spec!("reset", 1, false, false, false, NONE, "connection", "Resets the connection."),
    spec!("client", -2, false, false, false, NONE, "connection", "A container for client connection commands."),
    spec!("command", -1, false, false, false, NONE, "server", "Returns detailed information about all commands."),
    spec!("info", -1, false, false, false, NONE, "server", "Returns information and statistics about the server."),
    spec!("config", -2, false, false, false, NONE, "server", "A container for server configuration commands."),
    spec!("time", 1, false, false, true, NONE, "server", "Returns the server time."),
    spec!("wait", 3, false, false, false, NONE, "generic", "Blocks until the asynchronous replication of all preceding write commands sent by the connection is completed."),
    spec!("role", 1, false, false, false, NONE, "server", "Returns the replication role."),
    spec!("readonly", 1, false, false, false, NONE, "cluster", "Enables read-only queries for a connection to a Redis Cluster replica node."),
    spec!("readwrite", 1, false, false, false, NONE, "cluster", "Enables read-write queries for a connection to a Redis Cluster replica node."),
    spec!("multi", 1, false, false, false, NONE, "transactions", "Starts a transaction."),
    spec!("exec", 1, false, false, false, NONE, "transactions", "Executes all commands in a transaction."),
    spec!("discard", 1, false, false, false, NONE, "transactions", "Discards a transaction."),
    spec!("watch", -2, false, false, false, ALL, "transactions", "Monitors changes to keys to determine the execution of a transaction."),
    spec!("unwatch", 1, false, false, false, NONE, "transactions", "Forgets about watched keys of a transaction."),
];

/// The command named `name` (any case).
pub fn spec_of(name: &[u8]) -> Option<&'static Spec> {
    if name.len() > 16 {
        return None;
    }
    let lower = name.to_ascii_lowercase();
    COMMANDS.iter().find(|s| s.name.as_bytes() == lower.as_slice())
}

pub(crate) fn command_command(
    args: &[Bytes],
    out: &mut BytesMut,
    resp3: bool,
) -> Result<(), RespError> {
    let mut r = Reply { out, resp3 };
    let sub = args.get(1).map(|s| s.to_ascii_lowercase());
    match sub.as_deref() {
        None => {
            r.array(COMMANDS.len());
            for s in COMMANDS {
                command_info(s, &mut r);
            }
        }
        Some(b"count") => r.int(COMMANDS.len() as i64),
        Some(b"info") => {
            let names = &args[2..];
            if names.is_empty() {
                r.array(COMMANDS.len());
                for s in COMMANDS {
                    command_info(s, &mut r);
                }
            } else {
                r.array(names.len());
                for n in names {
                    match spec_of(n) {
                        Some(s) => command_info(s, &mut r),
                        None => r.null_array(),
                    }
                }
            }
        }
        Some(b"docs") => {
            let specs: Vec<&Spec> = if args.len() > 2 {
                args[2..].iter().filter_map(|n| spec_of(n)).collect()
            } else {
                COMMANDS.iter().collect()
            };
            r.map(specs.len());
            for s in specs {
                r.bulk(s.name.as_bytes());
                r.map(3);
                r.bulk(b"summary");
                r.bulk(s.summary.as_bytes());
                r.bulk(b"since");
                r.bulk(b"1.0.0");
                r.bulk(b"group");
                r.bulk(s.group.as_bytes());
            }
        }
        Some(b"list") => {
            r.array(COMMANDS.len());
            for s in COMMANDS {
                r.bulk(s.name.as_bytes());
            }
        }
        Some(_) => {
            return Err(format!(
                "ERR unknown subcommand '{}'. Try COMMAND HELP.",
                String::from_utf8_lossy(&args[1])
            ));
        }
    }
    Ok(())
}

/// One command's `COMMAND INFO` entry, in Redis 7's shape.
fn command_info(s: &Spec, r: &mut Reply<'_>) {
    r.array(10);
    r.bulk(s.name.as_bytes());
    r.int(s.arity);
    let flags: &[&str] = match (s.write, s.key_plan) {
        (true, _) => &["write", "denyoom"],
        (false, true) => &["readonly", "fast"],
        (false, false) => &["fast"],
    };
    r.set(flags.len());
    for f in flags {
        r.simple(f);
    }
    r.int(s.first_key);
    r.int(s.last_key);
    r.int(s.step);
    r.set(0);
    r.set(0);
    r.array(0);
    r.array(0);
}
