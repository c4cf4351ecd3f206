//! TLS from the outside: certificates made at run time (rcgen), real processes, and clients and
//! peers that speak plain text, hold a certificate from another CA, or one for another address.

mod common;

use common::{BIN, Node, eventually, free_port};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{Value, json};
use simple_cache_core::NodeId;
use simple_cache_core::peer_wire::{self, Answer, FrameDecoder, HELLO_BYTES_MAX, Hello, PREAMBLE};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// A bound on every wait, so a broken node fails the test instead of hanging it.
const WAIT: Duration = Duration::from_secs(20);

/// A certificate authority made for one test.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let pem = params.self_signed(&key).unwrap().pem();
        Ca { issuer: Issuer::new(params, key), pem }
    }

    /// A certificate for `names` (DNS names or IP addresses): (certificate PEM, key PEM).
    fn issue(&self, names: &[&str]) -> (String, String) {
        self.issue_until(names, 2100)
    }

    /// A certificate for `names` valid until January 1st of `year`.
    fn issue_until(&self, names: &[&str], year: i32) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params.not_after = rcgen::date_time_ymd(year, 1, 1);
        params.distinguished_name.push(DnType::CommonName, "simple-cache test");
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// Writes the CA and a certificate for `names` into `dir` as `{stem}.pem`, `{stem}.key`
    /// and `ca.pem`; returns their paths.
    fn files(&self, dir: &Path, stem: &str, names: &[&str]) -> Files {
        std::fs::create_dir_all(dir).unwrap();
        let (cert, key) = self.issue(names);
        let f = Files {
            cert: dir.join(format!("{stem}.pem")),
            key: dir.join(format!("{stem}.key")),
            ca: dir.join("ca.pem"),
        };
        replace(&f.cert, &cert);
        replace(&f.key, &key);
        replace(&f.ca, &self.pem);
        f
    }
}

