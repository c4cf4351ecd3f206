//! `simple-cache-ctl`: the command-line client, as `etcdctl` is to etcd. It talks to the nodes'
//! client HTTP API (the same routes a curl user has), tries the `--endpoints` in order until one
//! answers, and builds data directories from backups offline.
//!
//! Exit statuses ([`Exit`]): 0 done, 1 the key is not there (get, ttl, del, expire), 2 usage
//! (clap's own), 3 no endpoint could answer (unreachable, no leader, shutting down), 4 the
//! request, a certificate or the file was refused (the server's error, a TLS handshake, a
//! corrupt backup).

use crate::restore::{RestoreSpec, restore};
use bytes::Bytes;
use clap::{Parser, Subcommand, ValueEnum};
use serde_json::{Value, json};
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

/// How `simple-cache-ctl` ends; see the module documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    Ok = 0,
    NotFound = 1,
    Usage = 2,
    Unavailable = 3,
    Refused = 4,
}

#[derive(Parser, Debug)]
#[command(
    name = "simple-cache-ctl",
    version,
    about = "Command-line client for simple-cache clusters",
    after_help = "Exit status: 0 done, 1 key not found (get, ttl, del, expire), 2 usage, \
                  3 no endpoint could answer, 4 the request, a certificate or the file was \
                  refused."
)]
pub struct Ctl {
    /// Client HTTP addresses of the nodes, tried in order until one answers.
    #[arg(
        long,
        env = "SIMPLE_CACHE_ENDPOINTS",
        value_delimiter = ',',
        default_value = "127.0.0.1:8080",
        global = true
    )]
    pub endpoints: Vec<String>,
    /// The admin token (`admin_token` of the nodes), for reset, cluster and snapshot commands.
    #[arg(long, env = "SIMPLE_CACHE_ADMIN_TOKEN", hide_env_values = true, global = true)]
    pub admin_token: Option<String>,
    /// How answers are printed.
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Table, global = true)]
    pub output: Output,
    /// CA bundle (PEM) the nodes' certificates must chain to; endpoints given as host:port are
    /// then reached with https.
    #[arg(long, env = "SIMPLE_CACHE_CACERT", global = true)]
    pub cacert: Option<PathBuf>,
    /// Client certificate (PEM), for nodes with client_cert_auth; needs --key and --cacert.
    #[arg(long = "cert", id = "tls_cert", env = "SIMPLE_CACHE_CERT", global = true)]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --cert.
    #[arg(long = "key", id = "tls_key", env = "SIMPLE_CACHE_KEY", global = true)]
    pub tls_key: Option<PathBuf>,
    /// How long one request to one endpoint may take, in seconds.
    #[arg(long, default_value_t = 10, global = true)]
    pub timeout_secs: u64,
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Plain text, one line per item.
    Table,
    /// The server's JSON answer.
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Print a key's value (linearizable unless --stale).
    Get {
        key: String,
        /// Read the answering node's local copy, without a leader round trip.
        #[arg(long)]
        stale: bool,
    },
    /// Store a value (a string; with --json, any JSON value).
    Set {
        key: String,
        value: String,
        /// Time to live, as "30s", "1m30s", "2h"; none by default.
        #[arg(long)]
        ttl: Option<String>,
        /// VALUE is JSON (a number, an object...) rather than a string.
        #[arg(long)]
        json: bool,
    },
    /// Delete a key.
    Del { key: String },
    /// Print a key's remaining time to live.
    Ttl { key: String },
    /// Expire a key now, or after DURATION ("10s").
    Expire { key: String, duration: Option<String> },
    /// List keys matching a glob pattern (or a regex with --regex), sorted.
    Search {
        pattern: String,
        #[arg(long)]
        regex: bool,
        /// At most this many keys (the server caps it at 10000).
        #[arg(long, default_value_t = 1000)]
        limit: u32,
    },
    /// Delete every key (needs --yes).
    Reset {
        #[arg(long)]
        yes: bool,
    },
    /// Membership and leadership.
    #[command(subcommand)]
    Cluster(ClusterCmd),
    /// Backups: save one from a running cluster, check one, or build a member's data directory
    /// from one.
    #[command(subcommand)]
    Snapshot(SnapshotCmd),
    /// Whether the first endpoint's node is alive (`/healthz`), or with --ready ready to serve
    /// (`/readyz`: a leader known, caught up); for container health checks. Exit 0 or 3.
    Health {
        #[arg(long)]
        ready: bool,
    },
    /// Print a shell completion script.
    Completions { shell: clap_complete::Shell },
}

