//! The Redis protocol against real processes: the `redis` crate (multiplexed, pipelined,
//! RESP2 and RESP3) on every node of a 3-node cluster and across a leader kill, `redis-cli`
//! for a scripted session, `redis-benchmark` as a smoke run, and the connection's bounds
//! (AUTH, protocol errors, client limit) from a raw socket.

mod common;

use common::{Cluster, Node};
use redis::AsyncCommands;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A multiplexed connection that waits as long as a write may take through a failover (the
/// crate's default gives up after 500 ms).
async fn connect(addr: &str) -> redis::aio::MultiplexedConnection {
    connect_url(&format!("redis://{addr}/")).await
}

async fn connect_url(url: &str) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(url).unwrap();
    let config = redis::AsyncConnectionConfig::new()
        .set_response_timeout(Some(Duration::from_secs(15)))
        .set_connection_timeout(Some(Duration::from_secs(5)));
    client.get_multiplexed_async_connection_with_config(&config).await.unwrap()
}

async fn single(extra: &[&str]) -> (tempfile::TempDir, Node) {
    let dir = tempfile::tempdir().unwrap();
    let mut n = Node::new(1, dir.path(), extra);
    n.wait_ready().await;
    (dir, n)
}

/// Sends `input` on a fresh connection and reads until the server closes it or `want` bytes
/// arrived.
async fn raw(addr: &str, input: &[u8], want: usize) -> Vec<u8> {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(input).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while out.len() < want {
        match tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => panic!("no answer in time; got {:?}", String::from_utf8_lossy(&out)),
        }
    }
    out
}

// Every node answers every command: writes through followers are forwarded to the leader and
// read back linearizably from any node, pipelines keep their order (a read after a write in
// the same pipeline sees it), and MULTI/EXEC and WATCH work through a follower.
#[tokio::test]
async fn the_redis_crate_works_against_every_node() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    let mut cons = Vec::new();
    for n in &cluster.nodes {
        cons.push(connect(&n.redis).await);
    }
    for (i, con) in cons.iter_mut().enumerate() {
        let key = format!("k{i}");
        let _: () = con.set(&key, format!("v{i}")).await.unwrap();
        // Read back on every node: linearizable reads see the acknowledged write.
        for other in 0..3 {
            let got: String = cluster_get(&cluster, other, &key).await;
            assert_eq!(got, format!("v{i}"), "node {other} reads {key}");
        }
    }
    let follower = (leader + 1) % 3;
    let con = &mut cons[follower];
    // A pipeline through a follower: 50 increments then a read, in order.
    let mut pipe = redis::pipe();
    for _ in 0..50 {
        pipe.incr("p", 1);
    }
    pipe.get("p");
    let replies: Vec<redis::Value> = pipe.query_async(con).await.unwrap();
    assert_eq!(replies.len(), 51);
    assert_eq!(replies[49], redis::Value::Int(50));
    assert_eq!(replies[50], redis::Value::BulkString(b"50".to_vec()));
    // Reads and writes interleaved in one pipeline: each read sees the writes before it.
    let replies: Vec<redis::Value> = redis::pipe()
        .set("x", "1")
        .get("x")
        .get("nope")
        .mget(&["x", "nope"])
        .exists(&["x", "nope", "x"])
        .strlen("x")
        .ttl("x")
        .incr("x", 41)
        .get("x")
        .query_async(con)
        .await
        .unwrap();
    use redis::Value::{Array, BulkString, Int, Nil, Okay};
    assert_eq!(
        replies,
        vec![
            Okay,
            BulkString(b"1".to_vec()),
            Nil,
            Array(vec![BulkString(b"1".to_vec()), Nil]),
            Int(2),
            Int(1),
            Int(-1),
            Int(42),
            BulkString(b"42".to_vec()),
        ]
    );
    // Atomic commands decide in the state machine.
    let set: bool =
        redis::cmd("SET").arg("once").arg("a").arg("NX").query_async(con).await.unwrap();
    let again: bool =
        redis::cmd("SET").arg("once").arg("b").arg("NX").query_async(con).await.unwrap();
    assert!(set && !again);
    let old: String = redis::cmd("GETSET").arg("once").arg("c").query_async(con).await.unwrap();
    assert_eq!(old, "a");
    // MULTI/EXEC through a follower: one log entry, replies in order.
    let (a, b, c): (i64, i64, String) =
        redis::pipe().atomic().incr("t", 5).incr("t", 1).get("t").query_async(con).await.unwrap();
    assert_eq!((a, b, c.as_str()), (5, 6, "6"));
    // WATCH: a change by another client between WATCH and EXEC makes EXEC return nil.
    let _: () = redis::cmd("WATCH").arg("w").query_async(con).await.unwrap();
    let other = &mut cons[leader];
    let _: () = other.set("w", "theirs").await.unwrap();
    let con = &mut cons[follower];
    let r: Option<(String,)> =
        redis::pipe().atomic().set("w", "mine").ignore().get("w").query_async(con).await.unwrap();
    assert_eq!(r, None, "the watched key changed: EXEC aborts");
    let got: String = con.get("w").await.unwrap();
    assert_eq!(got, "theirs");
    // RESP3 on the leader: HELLO 3, a null is `_`, a map is a map.
    let mut c3 =
        connect_url(&format!("redis://{}/?protocol=resp3", cluster.nodes[leader].redis)).await;
    let v: redis::Value = redis::cmd("GET").arg("missing").query_async(&mut c3).await.unwrap();
    assert_eq!(v, redis::Value::Nil);
    let hello: redis::Value = redis::cmd("HELLO").arg("3").query_async(&mut c3).await.unwrap();
    assert!(matches!(hello, redis::Value::Map(_)), "{hello:?}");
}