/// Writes `path` whole, as a rotation tool would (a reader never sees half a file).
fn replace(path: &Path, contents: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

struct Files {
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
}

impl Files {
    /// Flags for TLS on the client listeners (client certificates required) and between peers.
    fn node_flags(&self) -> Vec<String> {
        let (c, k, a) = (self.cert.display(), self.key.display(), self.ca.display().to_string());
        [
            ("--tls-cert-file", c.to_string()),
            ("--tls-key-file", k.to_string()),
            ("--tls-ca-file", a.clone()),
            ("--client-cert-auth", "true".to_string()),
            ("--peer-tls-cert-file", c.to_string()),
            ("--peer-tls-key-file", k.to_string()),
            ("--peer-tls-ca-file", a),
        ]
        .into_iter()
        .flat_map(|(f, v)| [f.to_string(), v])
        .collect()
    }

    fn chain(&self) -> Vec<CertificateDer<'static>> {
        CertificateDer::pem_file_iter(&self.cert).unwrap().map(|c| c.unwrap()).collect()
    }

    fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::from_pem_file(&self.key).unwrap()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A rustls client trusting `ca`, presenting `identity` if given.
fn client_config(ca: &Path, identity: Option<&Files>, alpn: &[&[u8]]) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let b = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match identity {
        Some(f) => b.with_client_auth_cert(f.chain(), f.private_key()).unwrap(),
        None => b.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

/// An HTTPS client trusting `ca`, presenting `identity` if given.
fn https(ca: &Path, identity: Option<&Files>) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_backend_preconfigured(client_config(ca, identity, &[]))
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn send(c: &reqwest::Client, method: &str, url: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = c.request(method.parse().unwrap(), url);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap_or_else(|e| panic!("{method} {url}: {e:?}"));
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// A TLS connection to `addr` (the name checked: its host), or the handshake's error.
async fn tls_connect(
    addr: &str,
    config: rustls::ClientConfig,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(addr.rsplit_once(':').unwrap().0.to_string()).unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await
}

/// Sends the peer protocol's preamble and `hello` on `s`; the node's answer, or `None` if it
/// closed (or failed) the connection without one.
async fn hello_answer<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    hello: &Hello,
) -> Option<Answer> {
    let mut out = PREAMBLE.to_vec();
    peer_wire::encode_frame(hello, &mut out);
    s.write_all(&out).await.ok()?;
    s.flush().await.ok()?;
    let mut d = FrameDecoder::new(HELLO_BYTES_MAX);
    tokio::time::timeout(WAIT, async {
        loop {
            if let Some(p) = d.next_frame().ok()? {
                return peer_wire::decode_frame::<Answer>(&p).ok();
            }
            match s.read_buf(d.buffer()).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("an answer or a close in time")
}

fn hello(from: u64, raft_addr: &str) -> Hello {
    Hello {
        from: NodeId(from),
        cluster_id: 0,
        token: None,
        raft_addr: raft_addr.into(),
        client_addr: "127.0.0.1:2".into(),
    }
}

/// A cluster of `n` members with TLS everywhere. Member *i* listens on 127.0.0.*i+1* and its
/// certificate names that address (and 127.0.0.1, where its gRPC and RESP listeners are), so a
/// member's certificate is valid for its own Raft address and no other member's.
struct TlsCluster {
    dir: tempfile::TempDir,
    nodes: Vec<Node>,
    files: Vec<Files>,
    ca: Ca,
}

impl TlsCluster {
    async fn start(n: u64) -> TlsCluster {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new("cluster CA");
        let addrs: Vec<(String, String, String)> = (1..=n)
            .map(|id| {
                let p = || format!("127.0.0.{}:{}", id + 1, free_port());
                (p(), p(), format!("127.0.0.1:{}", free_port()))
            })
            .collect();
        let peers = common::peers_arg(&addrs);
        let (mut nodes, mut files) = (Vec::new(), Vec::new());
        for (i, (http, raft, metrics)) in addrs.into_iter().enumerate() {
            let id = i as u64 + 1;
            let d = dir.path().join(format!("n{id}"));
            let own = format!("127.0.0.{}", id + 1);
            let f = ca.files(&d.join("tls"), "node", &[&own, "127.0.0.1"]);
            let mut extra: Vec<String> = ["--mode", "distributed", "--peers", &peers]
                .iter()
                .map(|s| s.to_string())
                .collect();
            extra.extend(f.node_flags());
            let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
            nodes.push(Node::with_addrs(id, &d, http, raft, metrics, &extra));
            files.push(f);
        }
        let c = TlsCluster { dir, nodes, files, ca };
        for n in &c.nodes {
            c.wait_ready(n).await;
        }
        c
    }

    /// An HTTPS client presenting member 1's certificate.
    fn client(&self) -> reqwest::Client {
        https(&self.files[0].ca, Some(&self.files[0]))
    }

    fn url(&self, n: &Node, path: &str) -> String {
        format!("https://{}{path}", n.http)
    }

    async fn wait_ready(&self, n: &Node) {
        let (c, url) = (self.client(), self.url(n, "/readyz"));
        let what = format!("node {} ready over TLS", n.id);
        eventually(&what, WAIT, || {
            let (c, url) = (c.clone(), url.clone());
            async move { (c.get(&url).send().await.ok()?.status() == 200).then_some(()) }
        })
        .await;
    }

    /// Every member's view of the leader, once they agree.
    async fn leader(&self) -> u64 {
        let c = self.client();
        let urls: Vec<String> = self.nodes.iter().map(|n| self.url(n, "/readyz")).collect();
        eventually("an agreed leader", WAIT, || {
            let (c, urls) = (c.clone(), urls.clone());
            async move {
                let mut leaders = std::collections::BTreeSet::new();
                for u in &urls {
                    let v: Value = c.get(u).send().await.ok()?.json().await.ok()?;
                    leaders.insert(v["leader"].as_u64()?);
                }
                (leaders.len() == 1).then(|| *leaders.first().unwrap())
            }
        })
        .await
    }
}

// The issue's "done when": a 3-node cluster entirely over mutual TLS. Writes through a follower
// (forwarded over the peer connection), linearizable reads on every member, a fourth member
// joining through a follower (the join forwarded to the leader's client port over TLS, the
// leader probing the new node's Raft port over mutual TLS), the CLI with its TLS flags, and the
// RESP and gRPC listeners in TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cluster_runs_entirely_over_mutual_tls() {
    let c = TlsCluster::start(3).await;
    let leader = c.leader().await;
    let follower = c.nodes.iter().find(|n| n.id != leader).unwrap();
    let client = c.client();
    for i in 0..20 {
        let url = c.url(follower, &format!("/v1/keys/k{i}"));
        let (status, v) = send(&client, "PUT", &url, Some(json!({"value": i}))).await;
        assert_eq!(status, 200, "write {i} through follower {}: {v}", follower.id);
    }
    for n in &c.nodes {
        let (status, v) = send(&client, "GET", &c.url(n, "/v1/keys/k19"), None).await;
        assert_eq!((status, &v["value"]), (200, &json!(19)), "node {}: {v}", n.id);
    }

    // Plain HTTP on the TLS port is told so, in plain HTTP.
    let (status, v) =
        common::call("GET", &format!("http://{}/v1/keys/k1", follower.http), None).await;
    assert_eq!((status, v["code"].as_str()), (400, Some("tls_required")), "{v}");
    // TLS without a client certificate is refused (client_cert_auth).
    let anonymous = https(&c.files[0].ca, None);
    let r = anonymous.get(c.url(follower, "/v1/keys/k1")).send().await;
    assert!(r.is_err(), "a client without a certificate was served: {r:?}");
    // A client certificate from another CA is refused too.
    let stranger = Ca::new("another CA").files(&c.dir.path().join("stranger"), "c", &["127.0.0.1"]);
    let config = client_config(&c.files[0].ca, Some(&stranger), &[]);
    let foreign = reqwest::Client::builder().tls_backend_preconfigured(config).build().unwrap();
    let r = foreign.get(c.url(follower, "/v1/keys/k1")).send().await;
    assert!(r.is_err(), "a client with another CA's certificate was served: {r:?}");

    // A fourth member, its own certificate, joining through a follower's client port.
    let d4 = c.dir.path().join("n4");
    let f4 = c.ca.files(&d4.join("tls"), "node", &["127.0.0.5", "127.0.0.1"]);
    let mut extra = vec!["--mode".to_string(), "distributed".into(), "--join".into()];
    extra.push(follower.http.clone());
    extra.extend(f4.node_flags());
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let at = |_| format!("127.0.0.5:{}", free_port());
    let n4 = Node::with_addrs(4, &d4, at(()), at(()), format!("127.0.0.1:{}", free_port()), &extra);
    // Asked of a follower: it forwards to the leader's client port, over TLS.
    let peers_url = c.url(follower, "/cluster/peers");
    eventually("node 4 a voter", WAIT, || {
        let (client, url) = (client.clone(), peers_url.clone());
        async move {
            let v: Value = client.get(&url).send().await.ok()?.json().await.ok()?;
            let members = v["members"].as_array()?.clone();
            members.iter().any(|m| m["id"] == json!(4) && m["voter"] == json!(true)).then_some(())
        }
    })
    .await;
    let url4 = format!("https://{}/v1/keys/k19?consistency=linearizable", n4.http);
    let v: Value = eventually("node 4 serving k19", WAIT, || {
        let (client, url) = (client.clone(), url4.clone());
        async move { client.get(&url).send().await.ok()?.json::<Value>().await.ok() }
    })
    .await;
    assert_eq!(v["value"], json!(19), "{v}\nnode 4's log:\n{}", n4.logs());

    // The CLI, with its TLS flags, over every member.
    let endpoints = c.nodes.iter().map(|n| n.http.clone()).collect::<Vec<_>>().join(",");
    let f = &c.files[0];
    let ctl = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_simple-cache-ctl"))
            .args(["--endpoints", &endpoints, "--cacert"])
            .arg(&f.ca)
            .arg("--cert")
            .arg(&f.cert)
            .arg("--key")
            .arg(&f.key)
            .args(args)
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned(), out.stderr)
    };
    let (code, _, err) = ctl(&["set", "cli", "over-tls"]);
    assert_eq!(code, Some(0), "{}", String::from_utf8_lossy(&err));
    let (code, out, _) = ctl(&["get", "cli"]);
    assert_eq!((code, out.trim()), (Some(0), "over-tls"));
    let (code, out, err) = ctl(&["cluster", "status"]);
    assert_eq!(code, Some(0), "{}", String::from_utf8_lossy(&err));
    assert_eq!(out.matches("healthy").count(), 4, "every member answers over TLS:\n{out}");
    // Without --cert, the CLI cannot get in: a refusal (4), not an outage (3).
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_simple-cache-ctl"))
        .args(["--endpoints", &endpoints, "--cacert"])
        .arg(&f.ca)
        .args(["get", "cli"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", String::from_utf8_lossy(&out.stderr));

    // RESP in TLS, with a client certificate.
    let mut s = tls_connect(&follower.redis, client_config(&f.ca, Some(f), &[])).await.unwrap();
    s.write_all(b"*2\r\n$3\r\nGET\r\n$3\r\ncli\r\n").await.unwrap();
    s.flush().await.unwrap();
    let mut buf = vec![0u8; 64];
    let n = tokio::time::timeout(WAIT, s.read(&mut buf)).await.unwrap().unwrap();
    // Set through HTTP as a JSON string, RESP reads its JSON text.
    assert_eq!(&buf[..n], b"$10\r\n\"over-tls\"\r\n");
    // Plain RESP on the TLS port gets a RESP error saying why.
    let mut plain = TcpStream::connect(&follower.redis).await.unwrap();
    plain.write_all(b"*1\r\n$4\r\nPING\r\n").await.unwrap();
    let mut text = String::new();
    tokio::time::timeout(WAIT, plain.read_to_string(&mut text)).await.unwrap().unwrap();
    assert!(text.starts_with("-ERR this port requires TLS"), "{text:?}");

    // gRPC in TLS (ALPN h2), with a client certificate.
    let config = Arc::new(client_config(&f.ca, Some(f), &[b"h2"]));
    let addr = follower.grpc.clone();
    let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1")
        .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
            let (config, addr) = (config.clone(), addr.clone());
            async move {
                let tcp = TcpStream::connect(&addr).await?;
                let name = ServerName::try_from("127.0.0.1").unwrap();
                let s = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(s))
            }
        }))
        .await
        .unwrap();
    use simple_cache_server::pb::{self, cache_service_client::CacheServiceClient};
    let got = CacheServiceClient::new(channel)
        .get(pb::GetRequest { key: "cli".into(), consistency: 0 })
        .await
        .unwrap()
        .into_inner();
    assert!(got.found, "{got:?}");
}

