//! TLS, with rustls and its ring provider: server TLS on the client listeners (HTTP, gRPC,
//! RESP), optionally requiring client certificates (`client_cert_auth`), and mutual TLS between
//! members on the Raft port (`peer_tls_*`).
//!
//! Certificates, keys and CA bundles are PEM files, read at start (a file that cannot be used
//! stops the node with its key and path named) and again every [`RELOAD_EVERY`]: new contents
//! are parsed and, if they are whole (a certificate with its matching key, a CA bundle with at
//! least one certificate), take effect for the next handshake. A rotation half done (the new
//! certificate written, not yet its key) is logged once and the previous pair kept until the
//! files agree. The rustls configurations are built once; what they resolve and verify against
//! is read from the current [`Identity`] at each handshake.
//!
//! Who is checked:
//! - A node dialing a peer verifies the peer's certificate against `peer_tls_ca_file` and its
//!   name against the host of the address it dials (the member's advertised Raft address).
//! - A node accepting a peer connection requires a client certificate from `peer_tls_ca_file`,
//!   and once the hello names the sender, that the certificate is valid for the host of the
//!   sender's Raft address as the membership records it ([`check_peer_name`]).
//! - A node calling another member over HTTP (join, join probes, `/cluster/*` forwards to the
//!   leader's client port) trusts both CA bundles and presents its peer certificate (its client
//!   certificate if it has no peer TLS).

use crate::config::Config;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ParsedCertificate, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// How often certificate, key and CA files are checked for new contents.
pub const RELOAD_EVERY: Duration = Duration::from_secs(1);
/// A TLS handshake that takes longer than this is abandoned.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The first byte of a TLS record carrying a handshake message (a ClientHello).
pub const HANDSHAKE_RECORD: u8 = 0x16;

/// Makes ring the process's default rustls provider. reqwest (built with rustls and no provider
/// of its own) needs one to build any client, a plain HTTP one included: each binary calls this
/// first.
pub fn install_default_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider())).clone()
}

/// A file named by a configuration key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyFile {
    pub key: &'static str,
    pub path: PathBuf,
}

impl KeyFile {
    fn read(&self) -> Result<Vec<u8>, String> {
        std::fs::read(&self.path).map_err(|e| self.problem(format!("cannot read it: {e}")))
    }

    fn problem(&self, what: impl std::fmt::Display) -> String {
        format!("{} {}: {what}", self.key, self.path.display())
    }
}

/// The files of one identity: a certificate chain, its private key, and the CA bundle that
/// certificates from the other side must chain to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityFiles {
    pub cert: KeyFile,
    pub key: KeyFile,
    pub ca: Option<KeyFile>,
}

/// One identity as last loaded.
struct Loaded {
    /// The files' bytes, to tell whether they changed.
    contents: Vec<Vec<u8>>,
    key: Arc<CertifiedKey>,
    client_verifier: Option<Arc<dyn ClientCertVerifier>>,
    server_verifier: Option<Arc<dyn ServerCertVerifier>>,
}

/// A certificate, its key and a CA bundle, reloaded when the files change.
pub struct Identity {
    files: IdentityFiles,
    current: RwLock<Arc<Loaded>>,
    /// The last failed reload (the contents that did not parse, or why a file could not be
    /// read), so each failure is logged once, not every second.
    failed: Mutex<Option<Result<Vec<Vec<u8>>, String>>>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity").field("files", &self.files).finish_non_exhaustive()
    }
}

impl Identity {
    /// Loads the files; the error names the key and file at fault.
    pub fn load(files: IdentityFiles) -> Result<Identity, String> {
        let contents = read_all(&files)?;
        let loaded = parse(&files, contents)?;
        Ok(Identity { files, current: RwLock::new(Arc::new(loaded)), failed: Mutex::new(None) })
    }

    fn get(&self) -> Arc<Loaded> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Reads the files again: `Ok(true)` if they changed and now take effect, `Ok(false)` if
    /// they did not change (or failed the same way before), `Err` for new contents that cannot
    /// be used (the previous identity stays).
    pub fn reload(&self) -> Result<bool, String> {
        let read = read_all(&self.files);
        let mut failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        if failed.as_ref() == Some(&read) {
            return Ok(false);
        }
        let contents = match read {
            Ok(c) => c,
            Err(e) => {
                *failed = Some(Err(e.clone()));
                return Err(e);
            }
        };
        if self.get().contents == contents {
            *failed = None;
            return Ok(false);
        }
        match parse(&self.files, contents.clone()) {
            Ok(loaded) => {
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(loaded);
                *failed = None;
                Ok(true)
            }
            Err(e) => {
                *failed = Some(Ok(contents));
                Err(e)
            }
        }
    }