async fn cluster_get(cluster: &Cluster, node: usize, key: &str) -> String {
    let mut con = connect(&cluster.nodes[node].redis).await;
    con.get(key).await.unwrap()
}

// A leader SIGKILLed while clients on every node increment one counter and write their own
// keys: every acknowledged write is there afterwards, and the counter holds exactly the
// acknowledged increments plus some of those whose outcome is unknown.
#[tokio::test]
async fn acknowledged_writes_survive_a_leader_kill() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    let addrs: Vec<String> = cluster.nodes.iter().map(|n| n.redis.clone()).collect();
    let round = |round: usize, addrs: Vec<String>| async move {
        let mut tasks = Vec::new();
        for (c, addr) in addrs.iter().enumerate() {
            let addr = addr.clone();
            tasks.push(tokio::spawn(async move {
                let mut con = connect(&addr).await;
                let (mut ok, mut unknown, mut keys) = (0u64, 0u64, Vec::new());
                for i in 0..30 {
                    match con.incr::<_, _, i64>("counter", 1).await {
                        Ok(_) => ok += 1,
                        Err(_) => unknown += 1,
                    }
                    let key = format!("r{round}c{c}i{i}");
                    if con.set::<_, _, ()>(&key, i).await.is_ok() {
                        keys.push((key, i));
                    }
                }
                (ok, unknown, keys)
            }));
        }
        let mut total = (0, 0, Vec::new());
        for t in tasks {
            let (ok, unknown, keys) = t.await.unwrap();
            total.0 += ok;
            total.1 += unknown;
            total.2.extend(keys);
        }
        total
    };
    let first = round(0, addrs.clone()).await;
    cluster.nodes[leader].kill();
    let survivors: Vec<String> =
        addrs.iter().enumerate().filter(|(i, _)| *i != leader).map(|(_, a)| a.clone()).collect();
    let second = round(1, survivors.clone()).await;
    let (ok, unknown) = (first.0 + second.0, first.1 + second.1);
    let mut con = connect(&survivors[0]).await;
    let value: u64 = con.get("counter").await.unwrap();
    assert!(
        value >= ok && value <= ok + unknown,
        "counter {value}: {ok} increments answered, {unknown} unknown"
    );
    assert!(second.0 > 0, "increments went through after the kill");
    let mut acked = first.2;
    acked.extend(second.2);
    assert!(!acked.is_empty());
    for (key, i) in acked {
        let got: Option<i64> = con.get(&key).await.unwrap();
        assert_eq!(got, Some(i), "acknowledged write {key} is readable");
    }
}