// Peers are authenticated by certificate: a plain-text peer gets a refusal saying TLS is
// required; a peer whose certificate comes from another CA is refused in the handshake (and a
// whole node with such a certificate never gets in); a peer with a good certificate for another
// address cannot claim a member's id. A good certificate for its own address is accepted (the
// control that shows the refusals are about the certificates).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn plaintext_and_foreign_peers_are_refused() {
    let c = TlsCluster::start(3).await;
    let target = &c.nodes[0];

    // Plain text, on the TLS Raft port.
    let mut plain = TcpStream::connect(&target.raft).await.unwrap();
    match hello_answer(&mut plain, &hello(2, &c.nodes[1].raft)).await {
        Some(Answer::Refused { reason, message }) => {
            assert_eq!(reason, peer_wire::Refusal::Unauthorized);
            assert!(message.contains("requires mutual TLS"), "{message}");
        }
        other => panic!("a plain-text peer got {other:?}"),
    }

    // Another CA's certificate, for the right address.
    let stranger = Ca::new("another CA").files(&c.dir.path().join("stranger"), "p", &["127.0.0.1"]);
    // It trusts the cluster's CA (so its side of the handshake succeeds); the node must not
    // trust it.
    // In TLS 1.3 the client's side of the handshake ends before the node has checked its
    // certificate: the refusal arrives as an alert on the first read.
    let config = client_config(&c.files[0].ca, Some(&stranger), &[]);
    let refused = match tls_connect(&target.raft, config).await {
        Err(e) => e.to_string(),
        Ok(mut s) => {
            let mut out = PREAMBLE.to_vec();
            peer_wire::encode_frame(&hello(2, &c.nodes[1].raft), &mut out);
            let _ = s.write_all(&out).await;
            let _ = s.flush().await;
            let mut buf = [0u8; 64];
            match tokio::time::timeout(WAIT, s.read(&mut buf)).await.expect("an answer in time") {
                Err(e) => e.to_string(),
                Ok(n) => panic!("a peer with another CA's certificate read {n} bytes"),
            }
        }
    };
    assert!(refused.contains("alert"), "not refused in the handshake: {refused}");

    // Member 3's own certificate (127.0.0.4), claiming to be member 2 (127.0.0.3), whatever
    // address its hello gives.
    let member3 = client_config(&c.files[0].ca, Some(&c.files[2]), &[]);
    let mut s = tls_connect(&target.raft, member3.clone()).await.unwrap();
    match hello_answer(&mut s, &hello(2, &c.nodes[2].raft)).await {
        Some(Answer::Refused { reason, message }) => {
            assert_eq!(reason, peer_wire::Refusal::Unauthorized);
            assert!(message.contains("not valid for 127.0.0.3"), "{message}");
        }
        other => panic!("member 3's certificate claimed member 2: {other:?}"),
    }
    // The control: the same certificate as itself is accepted.
    let mut s = tls_connect(&target.raft, member3).await.unwrap();
    let answer = hello_answer(&mut s, &hello(3, &c.nodes[2].raft)).await;
    assert!(matches!(answer, Some(Answer::Accepted { .. })), "{answer:?}");
    drop(s);

    // `POST /raft` (0.1's transport names senders in its body, beyond the certificate's
    // reach) is not served over peer TLS, even to a member's certificate.
    let member2 = https(&c.files[0].ca, Some(&c.files[1]));
    let url = format!("https://{}/raft", target.raft);
    let (status, v) = send(&member2, "POST", &url, Some(json!([]))).await;
    assert_eq!((status, v["code"].as_str()), (403, Some("framed_peers_only")), "{v}");

    // A whole node with another CA's certificate, joining through member 1's Raft port, never
    // gets in; the cluster is untouched.
    let d4 = c.dir.path().join("n4");
    let f4 = Ca::new("rogue CA").files(&d4.join("tls"), "node", &["127.0.0.1"]);
    // (It listens on 127.0.0.1, which no member's address uses.)
    let mut extra = vec!["--mode".to_string(), "distributed".into(), "--join".into()];
    extra.push(target.raft.clone());
    extra.extend(f4.node_flags());
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let n4 = Node::new(4, &d4, &extra);
    eventually("the rogue node's join refused", WAIT, || {
        let logs = n4.logs();
        async move { (logs.contains("join failed") && logs.contains("certificate")).then_some(()) }
    })
    .await;
    let (status, v) = send(&c.client(), "GET", &c.url(target, "/cluster/peers"), None).await;
    assert_eq!(status, 200);
    assert_eq!(v["members"].as_array().unwrap().len(), 3, "{v}");
    assert!(c.nodes[0].logs().contains("refused a peer connection"), "{}", c.nodes[0].logs());
}