#[derive(Subcommand, Debug)]
pub enum ClusterCmd {
    /// One line per member: id, addresses, role, term, commit and applied index, replication
    /// lag, last contact, health.
    Status,
    /// Add a node as a learner; it is promoted to voter once caught up (automatically).
    Join {
        /// The node's id.
        #[arg(long)]
        id: u64,
        /// Its Raft address (host:port).
        #[arg(long)]
        addr: String,
        /// Its client HTTP address (host:port).
        #[arg(long)]
        http_addr: Option<String>,
        /// Add it even if it does not answer at --addr yet (it stays a learner until it does).
        #[arg(long)]
        force: bool,
    },
    /// Remove a member (voter or learner).
    Leave {
        #[arg(long)]
        id: u64,
    },
    /// Hand leadership to a voter.
    Transfer {
        #[arg(long)]
        id: u64,
    },
    /// One member as the leader sees it (voter, match index, last contact): exit 0 if it is a
    /// member, 1 if not, 3 if no endpoint answered. Start scripts use it to tell a first start
    /// from a member that lost its data.
    Member {
        #[arg(long)]
        id: u64,
    },
}

#[derive(Subcommand, Debug)]
pub enum SnapshotCmd {
    /// Stream a consistent backup (at a linearizable point) into FILE, its checksum checked as
    /// it arrives (`snapshot status` also decodes the cache in it).
    Save { file: PathBuf },
    /// Check a backup file and print what it holds.
    Status { file: PathBuf },
    /// Build the data directory of one member of a new cluster from a backup (offline; run it
    /// for every member with the same FILE and --peers, then start the nodes).
    Restore {
        file: PathBuf,
        /// The new data directory (must not exist or be empty).
        #[arg(long)]
        data_dir: PathBuf,
        /// This member's id.
        #[arg(long)]
        node_id: u64,
        /// The new cluster's voters: id=raft_addr@http_addr,...
        #[arg(long)]
        peers: String,
    },
}

/// A failure, with the status to exit with.
#[derive(Debug)]
pub struct Failed {
    pub exit: Exit,
    pub message: String,
}

fn failed(exit: Exit, message: impl Into<String>) -> Failed {
    Failed { exit, message: message.into() }
}