// AUTH: with an admin token every command but AUTH/HELLO/QUIT is -NOAUTH until AUTH; a wrong
// password is -WRONGPASS; with a separate resp_password, only the admin token may FLUSHALL.
#[tokio::test]
async fn auth_guards_every_command() {
    let (_d, n) = single(&["--admin-token", "adm", "--resp-password", "pw"]).await;
    let mut s = tokio::net::TcpStream::connect(&n.redis).await.unwrap();
    let steps: &[(&[u8], &str)] = &[
        (b"GET k\r\n", "-NOAUTH Authentication required.\r\n"),
        (b"AUTH nope\r\n", "-WRONGPASS invalid username-password pair or user is disabled.\r\n"),
        (b"AUTH pw\r\n", "+OK\r\n"),
        (b"SET k v\r\n", "+OK\r\n"),
        (b"GET k\r\n", "$1\r\nv\r\n"),
        (b"FLUSHALL\r\n", "-NOPERM"),
        (b"AUTH default adm\r\n", "+OK\r\n"),
        (b"FLUSHALL\r\n", "+OK\r\n"),
        (b"GET k\r\n", "$-1\r\n"),
    ];
    for (send, want) in steps {
        s.write_all(send).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n =
            tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await.unwrap().unwrap();
        let got = String::from_utf8_lossy(&buf[..n]);
        assert!(got.starts_with(want), "{:?}: got {got:?}", String::from_utf8_lossy(send));
    }
}

// Hostile input: a bulk longer than the limit, a negative count, a huge count, a missing `$`
// each get `-ERR Protocol error` and the connection closes; the node keeps serving; an unknown
// command is an error, never a hang; the client limit turns the next connection away.
#[tokio::test]
async fn hostile_input_is_refused_and_the_node_keeps_serving() {
    let (_d, n) = single(&["--resp-max-clients", "2", "--max-value-bytes", "1024"]).await;
    for (input, want) in [
        (&b"*1\r\n$99999999999\r\n"[..], "-ERR Protocol error: invalid bulk length\r\n"),
        (b"*2\r\n$3\r\nGET\r\n$-5\r\n", "-ERR Protocol error: invalid bulk length\r\n"),
        (b"*999999999\r\n", "-ERR Protocol error: invalid multibulk length\r\n"),
        (b"*1\r\n+PING\r\n", "-ERR Protocol error: expected '$', got '+'\r\n"),
        (b"SET \"unterminated\r\n", "-ERR Protocol error: unbalanced quotes in request\r\n"),
    ] {
        let out = raw(&n.redis, input, usize::MAX).await;
        assert_eq!(String::from_utf8_lossy(&out), want, "{:?}", String::from_utf8_lossy(input));
    }
    // A value over max_value_bytes (within the frame bound) is an error, and nothing changes.
    let big = "x".repeat(2000);
    let cmd = format!("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2000\r\n{big}\r\nGET k\r\nNOPE 1\r\n");
    let out = raw(&n.redis, cmd.as_bytes(), 100).await;
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("-ERR string exceeds maximum allowed size"), "{text}");
    assert!(
        text.contains("\r\n$-1\r\n-ERR unknown command 'NOPE', with args beginning with: '1' \r\n"),
        "{text}"
    );
    // A transaction is bounded (one log entry): past 256 queued commands each is refused and
    // EXEC discards it.
    let mut input = b"MULTI\r\n".to_vec();
    for _ in 0..300 {
        input.extend_from_slice(b"PING\r\n");
    }
    input.extend_from_slice(b"EXEC\r\n");
    let end = b"-EXECABORT Transaction discarded because of previous errors.\r\n";
    let want = 5 + 256 * 9 + end.len();
    let out = raw(&n.redis, &input, want + 44 * 60).await;
    let text = String::from_utf8_lossy(&out);
    assert_eq!(text.matches("+QUEUED").count(), 256, "{text}");
    assert_eq!(text.matches("-ERR a transaction holds at most 256 commands").count(), 44);
    assert!(text.ends_with(std::str::from_utf8(end).unwrap()), "{text}");
    // The client limit: two open connections, the third is turned away. The connections above
    // close asynchronously on the node's side: first wait until it counts only `a`.
    let client = redis::Client::open(format!("redis://{}/", n.redis)).unwrap();
    let mut a = None;
    for _ in 0..500 {
        if let Ok(c) = client.get_multiplexed_async_connection().await {
            a = Some(c);
            break;
        }
    }
    let mut a = a.expect("a connection slot frees up");
    let mut alone = false;
    for _ in 0..500 {
        let list: String = redis::cmd("CLIENT").arg("LIST").query_async(&mut a).await.unwrap();
        if list.lines().count() == 1 {
            alone = true;
            break;
        }
    }
    assert!(alone, "the closed connections leave the node's client list");
    let _b = connect(&n.redis).await;
    let out = raw(&n.redis, b"PING\r\n", usize::MAX).await;
    assert_eq!(String::from_utf8_lossy(&out), "-ERR max number of clients reached\r\n");
    let pong: String = redis::cmd("PING").query_async(&mut a).await.unwrap();
    assert_eq!(pong, "PONG", "the node keeps serving");
}

