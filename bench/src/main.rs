//! `simple-cache-bench`: drives a running simple-cache cluster over its HTTP API with C
//! concurrent keep-alive connections for D seconds and prints requests/s and latency percentiles.
//! Every run is bounded in time and in request count, and targets only the given URLs.
//!
//! ```text
//! simple-cache-bench --url http://127.0.0.1:8080 --op put --connections 64 --duration 10
//! ```

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Op {
    /// PUT of distinct keys.
    Put,
    /// Linearizable GET of preloaded keys.
    Get,
    /// Stale (local) GET of preloaded keys.
    GetStale,
    /// 90% linearizable GET, 10% PUT.
    Mixed,
    /// PUT each of the keys `key:000000000000` .. (`--keys` of them, 16 bytes each) exactly once,
    /// then stop: fills a cache for a memory measurement.
    Fill,
}

#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Client API base URL(s); connections are spread over them round-robin.
    #[arg(long, required = true, value_delimiter = ',')]
    url: Vec<String>,
    #[arg(long, value_enum, default_value = "put")]
    op: Op,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Seconds of load (at most 600).
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Bytes of each value.
    #[arg(long, default_value_t = 100)]
    value_bytes: usize,
    /// Keys preloaded for reads and read from.
    #[arg(long, default_value_t = 10_000)]
    keys: usize,
    /// Skip the preload of the read keys.
    #[arg(long)]
    no_preload: bool,
    /// Stop after this many requests in total, whatever the duration.
    #[arg(long, default_value_t = 50_000_000)]
    max_requests: u64,
    /// Print one JSON line instead of the human summary.
    #[arg(long)]
    json: bool,
    /// A label stored in the JSON line.
    #[arg(long, default_value = "simple-cache")]
    label: String,
    /// CA bundle (PEM) for https URLs.
    #[arg(long)]
    cacert: Option<std::path::PathBuf>,
    /// Client certificate (PEM) for nodes with client_cert_auth (with --key and --cacert).
    #[arg(long)]
    cert: Option<std::path::PathBuf>,
    /// Private key (PEM) of --cert.
    #[arg(long)]
    key: Option<std::path::PathBuf>,
}

/// A client builder, with the TLS settings of `args`.
fn client_builder(args: &Args) -> anyhow::Result<reqwest::ClientBuilder> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let builder = reqwest::Client::builder();
    let Some(ca) = &args.cacert else { return Ok(builder) };
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).context("--cacert")? {
        roots.add(c.context("--cacert")?)?;
    }
    let config = rustls::ClientConfig::builder().with_root_certificates(roots);
    let config = match (&args.cert, &args.key) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .context("--cert")?
                .collect::<Result<Vec<_>, _>>()
                .context("--cert")?;
            config
                .with_client_auth_cert(chain, PrivateKeyDer::from_pem_file(key).context("--key")?)?
        }
        (None, None) => config.with_no_client_auth(),
        _ => bail!("--cert and --key go together"),
    };
    Ok(builder.tls_backend_preconfigured(config))
}

struct Worker {
    latencies_us: Vec<u32>,
    errors: u64,
}

fn value_json(bytes: usize) -> String {
    // A JSON string of `bytes` characters: the stored value is those bytes plus two quotes.
    format!("\"{}\"", "x".repeat(bytes))
}

async fn put(client: &reqwest::Client, base: &str, key: &str, body: &str) -> anyhow::Result<()> {
    let r = client
        .put(format!("{base}/v1/{key}"))
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("PUT {key}: {}", r.status());
    }
    r.bytes().await?;
    Ok(())
}

async fn get(client: &reqwest::Client, base: &str, key: &str, stale: bool) -> anyhow::Result<()> {
    let url = if stale {
        format!("{base}/v1/{key}?consistency=stale")
    } else {
        format!("{base}/v1/{key}")
    };
    let r = client.get(url).send().await?;
    if !r.status().is_success() {
        bail!("GET {key}: {}", r.status());
    }
    r.bytes().await?;
    Ok(())
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    if args.connections == 0 || args.duration == 0 || args.duration > 600 {
        bail!("--connections must be > 0 and --duration within 1..=600 seconds");
    }
    let body = format!("{{\"value\":{}}}", value_json(args.value_bytes));
    let needs_preload = matches!(args.op, Op::Get | Op::GetStale | Op::Mixed);
    if needs_preload && !args.no_preload {
        let client = client_builder(&args)?.build()?;
        let base = &args.url[0];
        let per = args.keys.div_ceil(32);
        let mut tasks = Vec::new();
        for t in 0..32 {
            let (client, base, body) = (client.clone(), base.clone(), body.clone());
            let keys = args.keys;
            tasks.push(tokio::spawn(async move {
                for i in (t * per)..((t + 1) * per).min(keys) {
                    put(&client, &base, &format!("read-{i}"), &body).await?;
                }
                anyhow::Ok(())
            }));
        }
        for t in tasks {
            t.await?.context("preload")?;
        }
    }

    let deadline = Instant::now() + Duration::from_secs(args.duration);
    let per_worker_max = match args.op {
        Op::Fill => args.keys.div_ceil(args.connections) as u64,
        _ => args.max_requests / args.connections as u64 + 1,
    };
    let connections = args.connections;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..args.connections {
        // One client per worker: each keeps its own keep-alive connection.
        let client = client_builder(&args)?.pool_max_idle_per_host(1).build()?;
        let base = args.url[w % args.url.len()].clone();
        let (body, op, keys) = (body.clone(), args.op, args.keys.max(1));
        tasks.push(tokio::spawn(async move {
            let mut out = Worker { latencies_us: Vec::new(), errors: 0 };
            let mut i: u64 = 0;
            while Instant::now() < deadline && i < per_worker_max {
                let fill_index = w + i as usize * connections;
                i += 1;
                if op == Op::Fill && fill_index >= keys {
                    break;
                }
                let read_key = format!("read-{}", (i as usize * 7919 + w * 104_729) % keys);
                let t0 = Instant::now();
                let r = match op {
                    Op::Put => put(&client, &base, &format!("put-{w}-{i}"), &body).await,
                    Op::Get => get(&client, &base, &read_key, false).await,
                    Op::GetStale => get(&client, &base, &read_key, true).await,
                    Op::Mixed if i.is_multiple_of(10) => {
                        put(&client, &base, &format!("mix-{w}-{i}"), &body).await
                    }
                    Op::Mixed => get(&client, &base, &read_key, false).await,
                    Op::Fill => put(&client, &base, &format!("key:{fill_index:012}"), &body).await,
                };
                match r {
                    Ok(()) => {
                        out.latencies_us.push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32)
                    }
                    Err(_) => out.errors += 1,
                }
            }
            out
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let w = t.await?;
        latencies.extend(w.latencies_us);
        errors += w.errors;
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let ok = latencies.len() as f64;
    let rps = ok / elapsed;
    let (p50, p99, p999) =
        (percentile(&latencies, 0.50), percentile(&latencies, 0.99), percentile(&latencies, 0.999));
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "label": args.label, "op": format!("{:?}", args.op).to_lowercase(),
                "connections": args.connections, "duration_s": elapsed, "requests": ok,
                "errors": errors, "rps": rps, "p50_ms": p50, "p99_ms": p99, "p999_ms": p999,
                "value_bytes": args.value_bytes,
            })
        );
    } else {
        println!(
            "{:?} c={} {:.1}s: {:.0} req/s, p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms, {} errors",
            args.op, args.connections, elapsed, rps, p50, p99, p999, errors
        );
    }
    if ok == 0.0 {
        bail!("no request succeeded ({errors} errors)");
    }
    Ok(())
}
