//! The TLS side of portcullis's HTTPS clients (`portcullis map --from https://…`, the sensor's
//! reports to the webhook): rustls with ring, TLS 1.2 and 1.3 only, trusting only the CA file
//! given (the webhook's), never the system roots.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;

/// A client configuration trusting exactly the certificates in the PEM file `ca`; `flag` names
/// the option the file came from, for the error messages.
pub fn client_config_trusting(ca: &Path, flag: &str) -> anyhow::Result<rustls::ClientConfig> {
    let pem = std::fs::read(ca).with_context(|| format!("reading {flag} {}", ca.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(cert.with_context(|| format!("parsing {flag}"))?).with_context(|| format!("adding {flag}"))?;
    }
    if roots.is_empty() {
        anyhow::bail!("{flag} {} holds no certificate", ca.display());
    }
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("TLS versions")?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_without_certificates_is_refused_by_name() {
        let dir = std::env::temp_dir().join(format!("portcullis-https-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("empty.pem"), "not a certificate\n").unwrap();
        let err = client_config_trusting(&dir.join("empty.pem"), "--ca").unwrap_err().to_string();
        assert!(err.contains("--ca") && err.contains("holds no certificate"), "{err}");
        let err = client_config_trusting(&dir.join("missing.pem"), "--ca").unwrap_err().to_string();
        assert!(err.starts_with("reading --ca"), "{err}");
    }
}