/// A missing tool skips the test with a note, unless `.ci/run` said the tools are required.
fn skip_or_fail(tool: &str) {
    assert!(
        std::env::var_os("SIMPLE_CACHE_REDIS_TOOLS_REQUIRED").is_none(),
        "{tool} is required here (.ci/run installs redis-tools) but is not installed"
    );
    eprintln!("note: {tool} is not installed; skipping (CI installs redis-tools)");
}

/// Runs a program with `args` and `input` on stdin; `None` if it is not installed.
fn run_tool(program: &str, args: &[&str], input: &str) -> Option<std::process::Output> {
    use std::io::Write;
    let mut child = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .ok()?;
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    Some(child.wait_with_output().unwrap())
}

// A scripted redis-cli session (what an operator types), answered as Redis answers it.
#[tokio::test]
async fn a_redis_cli_session() {
    let (_d, n) = single(&[]).await;
    let port = n.redis.rsplit(':').next().unwrap().to_string();
    let script = "SET greeting hello\nAPPEND greeting \", world\"\nGET greeting\nSTRLEN greeting\n\
                  INCR visits\nINCRBY visits 10\nEXPIRE greeting 100\nTTL greeting\n\
                  MSET a 1 b 2\nMGET a b nope\nDEL a b nope\nEXISTS a greeting\nTYPE greeting\n\
                  RENAME greeting hi\nGETRANGE hi 0 4\nDBSIZE\nNOSUCH cmd\n";
    let Some(out) = run_tool("redis-cli", &["-p", &port], script) else {
        skip_or_fail("redis-cli");
        return;
    };
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    let expected = [
        "OK",
        "12",
        "hello, world",
        "12",
        "1",
        "11",
        "1",
        "100",
        "OK",
        "1",
        "2",
        "",
        "2",
        "1",
        "string",
        "OK",
        "hello",
        "2",
        "ERR unknown command 'NOSUCH', with args beginning with: 'cmd' ",
        // redis-cli ends an error reply with an empty line.
        "",
    ];
    assert_eq!(lines, expected, "{text}");
}