    /// The certificate chain in use.
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        self.get().key.cert.clone()
    }

    /// When the certificate in use expires, in unix seconds.
    pub fn expiry(&self) -> Option<i64> {
        self.get().key.end_entity_cert().ok().and_then(not_after)
    }
}

fn read_all(files: &IdentityFiles) -> Result<Vec<Vec<u8>>, String> {
    let mut out = vec![files.cert.read()?, files.key.read()?];
    if let Some(ca) = &files.ca {
        out.push(ca.read()?);
    }
    Ok(out)
}

fn certificates(file: &KeyFile, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file.problem(format!("not PEM: {e}")))?;
    if certs.is_empty() {
        return Err(file.problem("holds no PEM certificate (-----BEGIN CERTIFICATE-----)"));
    }
    for c in &certs {
        ParsedCertificate::try_from(c).map_err(|e| {
            let e = e.to_string();
            // `openssl x509 -req` without `-extfile` makes version 1 certificates.
            let hint = if e.contains("UnsupportedCertVersion") {
                " (not an X.509 version 3 certificate: `openssl x509 -req` makes version 1 \
                 unless given extensions, such as -extfile with a subjectAltName)"
            } else {
                ""
            };
            file.problem(format!("holds a certificate that does not parse: {e}{hint}"))
        })?;
    }
    Ok(certs)
}

fn parse(files: &IdentityFiles, contents: Vec<Vec<u8>>) -> Result<Loaded, String> {
    let chain = certificates(&files.cert, &contents[0])?;
    let key = PrivateKeyDer::from_pem_slice(&contents[1]).map_err(|e| {
        files.key.problem(format!("holds no usable private key (PKCS#8, PKCS#1 or SEC1 PEM): {e}"))
    })?;
    let signing = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| files.key.problem(format!("the key cannot sign: {e}")))?;
    let key = CertifiedKey::new(chain, signing);
    if let Err(e) = key.keys_match() {
        return Err(format!(
            "{} {} does not hold the private key of {} {}: {e}",
            files.key.key,
            files.key.path.display(),
            files.cert.key,
            files.cert.path.display()
        ));
    }
    let (mut client_verifier, mut server_verifier) = (None, None);
    if let Some(ca) = &files.ca {
        let mut roots = RootCertStore::empty();
        for c in certificates(ca, &contents[2])? {
            roots.add(c).map_err(|e| {
                ca.problem(format!("holds a certificate that cannot be a trust anchor: {e}"))
            })?;
        }
        let roots = Arc::new(roots);
        let client = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
            .build()
            .map_err(|e| ca.problem(e))?;
        let server = WebPkiServerVerifier::builder_with_provider(roots, provider())
            .build()
            .map_err(|e| ca.problem(e))?;
        client_verifier = Some(client);
        server_verifier = Some(server as Arc<dyn ServerCertVerifier>);
    }
    Ok(Loaded { contents, key: Arc::new(key), client_verifier, server_verifier })
}

/// The node's TLS settings: the client listeners' identity, the peers', or neither.
#[derive(Debug, Default)]
pub struct Tls {
    /// `tls_cert_file`, `tls_key_file`, `tls_ca_file`.
    pub client: Option<Arc<Identity>>,
    /// Client listeners require a certificate that chains to `tls_ca_file`.
    pub client_cert_auth: bool,
    /// `peer_tls_cert_file`, `peer_tls_key_file`, `peer_tls_ca_file`.
    pub peer: Option<Arc<Identity>>,
}

impl Tls {
    /// No TLS anywhere.
    pub fn none() -> Tls {
        Tls::default()
    }

    /// Loads the files the configuration names.
    pub fn load(cfg: &Config) -> Result<Tls, String> {
        let client = cfg.client_tls_files().map(Identity::load).transpose()?.map(Arc::new);
        let peer = cfg.peer_tls_files().map(Identity::load).transpose()?.map(Arc::new);
        let tls = Tls { client, client_cert_auth: cfg.client_cert_auth, peer };
        tls.check_forwarding(cfg)?;
        Ok(tls)
    }