/// Runs one command; prints its answer on stdout.
pub async fn run(ctl: Ctl) -> Result<Exit, Failed> {
    let client = Client::new(&ctl)?;
    let out = ctl.output;
    match ctl.command {
        Cmd::Get { key, stale } => {
            let path = key_path(&key, "")?;
            let query = if stale { "?consistency=stale" } else { "" };
            let v = client.json("GET", &format!("{path}{query}"), None).await?;
            if v["found"] != json!(true) {
                print_json_or(out, &v, || format!("{key}: not found"));
                return Ok(Exit::NotFound);
            }
            if out == Output::Table && v["encoding"] == json!("base64") {
                // Raw bytes (written over RESP or gRPC): print them as they are.
                use base64::Engine;
                let text = v["value"].as_str().unwrap_or_default();
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .map_err(|e| failed(Exit::Refused, format!("a broken answer: {e}")))?;
                let mut stdout = std::io::stdout().lock();
                let _ = stdout.write_all(&bytes).and_then(|()| stdout.write_all(b"\n"));
                return Ok(Exit::Ok);
            }
            print_json_or(out, &v, || match &v["value"] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            });
        }
        Cmd::Set { key, value, ttl, json } => {
            let value = if json {
                serde_json::from_str(&value)
                    .map_err(|e| failed(Exit::Usage, format!("VALUE is not JSON: {e}")))?
            } else {
                Value::String(value)
            };
            let mut body = json!({ "value": value });
            if let Some(t) = ttl {
                body["expire"] = json!(t);
            }
            let v = client.json("PUT", &key_path(&key, "")?, Some(body)).await?;
            print_json_or(out, &v, || format!("OK revision {}", v["revision"]));
        }
        Cmd::Del { key } => {
            let v = client.json("DELETE", &key_path(&key, "")?, None).await?;
            print_json_or(out, &v, || {
                if v["existed"] == json!(true) { "deleted".into() } else { "not found".into() }
            });
            if v["existed"] != json!(true) {
                return Ok(Exit::NotFound);
            }
        }
        Cmd::Ttl { key } => {
            let v = client.json("GET", &key_path(&key, "/ttl")?, None).await?;
            if v["found"] != json!(true) {
                print_json_or(out, &v, || format!("{key}: not found"));
                return Ok(Exit::NotFound);
            }
            print_json_or(out, &v, || match v["ttl_ms"].as_u64() {
                Some(ms) => format!("{:.3}s", ms as f64 / 1000.0),
                None => "none".to_string(),
            });
        }
        Cmd::Expire { key, duration } => {
            let body = duration.map(|d| json!({ "expire": d }));
            let v = client.json("POST", &key_path(&key, "/expire")?, body).await?;
            let existed = v["existed"] == json!(true) || v["applied"] == json!(true);
            print_json_or(out, &v, || if existed { "OK".into() } else { "not found".into() });
            if !existed {
                return Ok(Exit::NotFound);
            }
        }
        Cmd::Search { pattern, regex, limit } => {
            let mode = if regex { "regex" } else { "wildcard" };
            let mut url = reqwest::Url::parse("http://x/v1/search").expect("a valid URL");
            url.query_pairs_mut()
                .append_pair("pattern", &pattern)
                .append_pair("mode", mode)
                .append_pair("limit", &limit.to_string());
            let path = format!("/v1/search?{}", url.query().unwrap_or_default());
            let v = client.json("GET", &path, None).await?;
            if out == Output::Json {
                println!("{v}");
            } else {
                for k in v["keys"].as_array().into_iter().flatten() {
                    println!("{}", k.as_str().unwrap_or_default());
                }
                if v["truncated"] == json!(true) {
                    eprintln!("(more keys matched: raise --limit or narrow the pattern)");
                }
            }
        }
        Cmd::Reset { yes } => {
            if !yes {
                return Err(failed(Exit::Usage, "reset deletes every key: pass --yes to confirm"));
            }
            let v = client.json("DELETE", "/v1", None).await?;
            print_json_or(out, &v, || format!("deleted {} keys", v["keys_cleared"]));
        }
        Cmd::Cluster(c) => return cluster(&client, out, c).await,
        Cmd::Snapshot(SnapshotCmd::Save { file }) => save(&client, out, &file).await?,
        Cmd::Snapshot(SnapshotCmd::Status { file }) => {
            let bytes = std::fs::read(&file)
                .map_err(|e| failed(Exit::Refused, format!("{}: {e}", file.display())))?;
            let len = bytes.len();
            let b = simple_cache_core::backup::read(Bytes::from(bytes))
                .map_err(|e| failed(Exit::Refused, format!("{}: {e}", file.display())))?;
            let m = &b.snapshot.meta;
            let v = json!({
                "index": m.last_index.0, "term": m.last_term.0, "keys": b.keys, "bytes": len,
                "crc32c": format!("{:08x}", b.crc32c),
                "voters": m.membership.voters.iter().map(|n| n.0).collect::<Vec<_>>(),
            });
            print_json_or(out, &v, || {
                format!(
                    "{}: {} keys, {len} bytes, crc32c {:08x}, {}",
                    file.display(),
                    b.keys,
                    b.crc32c,
                    simple_cache_core::backup::describe(m)
                )
            });
        }
        Cmd::Snapshot(SnapshotCmd::Restore { file, data_dir, node_id, peers }) => {
            let spec = RestoreSpec { file: &file, data_dir: &data_dir, node_id, peers: &peers };
            let report = restore(&spec).map_err(|e| failed(Exit::Refused, e))?;
            println!("{report}");
        }
        Cmd::Health { ready } => {
            let path = if ready { "/readyz" } else { "/healthz" };
            let first = client.endpoints.first();
            let first = first.ok_or_else(|| failed(Exit::Usage, "--endpoints lists no address"))?;
            let url = format!("{first}{path}");
            let r = client.http.get(&url).send().await;
            let (ok, text) = match r {
                Ok(r) => {
                    (r.status().is_success(), format!("{}: HTTP {}", url, r.status().as_u16()))
                }
                Err(e) => (false, format!("{url}: {}", describe(&e))),
            };
            println!("{text}");
            return Ok(if ok { Exit::Ok } else { Exit::Unavailable });
        }
        Cmd::Completions { shell } => {
            let mut cmd = <Ctl as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "simple-cache-ctl", &mut std::io::stdout());
        }
    }
    Ok(Exit::Ok)
}