// redis-benchmark's SET, GET, INCR and MSET, pipelined 16 deep: it completes without errors and
// the counter it incremented holds every increment.
#[tokio::test]
async fn redis_benchmark_runs() {
    let (_d, n) = single(&[]).await;
    let port = n.redis.rsplit(':').next().unwrap().to_string();
    let args = ["-p", &port, "-t", "set,get,incr,mset", "-P", "16", "-n", "2000", "-c", "8", "-q"];
    let Some(out) = run_tool("redis-benchmark", &args, "") else {
        skip_or_fail("redis-benchmark");
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    for t in ["SET:", "GET:", "INCR:", "MSET (10 keys):"] {
        assert!(text.contains(t), "{t} in {text}");
    }
    assert!(!text.contains("ERR"), "{text}");
    let mut con = connect(&n.redis).await;
    let counter: i64 = con.get("counter:__rand_int__").await.unwrap();
    assert_eq!(counter, 2000, "every INCR counted");
    // The requests are in the metrics, under api="resp".
    let url = format!("http://{}/metrics", n.metrics);
    let text = common::client().get(url).send().await.unwrap().text().await.unwrap();
    let line = text
        .lines()
        .find(|l| {
            l.starts_with("simple_cache_api_requests_total{")
                && l.contains(r#"api="resp""#)
                && l.contains(r#"op="incr""#)
                && l.contains(r#"code="200""#)
        })
        .unwrap_or_else(|| panic!("no resp incr counter in\n{text}"));
    let n: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(n >= 2000.0, "{line}");
}

// READONLY makes a connection's reads local: with the quorum gone, a linearizable GET on the
// survivor cannot answer, while after READONLY it answers from the node's own state; READWRITE
// turns linearizable reads back on.
#[tokio::test]
async fn readonly_reads_are_local() {
    let mut cluster = Cluster::start_with(3, &["--request-timeout-ms", "1500"]).await;
    let leader = cluster.leader().await;
    let survivor = (leader + 1) % 3;
    let mut con = connect(&cluster.nodes[leader].redis).await;
    let _: () = con.set("k", "v").await.unwrap();
    let mut s = connect(&cluster.nodes[survivor].redis).await;
    let got: String = s.get("k").await.unwrap();
    assert_eq!(got, "v", "the survivor has the write");
    for i in 0..3 {
        if i != survivor {
            cluster.nodes[i].kill();
        }
    }
    let r: redis::RedisResult<Option<String>> = s.get("k").await;
    assert!(r.is_err(), "no quorum, no linearizable read: {r:?}");
    let _: () = redis::cmd("READONLY").query_async(&mut s).await.unwrap();
    let got: Option<String> = s.get("k").await.unwrap();
    assert_eq!(got.as_deref(), Some("v"), "a local read");
    let _: () = redis::cmd("READWRITE").query_async(&mut s).await.unwrap();
    let r: redis::RedisResult<Option<String>> = s.get("k").await;
    assert!(r.is_err(), "linearizable again: {r:?}");
}

// WAIT on the leader counts the other members that have the connection's writes: both
// followers, then, with one of them killed, one (after waiting out the timeout for a second).
// A follower knows no progress and answers what every acknowledged write guarantees.
#[tokio::test]
async fn wait_counts_the_replicas_that_have_the_write() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    let mut con = connect(&cluster.nodes[leader].redis).await;
    let _: () = con.set("w", "1").await.unwrap();
    let n: i64 = redis::cmd("WAIT").arg(2).arg(5000).query_async(&mut con).await.unwrap();
    assert_eq!(n, 2, "both followers have the write");
    let follower = (leader + 1) % 3;
    let mut f = connect(&cluster.nodes[follower].redis).await;
    let n: i64 = redis::cmd("WAIT").arg(0).arg(0).query_async(&mut f).await.unwrap();
    assert_eq!(n, 1, "a follower answers the majority's guarantee");
    cluster.nodes[(leader + 2) % 3].kill();
    let _: () = con.set("w", "2").await.unwrap();
    let n: i64 = redis::cmd("WAIT").arg(2).arg(300).query_async(&mut con).await.unwrap();
    assert_eq!(n, 1, "one follower is gone");
    let n: i64 = redis::cmd("WAIT").arg(1).arg(0).query_async(&mut con).await.unwrap();
    assert_eq!(n, 1);
}