    /// With `client_cert_auth` and peer TLS, a member forwarding to the leader's client port
    /// presents its peer certificate: it must chain to `tls_ca_file`, or every forward fails.
    fn check_forwarding(&self, cfg: &Config) -> Result<(), String> {
        let (Some(client), Some(peer)) = (&self.client, &self.peer) else { return Ok(()) };
        if !self.client_cert_auth || cfg.mode != crate::config::Mode::Distributed {
            return Ok(());
        }
        let Some(verifier) = client.get().client_verifier.clone() else { return Ok(()) };
        let chain = peer.chain();
        let Some((end, intermediates)) = chain.split_first() else { return Ok(()) };
        match verifier.verify_client_cert(end, intermediates, UnixTime::now()) {
            Ok(_) => Ok(()),
            Err(e) => {
                let (ca, cert) = (client.files.ca.as_ref(), &peer.files.cert);
                Err(format!(
                    "peer_tls_cert_file {} is not accepted by tls_ca_file {} ({e}): with \
                     client_cert_auth, members present their peer certificate when they forward \
                     to the leader's client port; add the peer CA to tls_ca_file",
                    cert.path.display(),
                    ca.map_or(String::new(), |c| c.path.display().to_string()),
                ))
            }
        }
    }

    /// `https` if the client listeners speak TLS.
    pub fn client_scheme(&self) -> &'static str {
        if self.client.is_some() { "https" } else { "http" }
    }

    /// `https` if the Raft port speaks TLS.
    pub fn peer_scheme(&self) -> &'static str {
        if self.peer.is_some() { "https" } else { "http" }
    }

    /// The acceptor for a client listener, offering `alpn` (`h2` for gRPC, `http/1.1` for the
    /// HTTP API, none for RESP); `None` without `tls_cert_file`.
    pub fn client_acceptor(&self, alpn: &[&[u8]]) -> Option<tokio_rustls::TlsAcceptor> {
        let id = self.client.clone()?;
        let verifier: Arc<dyn ClientCertVerifier> = if self.client_cert_auth {
            Arc::new(Verifier(vec![id.clone()]))
        } else {
            Arc::new(rustls::server::NoClientAuth)
        };
        Some(acceptor(id, verifier, alpn))
    }

    /// The Raft listener's acceptor: a client certificate from `peer_tls_ca_file` required.
    pub fn peer_acceptor(&self) -> Option<tokio_rustls::TlsAcceptor> {
        let id = self.peer.clone()?;
        Some(acceptor(id.clone(), Arc::new(Verifier(vec![id])), &[]))
    }

    /// The transport's connector: the peer's certificate from `peer_tls_ca_file`, ours
    /// presented.
    pub fn peer_connector(&self) -> Option<tokio_rustls::TlsConnector> {
        let id = self.peer.clone()?;
        let config = client_config(Verifier(vec![id.clone()]), Some(id));
        Some(tokio_rustls::TlsConnector::from(Arc::new(config)))
    }

    /// The rustls configuration for HTTP calls to other members (see the module
    /// documentation); `None` without TLS.
    pub fn member_client_config(&self) -> Option<rustls::ClientConfig> {
        let ids: Vec<Arc<Identity>> = self.peer.iter().chain(self.client.iter()).cloned().collect();
        if ids.is_empty() {
            return None;
        }
        let presented = self.peer.clone().or_else(|| self.client.clone());
        Some(client_config(Verifier(ids), presented))
    }

    /// A reqwest client builder for calls to other members' Raft ports (the join probe, the
    /// `POST /raft` fallback): only the peer CA is trusted there.
    pub fn peer_http_client(&self) -> reqwest::ClientBuilder {
        install_default_provider();
        let builder = reqwest::Client::builder();
        match &self.peer {
            Some(id) => builder.tls_backend_preconfigured(client_config(
                Verifier(vec![id.clone()]),
                Some(id.clone()),
            )),
            None => builder,
        }
    }

    /// A reqwest client builder for calls to other members' client ports and joins, with TLS
    /// if configured.
    pub fn member_http_client(&self) -> reqwest::ClientBuilder {
        install_default_provider();
        let builder = reqwest::Client::builder();
        match self.member_client_config() {
            Some(c) => builder.tls_backend_preconfigured(c),
            None => builder,
        }
    }

    /// Reloads every identity whose files changed, every [`RELOAD_EVERY`], until `stop`, and
    /// keeps the certificates' expiry in `metrics`.
    pub async fn watch(
        self: Arc<Self>,
        metrics: Arc<crate::metrics::Metrics>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let ids: Vec<(&'static str, Arc<Identity>)> =
            [("client", &self.client), ("peer", &self.peer)]
                .into_iter()
                .filter_map(|(what, id)| id.clone().map(|id| (what, id)))
                .collect();
        let expiry = |what: &'static str, id: &Identity| {
            let label = crate::metrics::TlsIdentityLabel { identity: what };
            if let Some(t) = id.expiry() {
                metrics.tls_certificate_expiry.get_or_create(&label).set(t);
            }
        };
        for (what, id) in &ids {
            expiry(what, id);
        }
        if ids.is_empty() {
            return;
        }
        loop {
            tokio::select! {
                _ = tokio::time::sleep(RELOAD_EVERY) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            for (what, id) in &ids {
                let handle = id.clone();
                match tokio::task::spawn_blocking(move || handle.reload()).await {
                    Ok(Ok(true)) => {
                        tracing::info!(
                            identity = what,
                            "TLS certificate files changed: new handshakes use them"
                        );
                        expiry(what, id);
                    }
                    Ok(Ok(false)) => {}
                    Ok(Err(e)) => tracing::error!(
                        identity = what,
                        error = %e,
                        "TLS certificate files changed but cannot be used: keeping the previous ones"
                    ),
                    Err(e) => tracing::error!(error = %e, "reloading TLS files failed"),
                }
            }
        }
    }
}