/// A rustls client that records the server's certificate and trusts anything: the test reads
/// which certificate a node presents, not whether it is valid.
#[derive(Debug)]
struct Recorder;

impl rustls::client::danger::ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        provider().signature_verification_algorithms.supported_schemes()
    }
}

/// The certificate `addr` presents in a handshake.
async fn presented(addr: &str) -> CertificateDer<'static> {
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Recorder))
        .with_no_client_auth();
    let s = tls_connect(addr, config).await.unwrap();
    s.get_ref().1.peer_certificates().unwrap()[0].clone().into_owned()
}

// Certificate rotation without a restart: new files take effect for the next handshake; a
// half-written rotation (a new certificate with the old key) is refused with a log line and
// the node keeps serving with the pair it had.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_files_are_reloaded_when_they_change() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("rotation CA");
    let f = ca.files(&dir.path().join("tls"), "node", &["127.0.0.1"]);
    let flags = [
        "--tls-cert-file".to_string(),
        f.cert.display().to_string(),
        "--tls-key-file".into(),
        f.key.display().to_string(),
    ];
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let n = Node::new(1, dir.path(), &flags);
    let client = https(&f.ca, None);
    let url = format!("https://{}/readyz", n.http);
    eventually("the node ready over TLS", WAIT, || {
        let (client, url) = (client.clone(), url.clone());
        async move { (client.get(&url).send().await.ok()?.status() == 200).then_some(()) }
    })
    .await;
    let first = presented(&n.http).await;
    assert_eq!(first.as_ref(), f.chain()[0].as_ref());

    let metrics_url = format!("http://{}/metrics", n.metrics);
    let expiry = || async {
        let text = common::client().get(&metrics_url).send().await.unwrap().text().await.unwrap();
        let line = text
            .lines()
            .find(|l| l.starts_with("simple_cache_tls_certificate_expiry_timestamp_seconds{"))
            .map(str::to_string);
        line.and_then(|l| l.rsplit(' ').next()?.parse::<i64>().ok())
    };
    // 2100-01-01, the first certificate's end.
    eventually("the first expiry exported", WAIT, || async {
        (expiry().await == Some(4_102_444_800)).then_some(())
    })
    .await;

    // Half a rotation: a new certificate (valid until 2040), the old key.
    let (cert2, key2) = ca.issue_until(&["127.0.0.1"], 2040);
    replace(&f.cert, &cert2);
    eventually("the mismatch logged", WAIT, || {
        let logs = n.logs();
        async move { logs.contains("cannot be used").then_some(()) }
    })
    .await;
    assert!(n.logs().contains("does not hold the private key"), "{}", n.logs());
    assert_eq!(presented(&n.http).await.as_ref(), first.as_ref(), "the old pair stays");
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);

    // The key follows: the new pair takes effect.
    replace(&f.key, &key2);
    let second = CertificateDer::from_pem_slice(cert2.as_bytes()).unwrap();
    eventually("the new certificate presented", WAIT, || {
        let (addr, want) = (n.http.clone(), second.clone());
        async move { (presented(&addr).await.as_ref() == want.as_ref()).then_some(()) }
    })
    .await;
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
    // 2040-01-01, the new certificate's end.
    eventually("the new expiry exported", WAIT, || async {
        (expiry().await == Some(2_208_988_800)).then_some(())
    })
    .await;
}