fn print_json_or(out: Output, v: &Value, table: impl FnOnce() -> String) {
    match out {
        Output::Json => println!("{v}"),
        Output::Table => println!("{}", table()),
    }
}

/// `/v1/keys/<key, percent-encoded><suffix>`.
fn key_path(key: &str, suffix: &str) -> Result<String, Failed> {
    if key.is_empty() {
        return Err(failed(Exit::Usage, "a key cannot be empty"));
    }
    let mut url = reqwest::Url::parse("http://x/v1/keys/").expect("a valid URL");
    url.path_segments_mut().expect("a base URL").pop_if_empty().push(key);
    Ok(format!("{}{suffix}", url.path()))
}

async fn cluster(client: &Client, out: Output, c: ClusterCmd) -> Result<Exit, Failed> {
    let (path, body) = match c {
        ClusterCmd::Status => return status(client, out).await,
        ClusterCmd::Member { id } => {
            let peers = client.json("GET", "/cluster/peers", None).await?;
            let found = peers["members"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|m| m["id"] == json!(id))
                .cloned();
            return Ok(match found {
                Some(m) => {
                    print_json_or(out, &m, || {
                        format!(
                            "node {id}: {}, match index {}",
                            if m["voter"] == json!(true) { "voter" } else { "learner" },
                            m["match_index"]
                        )
                    });
                    Exit::Ok
                }
                None => {
                    print_json_or(out, &json!({ "id": id, "member": false }), || {
                        format!("node {id} is not a member")
                    });
                    Exit::NotFound
                }
            });
        }
        ClusterCmd::Join { id, addr, http_addr, force } => {
            let mut body = json!({ "id": id, "addr": addr, "force": force });
            if let Some(h) = http_addr {
                body["http_addr"] = json!(h);
            }
            ("/cluster/join", body)
        }
        ClusterCmd::Leave { id } => ("/cluster/leave", json!({ "id": id })),
        ClusterCmd::Transfer { id } => ("/cluster/transfer-leader", json!({ "id": id })),
    };
    let v = client.json("POST", path, Some(body)).await?;
    print_json_or(out, &v, || "OK".to_string());
    Ok(Exit::Ok)
}