fn acceptor(
    id: Arc<Identity>,
    verifier: Arc<dyn ClientCertVerifier>,
    alpn: &[&[u8]],
) -> tokio_rustls::TlsAcceptor {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(Resolver(id)));
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    // No session resumption: a resumed session skips the certificate check, so it would
    // outlive a CA bundle that no longer trusts the client. Members keep their connections and
    // clients are long-lived; nothing is lost.
    config.send_tls13_tickets = 0;
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

fn client_config(verifier: Verifier, presented: Option<Arc<Identity>>) -> rustls::ClientConfig {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    let mut config = match presented {
        Some(id) => builder.with_client_cert_resolver(Arc::new(Resolver(id))),
        None => builder.with_no_client_auth(),
    };
    // Every connection checks the certificate again (see `acceptor`).
    config.resumption = rustls::client::Resumption::disabled();
    config
}

/// Resolves to the identity's current certificate, on either side of a handshake.
#[derive(Debug)]
struct Resolver(Arc<Identity>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.get().key.clone())
    }
}

impl ResolvesClientCert for Resolver {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.get().key.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Verifies the other side against the current CA bundle of one identity, or (for calls to
/// other members) of any of several.
#[derive(Debug)]
struct Verifier(Vec<Arc<Identity>>);

fn no_ca() -> rustls::Error {
    rustls::Error::General("no CA bundle is configured to verify this certificate".into())
}

impl Verifier {
    fn schemes(&self) -> Vec<SignatureScheme> {
        provider().signature_verification_algorithms.supported_schemes()
    }

    fn tls12(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &provider().signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algs)
    }

    fn tls13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &provider().signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algs)
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut last = no_ca();
        for id in &self.0 {
            if let Some(v) = &id.get().server_verifier {
                match v.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
                    Ok(ok) => return Ok(ok),
                    Err(e) => last = e,
                }
            }
        }
        Err(last)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes()
    }
}

impl ClientCertVerifier for Verifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // Optional in the protocol; our clients present their one certificate regardless.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let mut last = no_ca();
        for id in &self.0 {
            if let Some(v) = &id.get().client_verifier {
                match v.verify_client_cert(end_entity, intermediates, now) {
                    Ok(ok) => return Ok(ok),
                    Err(e) => last = e,
                }
            }
        }
        Err(last)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes()
    }
}

/// The host of a `host:port` address (an IPv6 host without its brackets), as a TLS name.
pub fn server_name(addr: &str) -> Result<ServerName<'static>, String> {
    let host = match addr.rsplit_once(':') {
        Some((h, _)) => h,
        None => addr,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string())
        .map_err(|_| format!("`{host}` (from {addr}) is not a DNS name or IP address"))
}

