//! Helpers shared by the webhook's integration tests: the repository path and a real HTTPS
//! client (rustls verifying the given CA, hyper HTTP/1.1).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stderr)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

/// The conformance corpus's captured AdmissionReviews beside the checkout. CI (`.ci/run` sets
/// `PORTCULLIS_REQUIRE_CONFORMANCE`) has them, so there their absence is a loud failure; in a
/// contributor's plain clone the tests that read them skip them, and say so on stderr.
pub fn conformance_reviews() -> Option<PathBuf> {
    let dir = repo().join("../shared/conformance/admission");
    if dir.is_dir() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("PORTCULLIS_REQUIRE_CONFORMANCE").is_none(),
        "the conformance corpus is missing at {}",
        dir.display()
    );
    eprintln!("SKIPPED: no conformance corpus at {} (CI requires it)", dir.display());
    None
}

/// The first certificate of a PEM bundle.
pub fn ca_der(pem: &str) -> CertificateDer<'static> {
    rustls_pemfile::certs(&mut pem.as_bytes()).next().unwrap().unwrap()
}

/// Starts the real servers for `app` on 127.0.0.1 (free ports) with a fresh dev CA and serving
/// certificate for `localhost`; returns them and the CA to trust (DER, and PEM for clients that
/// read a file).
pub async fn serve(
    app: portcullis_webhook::server::App,
) -> (portcullis_webhook::server::Running, CertificateDer<'static>, String) {
    use portcullis_webhook::{server, tls};
    tls::install_crypto_provider();
    let certs = tls::dev_certificates(&["localhost"]).unwrap();
    let loaded = tls::server_config(certs.cert_pem.as_bytes(), certs.key_pem.as_bytes()).unwrap();
    let running = server::start(
        std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
        std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
        app,
        axum_server::tls_rustls::RustlsConfig::from_config(loaded.config),
        server::Limits::default(),
    )
    .await
    .unwrap();
    (running, ca_der(&certs.ca_pem), certs.ca_pem.clone())
}

/// One HTTPS request on a fresh connection. Returns status, body and the served leaf certificate.
pub async fn https(
    addr: SocketAddr,
    ca: &CertificateDer<'static>,
    path: &str,
    body: Vec<u8>,
    version: &'static rustls::SupportedProtocolVersion,
) -> Result<(u16, Vec<u8>, Vec<u8>), String> {
    https_with(addr, ca, path, body, version, &[]).await
}

/// [`https`] with extra request headers.
pub async fn https_with(
    addr: SocketAddr,
    ca: &CertificateDer<'static>,
    path: &str,
    body: Vec<u8>,
    version: &'static rustls::SupportedProtocolVersion,
    headers: &[(&str, &str)],
) -> Result<(u16, Vec<u8>, Vec<u8>), String> {
    https_request(addr, ca, "POST", path, body, version, headers).await
}

/// One HTTPS request with any method.
pub async fn https_request(
    addr: SocketAddr,
    ca: &CertificateDer<'static>,
    method: &str,
    path: &str,
    body: Vec<u8>,
    version: &'static rustls::SupportedProtocolVersion,
    headers: &[(&str, &str)],
) -> Result<(u16, Vec<u8>, Vec<u8>), String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let stream = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .map_err(|e| format!("TLS handshake: {e}"))?;
    let leaf = stream.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost")
        .header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Full::new(Bytes::from(body))).unwrap();
    let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes().to_vec();
    Ok((status, body, leaf))
}

/// Answers one request of a mocked API server (tower-test) with `code` and the JSON `value`.
pub fn respond(
    send: tower_test::mock::SendResponse<hyper::Response<kube::client::Body>>,
    code: u16,
    value: &serde_json::Value,
) {
    send.send_response(
        hyper::Response::builder()
            .status(code)
            .body(kube::client::Body::from(serde_json::to_vec(value).unwrap()))
            .unwrap(),
    );
}

/// Runs the `portcullis` CLI (the linter's real client) with `args` on the blocking pool;
/// returns its exit code, stdout and stderr.
pub async fn run_cli(args: Vec<std::ffi::OsString>) -> (u8, String, String) {
    tokio::task::spawn_blocking(move || {
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        let mut io = portcullis_linter::cli::Io {
            stdin: &mut std::io::empty(),
            stdout: &mut stdout,
            stderr: &mut stderr,
            tty: false,
            version: "test",
            width: None,
            stdin_tty: true,
            exiting: false,
        };
        let code = portcullis_linter::cli::run(args, &mut io);
        (code, String::from_utf8(stdout).unwrap(), String::from_utf8(stderr).unwrap())
    })
    .await
    .unwrap()
}

/// One HTTPS request over TLS 1.3 with an optional bearer token; status and body as text.
pub async fn bearer(
    addr: SocketAddr,
    ca: &CertificateDer<'static>,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Vec<u8>,
) -> (u16, String) {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = bearer.iter().map(|b| ("authorization", b.as_str())).collect();
    let (status, body, _) =
        https_request(addr, ca, method, path, body, &rustls::version::TLS13, &headers).await.unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}