/// `/cluster/peers` from the leader, and each member's own `/readyz`.
async fn status(client: &Client, out: Output) -> Result<Exit, Failed> {
    let peers = client.json("GET", "/cluster/peers", None).await?;
    let mut rows = Vec::new();
    let leader_commit = {
        let mut commit = None;
        for m in peers["members"].as_array().into_iter().flatten() {
            if m["leader"] == json!(true)
                && let Some(h) = m["http_addr"].as_str()
                && let Some(r) = client.readyz(h).await
            {
                commit = r["commit_index"].as_u64();
            }
        }
        commit
    };
    for m in peers["members"].as_array().into_iter().flatten() {
        let ready = match m["http_addr"].as_str() {
            Some(h) => client.readyz(h).await,
            None => None,
        };
        let health = match &ready {
            Some(r) if r["ready"] == json!(true) => "healthy".to_string(),
            Some(r) => format!("unhealthy: {}", r["error"].as_str().unwrap_or("not ready")),
            None => "unreachable".to_string(),
        };
        let lag =
            leader_commit.and_then(|c| m["match_index"].as_u64().map(|i| c.saturating_sub(i)));
        rows.push(json!({
            "id": m["id"], "raft_addr": m["addr"], "http_addr": m["http_addr"],
            "voter": m["voter"],
            "role": ready.as_ref().map_or(json!(null), |r| r["role"].clone()),
            "term": ready.as_ref().map_or(json!(null), |r| r["term"].clone()),
            "commit_index": ready.as_ref().map_or(json!(null), |r| r["commit_index"].clone()),
            "last_applied": ready.as_ref().map_or(json!(null), |r| r["last_applied"].clone()),
            "match_index": m["match_index"], "lag": lag,
            "last_contact_ms_ago": m["last_contact_ms_ago"], "health": health,
        }));
    }
    let unhealthy = rows.iter().filter(|r| r["health"] != json!("healthy")).count();
    if out == Output::Json {
        println!(
            "{}",
            json!({ "leader": peers["leader"], "term": peers["term"], "members": rows })
        );
    } else {
        let cell = |v: &Value| match v {
            Value::Null => "-".to_string(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        println!(
            "{:<4} {:<22} {:<22} {:<9} {:<6} {:>8} {:>8} {:>6} {:>9}  HEALTH",
            "ID", "RAFT", "HTTP", "ROLE", "TERM", "COMMIT", "APPLIED", "LAG", "CONTACT"
        );
        for r in &rows {
            let mut role = cell(&r["role"]);
            if r["voter"] == json!(false) {
                role = format!("{role}*");
            }
            let contact = match r["last_contact_ms_ago"].as_u64() {
                Some(ms) => format!("{ms}ms"),
                None => "-".to_string(),
            };
            println!(
                "{:<4} {:<22} {:<22} {:<9} {:<6} {:>8} {:>8} {:>6} {:>9}  {}",
                cell(&r["id"]),
                cell(&r["raft_addr"]),
                cell(&r["http_addr"]),
                role,
                cell(&r["term"]),
                cell(&r["commit_index"]),
                cell(&r["last_applied"]),
                cell(&r["lag"]),
                contact,
                cell(&r["health"]),
            );
        }
        if rows.iter().any(|r| r["voter"] == json!(false)) {
            println!("(* a learner: it is promoted to voter once caught up)");
        }
    }
    Ok(if unhealthy == 0 { Exit::Ok } else { Exit::Unavailable })
}

/// Streams `/admin/snapshot` into a temporary file beside FILE, checking it as it arrives
/// (`StreamCheck`: constant memory, whatever the cache's size), then renames it into place
/// (durably): FILE is either a complete backup whose checksum matched, or untouched.
async fn save(client: &Client, out: Output, file: &std::path::Path) -> Result<(), Failed> {
    let name = file.file_name().ok_or_else(|| failed(Exit::Usage, "FILE must name a file"))?;
    if file.is_dir() {
        return Err(failed(Exit::Usage, format!("{} is a directory: name a file", file.display())));
    }
    let tmp = file.with_file_name(format!(".{}.partial", name.to_string_lossy()));
    // Whatever goes wrong from here, the partial file goes too.
    let result = download(client, out, file, &tmp).await;
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

async fn download(
    client: &Client,
    out: Output,
    file: &std::path::Path,
    tmp: &std::path::Path,
) -> Result<(), Failed> {
    let io = |e: std::io::Error| failed(Exit::Refused, format!("{}: {e}", file.display()));
    let mut resp = client.send("GET", "/admin/snapshot", None).await?;
    let mut f = std::fs::File::create(tmp).map_err(io)?;
    // Checked as it arrives, in constant memory: magic, format, metadata, checksum.
    let mut check = simple_cache_core::backup::StreamCheck::new();
    let unusable = |e| failed(Exit::Refused, format!("the downloaded backup is unusable: {e}"));
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                check.feed(&chunk).map_err(unusable)?;
                f.write_all(&chunk).map_err(io)?;
            }
            Ok(None) => break,
            Err(e) => {
                return Err(failed(Exit::Unavailable, format!("the backup stream broke: {e}")));
            }
        }
    }
    f.sync_all().map_err(io)?;
    drop(f);
    let (meta, bytes, crc) = check.finish().map_err(unusable)?;
    std::fs::rename(tmp, file).map_err(io)?;
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    }
    let index = meta.last_index.0;
    let term = meta.last_term.0;
    let v = json!({
        "file": file.display().to_string(), "index": index, "term": term, "bytes": bytes,
        "crc32c": format!("{crc:08x}"),
    });
    print_json_or(out, &v, || {
        format!(
            "saved {}: index {index} (term {term}), {bytes} bytes, crc32c {crc:08x}",
            file.display()
        )
    });
    Ok(())
}