/// Whether `cert` is valid for the host of `addr`: a DNS or IP subject alternative name that
/// matches it, wildcards as TLS allows them.
pub fn check_peer_name(cert: &CertificateDer<'_>, addr: &str) -> Result<(), String> {
    let name = server_name(addr)?;
    let parsed = ParsedCertificate::try_from(cert).map_err(|e| e.to_string())?;
    rustls::client::verify_server_name(&parsed, &name).map_err(|e| {
        format!("its certificate is not valid for {}, the host of its Raft address {addr}: {e}", {
            server_name_text(&name)
        })
    })
}

fn server_name_text(name: &ServerName<'_>) -> String {
    match name {
        ServerName::DnsName(d) => d.as_ref().to_string(),
        ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
        _ => "?".to_string(),
    }
}

/// The end-entity certificate the other side presented on an accepted connection.
pub fn peer_certificate(
    s: &tokio_rustls::server::TlsStream<TcpStream>,
) -> Option<CertificateDer<'static>> {
    s.get_ref().1.peer_certificates().and_then(|c| c.first()).map(|c| c.clone().into_owned())
}

/// A TLS handshake on an accepted connection, bounded by [`HANDSHAKE_TIMEOUT`].
pub async fn accept(
    acceptor: &tokio_rustls::TlsAcceptor,
    tcp: TcpStream,
) -> Result<tokio_rustls::server::TlsStream<TcpStream>, String> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(format!("TLS handshake failed: {e}")),
        Err(_) => Err(format!("no TLS handshake within {HANDSHAKE_TIMEOUT:?}")),
    }
}

/// The first byte a new connection sends, without consuming it (`None`: it closed, failed or
/// said nothing within [`HANDSHAKE_TIMEOUT`]).
pub async fn first_byte(tcp: &TcpStream) -> Option<u8> {
    let mut b = [0u8; 1];
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, tcp.peek(&mut b)).await {
        Ok(Ok(1)) => Some(b[0]),
        _ => None,
    }
}

/// Handshakes one listener runs at once; past it a new connection is closed at once, so a flood
/// of connections that never finish their handshake costs a bounded number of tasks and sockets.
pub const HANDSHAKES_MAX: usize = 1024;

/// The handshakes in progress on one listener (see [`HANDSHAKES_MAX`]).
#[derive(Clone)]
pub struct Handshakes(Arc<tokio::sync::Semaphore>);

impl Default for Handshakes {
    fn default() -> Handshakes {
        Handshakes(Arc::new(tokio::sync::Semaphore::new(HANDSHAKES_MAX)))
    }
}

impl Handshakes {
    /// A place for one more handshake, held until it is dropped; `None` if all are taken.
    pub fn start(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let permit = self.0.clone().try_acquire_owned().ok();
        if permit.is_none() {
            tracing::debug!("{HANDSHAKES_MAX} TLS handshakes in progress: a connection was closed");
        }
        permit
    }
}

/// An accepted connection, in TLS or not.
pub enum ServerStream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl ServerStream {
    pub fn tcp(&self) -> &TcpStream {
        match self {
            ServerStream::Plain(s) => s,
            ServerStream::Tls(s) => s.get_ref().0,
        }
    }
}

impl AsyncRead for ServerStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ServerStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ServerStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ServerStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            ServerStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ServerStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            ServerStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            ServerStream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            ServerStream::Plain(s) => s.is_write_vectored(),
            ServerStream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ServerStream::Plain(s) => Pin::new(s).poll_flush(cx),
            ServerStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ServerStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ServerStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// A stream with one byte already read from it put back in front.
pub struct Prefixed<S> {
    first: Option<u8>,
    inner: S,
}