// A node refuses to start on TLS files it cannot use, naming the key and the file, before it
// writes anything.
#[test]
fn unusable_tls_files_stop_the_node_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("start CA");
    let f = ca.files(&dir.path().join("tls"), "node", &["127.0.0.1"]);
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").unwrap();
    let other = ca.files(&dir.path().join("other"), "node", &["127.0.0.1"]);
    let missing = dir.path().join("missing.pem");
    let data = dir.path().join("data");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "--tls-cert-file".into(),
                garbage.display().to_string(),
                "--tls-key-file".into(),
                f.key.display().to_string(),
            ],
            "tls_cert_file",
        ),
        (
            vec![
                "--tls-cert-file".into(),
                f.cert.display().to_string(),
                "--tls-key-file".into(),
                other.key.display().to_string(),
            ],
            "does not hold the private key",
        ),
        (
            vec![
                "--tls-cert-file".into(),
                f.cert.display().to_string(),
                "--tls-key-file".into(),
                missing.display().to_string(),
            ],
            "tls_key_file",
        ),
        (vec!["--tls-cert-file".into(), f.cert.display().to_string()], "tls_key_file"),
        (
            vec![
                "--peer-tls-cert-file".into(),
                f.cert.display().to_string(),
                "--peer-tls-key-file".into(),
                f.key.display().to_string(),
                "--peer-tls-ca-file".into(),
                garbage.display().to_string(),
            ],
            "peer_tls_ca_file",
        ),
    ];
    // With client_cert_auth, members forward to the leader's client port with their peer
    // certificate: one that tls_ca_file does not accept would fail every forward.
    let peer_ca = Ca::new("peer CA");
    let p = peer_ca.files(&dir.path().join("peer"), "node", &["127.0.0.1"]);
    let raft = format!("127.0.0.1:{}", free_port());
    let path = |p: &PathBuf| p.display().to_string();
    let mut cases = cases;
    cases.push((
        vec![
            "--mode".into(),
            "distributed".into(),
            "--peers".into(),
            format!("1={raft}"),
            "--tls-cert-file".into(),
            path(&f.cert),
            "--tls-key-file".into(),
            path(&f.key),
            "--tls-ca-file".into(),
            path(&f.ca),
            "--client-cert-auth".into(),
            "true".into(),
            "--peer-tls-cert-file".into(),
            path(&p.cert),
            "--peer-tls-key-file".into(),
            path(&p.key),
            "--peer-tls-ca-file".into(),
            path(&p.ca),
        ],
        "is not accepted by tls_ca_file",
    ));
    for (args, says) in cases {
        let out = std::process::Command::new(BIN)
            .args(&args)
            .arg("--data-dir")
            .arg(&data)
            .args(["--http-addr", &format!("127.0.0.1:{}", free_port())])
            .args(["--raft-http-addr", &format!("127.0.0.1:{}", free_port())])
            .args(["--metrics-addr", &format!("127.0.0.1:{}", free_port())])
            .args(["--grpc-addr", "", "--redis-addr", ""])
            .env_remove("CONFIG_PATH")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(!data.exists(), "{args:?}: the data directory was created");
    }
}