/// The endpoints and how to reach them.
struct Client {
    http: reqwest::Client,
    endpoints: Vec<String>,
    token: Option<String>,
    /// `http`, or `https` with --cacert.
    scheme: &'static str,
}

impl Client {
    fn new(ctl: &Ctl) -> Result<Client, Failed> {
        let cert_key = match (&ctl.tls_cert, &ctl.tls_key) {
            (Some(c), Some(k)) => Some((c.as_path(), k.as_path())),
            (None, None) => None,
            _ => return Err(failed(Exit::Usage, "--cert and --key go together")),
        };
        if cert_key.is_some() && ctl.cacert.is_none() {
            return Err(failed(Exit::Usage, "--cert needs --cacert (the nodes' CA bundle)"));
        }
        let tls = crate::tls::cli_client_config(ctl.cacert.as_deref(), cert_key)
            .map_err(|e| failed(Exit::Usage, e))?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let endpoints: Vec<String> = ctl
            .endpoints
            .iter()
            .map(|e| e.trim())
            .filter(|e| !e.is_empty())
            .map(|e| {
                let e = e.trim_end_matches('/');
                if e.contains("://") { e.to_string() } else { format!("{scheme}://{e}") }
            })
            .collect();
        let mut builder = reqwest::Client::builder();
        if let Some(tls) = tls {
            builder = builder.tls_backend_preconfigured(tls);
        } else {
            // Plain HTTP; https:// endpoints without --cacert are checked against the system's
            // trusted roots.
            crate::tls::install_default_provider();
            builder = builder.tls_backend_rustls();
        }
        let http = builder
            .connect_timeout(Duration::from_secs(2))
            .read_timeout(Duration::from_secs(ctl.timeout_secs.max(1)))
            .build()
            .map_err(|e| failed(Exit::Usage, format!("the HTTP client: {e}")))?;
        Ok(Client { http, endpoints, token: ctl.admin_token.clone(), scheme })
    }

    /// Sends to each endpoint in turn until one answers with something other than "try
    /// elsewhere": a connection failure, 429, or a 503 that says nothing happened (any 503 or
    /// failure for a read). Another 4xx or 5xx answer, or a write whose outcome is unknown, is
    /// returned as [`Failed`].
    async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<reqwest::Response, Failed> {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("a valid method");
        // A read may be sent anywhere again; a write only where the answer proves it did not
        // happen (otherwise a retried delete would find nothing and say "not found").
        let safe = method == reqwest::Method::GET;
        if self.endpoints.is_empty() {
            return Err(failed(Exit::Usage, "--endpoints lists no address"));
        }
        let mut tried = Vec::new();
        // A certificate refused (by either side) is a configuration problem, not an outage:
        // exit 4, so that a script does not take it for "no cluster is there".
        let mut tls_refused = false;
        for e in &self.endpoints {
            let mut req = self.http.request(method.clone(), format!("{e}{path}"));
            if let Some(t) = &self.token {
                req = req.bearer_auth(t);
            }
            if let Some(b) = &body {
                req = req.json(b);
            }
            match req.send().await {
                Ok(r) if r.status().is_success() => return Ok(r),
                Ok(r) if matches!(r.status().as_u16(), 429 | 503) => {
                    let status = r.status();
                    let v: Value = r.json().await.unwrap_or(Value::Null);
                    let text = format!("{e}: {}", error_text(&v, status.as_str()));
                    let code = v["code"].as_str().unwrap_or_default();
                    if !(safe || status.as_u16() == 429 || NOTHING_HAPPENED.contains(&code)) {
                        return Err(failed(Exit::Unavailable, unknown_outcome(&text)));
                    }
                    tried.push(text);
                }
                Ok(r) => {
                    let status = r.status();
                    let v: Value = r.json().await.unwrap_or(Value::Null);
                    let exit = if status == reqwest::StatusCode::NOT_FOUND
                        && v["code"] == json!("not_found")
                    {
                        Exit::NotFound
                    } else {
                        Exit::Refused
                    };
                    return Err(failed(exit, format!("{e}: {}", error_text(&v, status.as_str()))));
                }
                // Not connected: the request never left.
                Err(err) if err.is_connect() => {
                    let why = describe(&err);
                    tls_refused |= tls_failure(&why);
                    tried.push(format!("{e}: {why}"));
                }
                Err(err) if safe => {
                    let why = describe(&err);
                    tls_refused |= tls_failure(&why);
                    tried.push(format!("{e}: {why}"));
                }
                Err(err) => {
                    return Err(failed(
                        Exit::Unavailable,
                        unknown_outcome(&format!("{e}: {}", describe(&err))),
                    ));
                }
            }
        }
        let exit = if tls_refused { Exit::Refused } else { Exit::Unavailable };
        Err(failed(exit, format!("no endpoint answered: {}", tried.join("; "))))
    }