impl<S> Prefixed<S> {
    pub fn new(first: u8, inner: S) -> Prefixed<S> {
        Prefixed { first: Some(first), inner }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if let Some(b) = this.first
            && buf.remaining() > 0
        {
            buf.put_slice(&[b]);
            this.first = None;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The accepted connection in TLS when `acceptor` is set (else as it is). A client that sends
/// something other than a TLS handshake is sent `plaintext_reply`, in its own protocol, and
/// closed; a failed handshake is logged at debug.
pub async fn upgrade(
    tcp: TcpStream,
    acceptor: Option<&tokio_rustls::TlsAcceptor>,
    plaintext_reply: &[u8],
) -> Option<ServerStream> {
    let Some(acceptor) = acceptor else { return Some(ServerStream::Plain(tcp)) };
    match first_byte(&tcp).await {
        Some(HANDSHAKE_RECORD) => {}
        Some(_) => {
            refuse_plaintext(tcp, plaintext_reply).await;
            return None;
        }
        None => return None,
    }
    match accept(acceptor, tcp).await {
        Ok(s) => Some(ServerStream::Tls(Box::new(s))),
        Err(e) => {
            tracing::debug!(error = %e, "a client connection failed its TLS handshake");
            None
        }
    }
}

/// Sends `reply` to a client that spoke in plain text to a TLS port, then closes gently: the
/// write side first, then whatever the client still sends is read (bounded) so that the close
/// does not reset the connection before the client reads the reply.
pub async fn refuse_plaintext(mut tcp: TcpStream, reply: &[u8]) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let linger = async {
        tcp.write_all(reply).await?;
        tcp.shutdown().await?;
        let mut sink = [0u8; 4096];
        let mut left: usize = 64 * 1024;
        while left > 0 {
            let n = tcp.read(&mut sink).await?;
            if n == 0 {
                break;
            }
            left = left.saturating_sub(n);
        }
        Ok::<(), std::io::Error>(())
    };
    let _ = tokio::time::timeout(HANDSHAKE_TIMEOUT, linger).await;
}

/// The CLI's TLS configuration: the nodes' CA bundle, and a client certificate if given.
/// `None` without a CA bundle.
pub fn cli_client_config(
    ca: Option<&std::path::Path>,
    cert_key: Option<(&std::path::Path, &std::path::Path)>,
) -> Result<Option<rustls::ClientConfig>, String> {
    let Some(ca) = ca else { return Ok(None) };
    let ca = KeyFile { key: "--cacert", path: ca.to_path_buf() };
    let mut roots = RootCertStore::empty();
    for c in certificates(&ca, &ca.read()?)? {
        roots.add(c).map_err(|e| {
            ca.problem(format!("holds a certificate that cannot be a trust anchor: {e}"))
        })?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots);
    let config = match cert_key {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let cert = KeyFile { key: "--cert", path: cert.to_path_buf() };
            let key = KeyFile { key: "--key", path: key.to_path_buf() };
            let chain = certificates(&cert, &cert.read()?)?;
            let der = PrivateKeyDer::from_pem_slice(&key.read()?).map_err(|e| {
                key.problem(format!(
                    "holds no usable private key (PKCS#8, PKCS#1 or SEC1 PEM): {e}"
                ))
            })?;
            builder
                .with_client_auth_cert(chain, der)
                .map_err(|e| format!("--cert and --key: {e}"))?
        }
    };
    Ok(Some(config))
}

/// The end of a certificate's validity (`notAfter`), in unix seconds; `None` if the DER does not
/// have the shape X.509 gives it. A few lines of DER instead of an X.509 crate: the path to the
/// field is fixed (Certificate, TBSCertificate, an optional `[0]` version, serial number,
/// signature algorithm, issuer, validity).
pub fn not_after(cert: &CertificateDer<'_>) -> Option<i64> {
    let (tag, certificate, _) = der(cert.as_ref())?;
    let (tbs_tag, tbs, _) = (tag == 0x30).then(|| der(certificate))??;
    if tbs_tag != 0x30 {
        return None;
    }
    let (mut tag, mut body, mut rest) = der(tbs)?;
    if tag == 0xa0 {
        (tag, body, rest) = der(rest)?; // the serial number
    }
    let _ = (tag == 0x02).then_some(body)?;
    let (_, _, rest) = der(rest)?; // signature algorithm
    let (_, _, rest) = der(rest)?; // issuer
    let (tag, validity, _) = der(rest)?;
    if tag != 0x30 {
        return None;
    }
    let (_, _, after) = der(validity)?; // notBefore
    let (tag, time, _) = der(after)?;
    let text = std::str::from_utf8(time).ok()?.strip_suffix('Z')?;
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit()).then(|| s.parse::<i64>().ok())?;
    let (year, rest) = match (tag, text.len()) {
        // UTCTime: YYMMDDHHMMSS, 50-99 are 19xx.
        (0x17, 12) => {
            let yy = digits(&text[..2])?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &text[2..])
        }
        // GeneralizedTime: YYYYMMDDHHMMSS.
        (0x18, 14) => (digits(&text[..4])?, &text[4..]),
        _ => return None,
    };
    let field = |i: usize| digits(&rest[i..i + 2]);
    let (month, day, hour, minute, second) =
        (field(0)?, field(2)?, field(4)?, field(6)?, field(8)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

/// One DER element: its tag, its contents and what follows it.
fn der(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, b) = b.split_first()?;
    let (&first, mut b) = b.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || b.len() < n {
            return None;
        }
        let len = b[..n].iter().fold(0usize, |acc, &x| (acc << 8) | usize::from(x));
        b = &b[n..];
        len
    };
    (b.len() >= len).then(|| (tag, &b[..len], &b[len..]))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// An error with its causes, `a: b: c`: reqwest's own message ("error sending request") hides
