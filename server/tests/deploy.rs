//! The deployment files are checked, not just shipped: the Kubernetes manifests against the
//! API schema (`kubernetes-validate`), the StatefulSet's start script and the compose file's
//! settings by starting real nodes with them, the alert rules with `promtool` and against the
//! metrics a node exports, and the Dockerfile's shape (and its build, where a builder runs).
//!
//! `.ci/run` installs the tools and sets `SIMPLE_CACHE_DEPLOY_TOOLS_REQUIRED=1`, so a missing one
//! fails there; elsewhere a check that lacks its tool says so and passes.

mod common;

use common::{BIN, call, client, eventually, free_port};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn required() -> bool {
    std::env::var_os("SIMPLE_CACHE_DEPLOY_TOOLS_REQUIRED").is_some()
}

/// Whether `tool probe...` runs and succeeds (its output discarded).
fn runs(tool: &str, probe: &[&str]) -> bool {
    Command::new(tool)
        .args(probe)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether `tool --help`-like `probe` runs; if not, fails when tools are required, else says
/// why the check is skipped.
fn have(tool: &str, probe: &[&str]) -> bool {
    let ok = runs(tool, probe);
    if !ok {
        assert!(
            !required(),
            "{tool} is required (SIMPLE_CACHE_DEPLOY_TOOLS_REQUIRED) but does not run"
        );
        eprintln!(
            "skipped: {tool} is not installed (pip install kubernetes-validate / apt-get install prometheus)"
        );
    }
    ok
}

fn yaml_docs(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    text.split("\n---\n")
        .map(|d| serde_saphyr::from_str::<Value>(d).unwrap_or_else(|e| panic!("{path:?}: {e}")))
        .collect()
}

fn manifests() -> Vec<PathBuf> {
    let dir = repo().join("deploy/k8s");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .filter(|p| p.file_name().unwrap() != "kustomization.yaml")
        .collect();
    files.sort();
    files
}

#[test]
fn kubernetes_manifests_validate_against_the_api_schema() {
    let files = manifests();
    assert!(files.len() >= 5, "{files:?}");
    // kustomization.yaml lists every manifest but the example secret.
    let k = &yaml_docs(&repo().join("deploy/k8s/kustomization.yaml"))[0];
    let listed: Vec<&str> =
        k["resources"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
    for f in &files {
        let name = f.file_name().unwrap().to_str().unwrap();
        assert_eq!(
            listed.contains(&name),
            name != "secret.example.yaml",
            "{name} in kustomization"
        );
    }
    if !have("kubernetes-validate", &["--version"]) {
        return;
    }
    let out = Command::new("kubernetes-validate").arg("--strict").args(&files).output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    // The tool can fail: a broken copy of the StatefulSet is refused.
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.yaml");
    let sts = std::fs::read_to_string(repo().join("deploy/k8s/statefulset.yaml")).unwrap();
    std::fs::write(&broken, sts.replace("replicas: 3", "replicas: three")).unwrap();
    let out = Command::new("kubernetes-validate").arg("--strict").arg(&broken).output().unwrap();
    assert!(!out.status.success(), "a StatefulSet with replicas: three passed");
}

// What the rest of the files rely on: a PodDisruptionBudget of one, probes on /readyz and
// /healthz, parallel pod management, a headless service that publishes unready pods, and
// ports that match the container's.
#[test]
fn the_statefulset_has_what_a_quorum_needs() {
    let sts = &yaml_docs(&repo().join("deploy/k8s/statefulset.yaml"))[0];
    assert_eq!(sts["spec"]["podManagementPolicy"], "Parallel");
    let c = &sts["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    let pdb = &yaml_docs(&repo().join("deploy/k8s/pdb.yaml"))[0];
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
    let services = yaml_docs(&repo().join("deploy/k8s/services.yaml"));
    let headless = services.iter().find(|s| s["spec"]["clusterIP"] == "None").unwrap();
    assert_eq!(headless["spec"]["publishNotReadyAddresses"], true);
    assert_eq!(headless["metadata"]["name"], sts["spec"]["serviceName"]);
    let env = c["env"].as_array().unwrap();
    let env_of = |name: &str| env.iter().find(|e| e["name"] == name).map(|e| e["value"].clone());
    assert_eq!(env_of("PEER_SERVICE"), Some(sts["spec"]["serviceName"].clone()));
    assert_eq!(env_of("STATEFULSET"), Some(sts["metadata"]["name"].clone()));
}

/// The environment the StatefulSet's container `c` gives pod `pod` (its literal values, the
/// pod's name and namespace `cache`), with the config file at `config`.
fn pod_env<'a>(c: &'a Value, config: &Path, pod: &str) -> Vec<(&'a str, String)> {
    let mut env: Vec<(&str, String)> = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| Some((e["name"].as_str()?, e["value"].as_str()?.to_string())))
        .collect();
    env.retain(|(k, _)| *k != "CONFIG_PATH");
    env.push(("CONFIG_PATH", config.display().to_string()));
    env.push(("POD_NAME", pod.to_string()));
    env.push(("POD_NAMESPACE", "cache".to_string()));
    env
}

/// Starts the built server under `/bin/sh -c script` with `env`, its listeners moved to free
/// loopback ports (the environment wins over the config file), and returns it with its client
/// address.
fn start_script(script: &str, env: &[(&str, String)], dir: &Path) -> (Child, String) {
    let http = format!("127.0.0.1:{}", free_port());
    let bin_dir = Path::new(BIN).parent().unwrap();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c").arg(script).env("PATH", path).current_dir(dir);
    for (k, v) in env {
        cmd.env(k, v);
    }
    for (k, v) in [
        ("SIMPLE_CACHE_HTTP_ADDR", http.clone()),
        ("SIMPLE_CACHE_RAFT_HTTP_ADDR", format!("127.0.0.1:{}", free_port())),
        ("SIMPLE_CACHE_METRICS_ADDR", format!("127.0.0.1:{}", free_port())),
        ("SIMPLE_CACHE_GRPC_ADDR", format!("127.0.0.1:{}", free_port())),
        ("SIMPLE_CACHE_REDIS_ADDR", format!("127.0.0.1:{}", free_port())),
        ("SIMPLE_CACHE_DATA_DIR", dir.join("data").display().to_string()),
    ] {
        cmd.env(k, v);
    }
    let log = std::fs::File::create(dir.join("log")).unwrap();
    let child = cmd.stdout(log.try_clone().unwrap()).stderr(log).spawn().unwrap();
    (child, http)
}

/// Waits until the node answers `/readyz` (ready or not) and returns the answer.
async fn node_answers(http: &str, child: &mut Child, dir: &Path) -> Value {
    let url = format!("http://{http}/readyz");
    eventually("the node to answer", Duration::from_secs(20), || {
        let url = url.clone();
        let exited = child.try_wait().unwrap();
        let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
        assert!(exited.is_none(), "the node exited {exited:?}: {log}");
        async move {
            let r = client().get(url).send().await.ok()?;
            r.json::<Value>().await.ok()
        }
    })
    .await
}

// The start script computes each pod's node id and its peers (the first three pods) or join
// address (the others), and with the ConfigMap's file that makes a node that starts: pod 0 is
// node 1 of three voters, pod 3 is node 4 joining through pod 0.
#[tokio::test]
async fn the_statefulset_start_script_and_configmap_start_a_member() {
    let sts = &yaml_docs(&repo().join("deploy/k8s/statefulset.yaml"))[0];
    let c = &sts["spec"]["template"]["spec"]["containers"][0];
    let script = c["args"][0].as_str().unwrap();
    let cm = &yaml_docs(&repo().join("deploy/k8s/configmap.yaml"))[0];
    for (pod, node_id) in [("simple-cache-0", 1), ("simple-cache-3", 4)] {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.yaml");
        std::fs::write(&config, cm["data"]["config.yaml"].as_str().unwrap()).unwrap();
        let mut env = pod_env(c, &config, pod);
        env.push(("SIMPLE_CACHE_ADMIN_TOKEN", "a".repeat(24)));
        env.push(("SIMPLE_CACHE_PEER_TOKEN", "b".repeat(24)));
        let (mut child, http) = start_script(script, &env, dir.path());
        let v = node_answers(&http, &mut child, dir.path()).await;
        assert_eq!(v["node_id"], node_id, "{v}");
        let log = std::fs::read_to_string(dir.path().join("log")).unwrap();
        let peers_url = format!("http://{http}/cluster/peers");
        let (s, b) = call("GET", &peers_url, None).await;
        assert_eq!(s, 401, "the admin token from the Secret is in force: {b}");
        let r = client().get(&peers_url).bearer_auth("a".repeat(24)).send().await.unwrap();
        let peers: Value = r.json().await.unwrap();
        let addrs: Vec<&str> = peers["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["addr"].as_str().unwrap())
            .collect();
        if node_id == 1 {
            // Three voters by their stable DNS names (which do not resolve here).
            let name =
                |i| format!("simple-cache-{i}.simple-cache-peers.cache.svc.cluster.local:9090");
            assert_eq!(addrs, [name(0), name(1), name(2)], "{peers}\n{log}");
        } else {
            assert!(addrs.is_empty(), "not a member until it joins: {peers}");
            let log_path = dir.path().join("log");
            // Through pod 0, giving its own stable names (not the listen address, which is
            // 0.0.0.0 in the ConfigMap: the leader would probe itself at 127.0.0.1).
            eventually("the join through pod 0", Duration::from_secs(10), || {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                let line =
                    log.lines().find(|l| l.contains("joining the cluster")).map(str::to_string);
                async move { line }
            })
            .await;
            let line = std::fs::read_to_string(&log_path).unwrap();
            let line = line.lines().find(|l| l.contains("joining the cluster")).unwrap();
            let name = |i| format!("simple-cache-{i}.simple-cache-peers.cache.svc.cluster.local");
            assert!(line.contains(&format!("target={}:9090", name(0))), "{line}");
            assert!(line.contains(&format!("raft={}:9090", name(3))), "{line}");
            assert!(line.contains(&format!("{}:8080", name(3))), "{line}");
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

// The ConfigMap's TLS keys, uncommented as the guide says, with the Secret's files where the
// StatefulSet mounts them (here a temporary directory) and a certificate for the peers'
// wildcard name: pod 0 starts with TLS on its client and Raft ports and answers over https.
#[tokio::test]
async fn the_configmap_tls_keys_start_a_member_with_tls() {
    let sts = &yaml_docs(&repo().join("deploy/k8s/statefulset.yaml"))[0];
    let pod = &sts["spec"]["template"]["spec"];
    let mount = pod["containers"][0]["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "tls")
        .expect("a tls volume mount");
    let volume = pod["volumes"].as_array().unwrap().iter().find(|v| v["name"] == "tls").unwrap();
    assert_eq!(volume["secret"]["secretName"], "simple-cache-tls");
    assert_eq!(volume["secret"]["optional"], true, "pods start without the Secret");
    let mount_path = mount["mountPath"].as_str().unwrap();

    let dir = tempfile::tempdir().unwrap();
    let tls = dir.path().join("tls");
    std::fs::create_dir_all(&tls).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let names =
        vec!["*.simple-cache-peers.cache.svc.cluster.local".to_string(), "127.0.0.1".to_string()];
    let cert = rcgen::CertificateParams::new(names).unwrap().self_signed(&key).unwrap();
    std::fs::write(tls.join("tls.crt"), cert.pem()).unwrap();
    std::fs::write(tls.join("tls.key"), key.serialize_pem()).unwrap();
    std::fs::write(tls.join("ca.crt"), cert.pem()).unwrap();

    let cm = &yaml_docs(&repo().join("deploy/k8s/configmap.yaml"))[0];
    let text = cm["data"]["config.yaml"].as_str().unwrap();
    let mut uncommented = 0;
    let text: String = text
        .lines()
        .map(|l| match l.trim_start().strip_prefix("# ") {
            Some(kv) if kv.contains("tls") && kv.contains(mount_path) => {
                uncommented += 1;
                kv.replace(mount_path, &tls.display().to_string())
            }
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(uncommented, 5, "the five TLS keys, at the mount path:\n{text}");
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, text).unwrap();

    let c = &pod["containers"][0];
    let script = c["args"][0].as_str().unwrap();
    let env = pod_env(c, &config, "simple-cache-0");
    let (mut child, http) = start_script(script, &env, dir.path());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der().clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let https = reqwest::Client::builder().tls_backend_preconfigured(config).build().unwrap();
    let url = format!("https://{http}/readyz");
    let v: Value = eventually("pod 0 answering over https", Duration::from_secs(20), || {
        let (https, url) = (https.clone(), url.clone());
        let exited = child.try_wait().unwrap();
        let log = std::fs::read_to_string(dir.path().join("log")).unwrap_or_default();
        assert!(exited.is_none(), "the node exited {exited:?}: {log}");
        async move { https.get(url).send().await.ok()?.json::<Value>().await.ok() }
    })
    .await;
    assert_eq!(v["node_id"], 1, "{v}");
    let log = std::fs::read_to_string(dir.path().join("log")).unwrap();
    assert!(log.contains("client_tls=true") && log.contains("peer_tls=true"), "{log}");
    let _ = child.kill();
    let _ = child.wait();
}

// docker-compose.yml's settings start a node as its node1.
#[tokio::test]
async fn the_compose_settings_start_a_member() {
    let compose = &yaml_docs(&repo().join("docker-compose.yml"))[0];
    let node1 = &compose["services"]["node1"]["environment"];
    let dir = tempfile::tempdir().unwrap();
    let env: Vec<(&str, String)> = node1
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.starts_with("SIMPLE_CACHE_"))
        .map(|(k, v)| {
            (
                k.as_str(),
                v.as_str()
                    .unwrap_or_default()
                    .replace("${ADMIN_TOKEN:-}", "")
                    .replace("${PEER_TOKEN:-}", ""),
            )
        })
        .collect();
    let (mut child, http) = start_script("exec simple-cache", &env, dir.path());
    let v = node_answers(&http, &mut child, dir.path()).await;
    assert_eq!(v["node_id"], 1, "{v}");
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test]
async fn alert_rules_pass_promtool_and_name_metrics_a_node_exports() {
    let rules = repo().join("deploy/prometheus/alerts.yml");
    if have("promtool", &["--version"]) {
        let out = Command::new("promtool").args(["check", "rules"]).arg(&rules).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    }
    let dir = tempfile::tempdir().unwrap();
    // Peer TLS on, so that the certificate expiry gauge has a series (a certificate that is
    // its own CA is enough to start; no peer connects).
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    let (cert_file, key_file) = (dir.path().join("peer.pem"), dir.path().join("peer.key"));
    std::fs::write(&cert_file, params.self_signed(&key).unwrap().pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    let (cert_file, key_file) = (cert_file.display().to_string(), key_file.display().to_string());
    let tls = [
        "--peer-tls-cert-file",
        &cert_file,
        "--peer-tls-key-file",
        &key_file,
        "--peer-tls-ca-file",
        &cert_file,
    ];
    let mut n = common::Node::new(1, dir.path(), &tls);
    n.wait_ready().await;
    let text = client().get(format!("http://{}/metrics", n.metrics)).send().await.unwrap();
    let text = text.text().await.unwrap();
    // Samples, and the families a `# TYPE` line declares (a labelled counter has no sample
    // before its first increment).
    let mut exported = std::collections::BTreeSet::new();
    for line in text.lines() {
        let name = match line.strip_prefix("# TYPE ") {
            Some(rest) => rest.split(' ').next().unwrap_or_default(),
            None if line.starts_with('#') => continue,
            None => line.split(['{', ' ']).next().unwrap_or_default(),
        };
        let family = name.trim_end_matches("_bucket").trim_end_matches("_sum");
        let family = family.trim_end_matches("_count");
        exported.insert(family.to_string());
        exported.insert(format!("{family}_total"));
    }
    let doc = &yaml_docs(&rules)[0];
    let mut named = 0;
    for rule in doc["groups"][0]["rules"].as_array().unwrap() {
        let expr = rule["expr"].as_str().unwrap();
        for token in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if ["raft_", "simple_cache_", "cache_", "process_"].iter().any(|p| token.starts_with(p))
            {
                let family = token.trim_end_matches("_bucket");
                let known = exported.contains(family);
                assert!(known, "{}: {family} is not exported:\n{text}", rule["alert"]);
                named += 1;
            }
        }
    }
    assert!(named >= 8, "the rules name {named} metrics");
}

// The image is multi-stage, runs as a non-root user, keeps its data in a volume, checks its
// health and exposes the ports the configuration defaults to; it is built where a builder runs.
#[test]
fn the_dockerfile_is_a_small_non_root_image() {
    let text = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    assert_eq!(lines.iter().filter(|l| l.starts_with("FROM ")).count(), 2, "two stages");
    let user = lines.iter().find(|l| l.starts_with("USER ")).expect("a USER line");
    assert!(!user.contains("root") && !user.ends_with(" 0"), "{user}");
    assert!(lines.iter().any(|l| l.starts_with("VOLUME ") && l.contains("/var/lib/simple-cache")));
    assert!(lines.iter().any(|l| l.starts_with("HEALTHCHECK ")));
    let expose = lines.iter().find(|l| l.starts_with("EXPOSE ")).expect("an EXPOSE line");
    for port in ["8080", "9090", "2112", "5051", "6379"] {
        assert!(expose.split_whitespace().any(|p| p == port), "{port} not exposed");
    }
    if !runs("docker", &["info"]) {
        eprintln!(
            "skipped building the image: no container builder runs here (docker info failed)"
        );
        return;
    }
    let status = Command::new("docker")
        .args(["build", "-t", "simple-cache:ci", "."])
        .current_dir(repo())
        .status()
        .unwrap();
    assert!(status.success(), "docker build failed");
    let out = Command::new("docker")
        .args(["run", "--rm", "simple-cache:ci", "--version"])
        .output()
        .unwrap();
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("simple-cache"));
}

// The backup CronJob's script takes a backup from the first endpoint that answers and keeps
// the newest KEEP files; with the members' configuration turning TLS on (client certificates
// required), it reaches them over TLS with the files that configuration names.
#[tokio::test]
async fn the_backup_cronjob_script_saves_and_prunes() {
    let docs = yaml_docs(&repo().join("deploy/k8s/backup-cronjob.yaml"));
    let job = docs.iter().find(|d| d["kind"] == "CronJob").expect("a CronJob");
    let c = &job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0];
    let script = c["args"][0].as_str().unwrap();
    for tls in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.yaml");
        let mut flags: Vec<String> = Vec::new();
        let mut https = None;
        if tls {
            let (files, client) = tls_files(dir.path());
            let [cert, key, ca_file] = files.map(|p| p.display().to_string());
            std::fs::write(
                &config,
                format!(
                    "tls_cert_file: \"{cert}\"\ntls_key_file: '{key}'\ntls_ca_file: {ca_file}\n"
                ),
            )
            .unwrap();
            for (f, v) in
                [("--tls-cert-file", &cert), ("--tls-key-file", &key), ("--tls-ca-file", &ca_file)]
            {
                flags.extend([f.to_string(), v.clone()]);
            }
            flags.extend(["--client-cert-auth".to_string(), "true".to_string()]);
            https = Some(client);
        } else {
            std::fs::write(&config, "# tls_cert_file: /nowhere\n").unwrap();
        }
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let n = common::Node::new(1, dir.path(), &flags);
        let put = |client: reqwest::Client, url: String| async move {
            eventually("a first write", Duration::from_secs(20), || {
                let (client, url) = (client.clone(), url.clone());
                async move {
                    let r = client.put(url).header("content-type", "application/json");
                    let r = r.body(r#"{"value": 1}"#).send().await.ok()?;
                    (r.status() == 200).then_some(())
                }
            })
            .await
        };
        match &https {
            Some(client) => put(client.clone(), format!("https://{}/v1/k", n.http)).await,
            None => put(client(), n.url("/v1/k")).await,
        }
        let backups = dir.path().join("backups");
        std::fs::create_dir_all(&backups).unwrap();
        for old in ["20200101T000000Z", "20200102T000000Z", "20200103T000000Z"] {
            std::fs::write(backups.join(format!("simple-cache-{old}.backup")), b"old").unwrap();
        }
        let dead = format!("127.0.0.1:{}", free_port());
        let bin_dir = Path::new(BIN).parent().unwrap();
        let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
        let out = Command::new("/bin/sh")
            .arg("-c")
            .arg(script)
            .env("PATH", path)
            .env("BACKUP_DIR", &backups)
            .env("KEEP", "2")
            .env("CONFIG_PATH", &config)
            .env("SIMPLE_CACHE_ENDPOINTS", format!("{dead},{}", n.http))
            .env_remove("SIMPLE_CACHE_ADMIN_TOKEN")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "tls {tls}: {text}");
        let mut left: Vec<String> = std::fs::read_dir(&backups)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left.len(), 2, "{left:?}");
        assert_eq!(left[0], "simple-cache-20200103T000000Z.backup", "the newest old one stays");
        let new = backups.join(&left[1]);
        let bytes = std::fs::read(&new).unwrap();
        assert!(bytes.starts_with(b"SCBACKUP"), "{left:?}: {text}");
    }
}

/// A CA and a certificate it signed for 127.0.0.1, written into `dir` as the files
/// `[cert, key, ca]`, and an HTTPS client presenting that certificate.
fn tls_files(dir: &Path) -> ([PathBuf; 3], reqwest::Client) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let files = [dir.join("tls.crt"), dir.join("tls.key"), dir.join("ca.crt")];
    std::fs::write(&files[0], cert.pem()).unwrap();
    std::fs::write(&files[1], key.serialize_pem()).unwrap();
    std::fs::write(&files[2], ca_cert.pem()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca_cert.der().clone()).unwrap();
    let der_key = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_client_auth_cert(vec![cert.der().clone()], der_key)
    .unwrap();
    let client = reqwest::Client::builder().tls_backend_preconfigured(config).build().unwrap();
    (files, client)
}