    async fn json(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, Failed> {
        let r = self.send(method, path, body).await?;
        r.json().await.map_err(|e| failed(Exit::Unavailable, format!("a broken answer: {e}")))
    }

    /// A member's `/readyz`, whatever its status; `None` if it does not answer.
    async fn readyz(&self, http_addr: &str) -> Option<Value> {
        let url = format!("{}://{http_addr}/readyz", self.scheme);
        let r = self.http.get(url).timeout(Duration::from_secs(2)).send().await.ok()?;
        r.json().await.ok()
    }
}

/// 503 codes that mean the request was not carried out, so another member may be asked.
const NOTHING_HAPPENED: &[&str] = &[
    "no_leader",
    "not_leader",
    "leader_address_unknown",
    "leader_not_ready",
    "shutting_down",
    "read_aborted",
    "overloaded",
    "transfer_in_progress",
    "superseded",
    "member_unreachable",
];

fn unknown_outcome(what: &str) -> String {
    format!(
        "{what}; the change may or may not have taken effect (not retried on another endpoint): \
         check before retrying"
    )
}

fn error_text(v: &Value, status: &str) -> String {
    match (v["code"].as_str(), v["error"].as_str()) {
        (Some(c), Some(e)) => format!("{c}: {e}"),
        _ => format!("HTTP {status}"),
    }
}

/// Whether a connection failed on TLS: a certificate or protocol refused, not a network
/// failure.
fn tls_failure(why: &str) -> bool {
    ["certificate", "alert", "Certificate", "handshake", "InvalidContentType", "CorruptMessage"]
        .iter()
        .any(|w| why.contains(w))
}

fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        // The innermost cause says why: refused, unreachable, or a certificate problem.
        let mut cause: &dyn std::error::Error = e;
        while let Some(s) = cause.source() {
            cause = s;
        }
        format!("cannot connect: {cause}")
    } else {
        crate::tls::error_chain(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // clap checks the definition only when it is used: a global flag whose id collides with a
    // subcommand's argument (`--key` against `get KEY`) parsed, then panicked at access.
    #[test]
    fn the_command_line_definition_is_consistent() {
        use clap::CommandFactory;
        Ctl::command().debug_assert();
        let parsed = Ctl::try_parse_from([
            "simple-cache-ctl",
            "--cacert",
            "ca.pem",
            "--cert",
            "c.pem",
            "--key",
            "c.key",
            "get",
            "k",
        ])
        .expect("parses");
        assert_eq!(parsed.tls_key.as_deref(), Some(std::path::Path::new("c.key")));
        assert!(matches!(parsed.command, Cmd::Get { ref key, .. } if key == "k"));
    }
}