/// the part that matters, such as a certificate the other side refused.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_for(names: &[&str]) -> CertificateDer<'static> {
        let key = rcgen::KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let cert = rcgen::CertificateParams::new(names).unwrap().self_signed(&key).unwrap();
        cert.der().clone()
    }

    // A peer's certificate is matched against the host of its Raft address: DNS names (with
    // TLS wildcards), IPv4 and bracketed IPv6 hosts; never the port, never another host.
    #[test]
    fn peer_certificates_match_the_host_of_the_address() {
        let cert = cert_for(&["node-1.peers.example", "*.pods.example", "10.0.0.1", "::1"]);
        for ok in ["node-1.peers.example:9090", "a.pods.example:1", "10.0.0.1:9090", "[::1]:9090"] {
            check_peer_name(&cert, ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in ["node-2.peers.example:9090", "a.b.pods.example:1", "10.0.0.2:9090", "[::2]:1"] {
            let e = check_peer_name(&cert, bad).unwrap_err();
            assert!(e.contains("not valid for"), "{bad}: {e}");
        }
        assert!(server_name("bad host:1").is_err());
    }

    // The expiry metric reads notAfter from the DER: UTCTime before 2050, GeneralizedTime from
    // 2050 on (as RFC 5280 requires), and nothing from bytes that are not a certificate.
    #[test]
    fn not_after_is_read_from_the_certificate() {
        let issue = |y: i32, m: u8, d: u8| {
            let key = rcgen::KeyPair::generate().unwrap();
            let mut params = rcgen::CertificateParams::new(vec!["a.example".to_string()]).unwrap();
            params.not_after = rcgen::date_time_ymd(y, m, d);
            params.self_signed(&key).unwrap().der().clone()
        };
        assert_eq!(not_after(&issue(2040, 1, 1)), Some(2_208_988_800));
        assert_eq!(not_after(&issue(1999, 12, 31)), Some(946_598_400));
        assert_eq!(not_after(&issue(2061, 3, 1)), Some(2_876_860_800));
        let good = issue(2040, 1, 1);
        for cut in [0, 1, 10, good.len() / 2] {
            assert_eq!(not_after(&CertificateDer::from(good.as_ref()[..cut].to_vec())), None);
        }
        assert_eq!(not_after(&CertificateDer::from(b"not a certificate".to_vec())), None);
    }

    // A version 1 certificate (what `openssl x509 -req` makes without extensions) is refused
    // with a hint, not only webpki's "UnsupportedCertVersion".
    #[test]
    fn version_1_certificates_are_refused_with_a_hint() {
        let key = rcgen::KeyPair::generate().unwrap();
        let der = rcgen::CertificateParams::new(vec!["a.example".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap()
            .der()
            .to_vec();
        // The version is the TBSCertificate's first element, `[0] EXPLICIT INTEGER 2`
        // (a0 03 02 01 02); a version 1 certificate omits it. Patch it to 1 (v2), which
        // webpki refuses the same way, rather than re-encode the lengths around its removal.
        let at = der.windows(5).position(|w| w == [0xa0, 0x03, 0x02, 0x01, 0x02]).unwrap();
        let mut v = der.clone();
        v[at + 4] = 0x01;
        let pem = format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &v)
        );
        let file = KeyFile { key: "tls_cert_file", path: "c.pem".into() };
        let e = certificates(&file, pem.as_bytes()).unwrap_err();
        assert!(e.contains("version 1") && e.starts_with("tls_cert_file c.pem"), "{e}");
    }

    // A cause hidden behind a generic message is shown, once.
    #[test]
    fn error_chains_show_every_cause_once() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("error sending request")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let e = Outer(std::io::Error::other("invalid peer certificate: UnknownIssuer"));
        assert_eq!(
            error_chain(&e),
            "error sending request: invalid peer certificate: UnknownIssuer"
        );
    }
}
