//! TLS for the admission port: rustls with the ring provider, TLS 1.2 and 1.3 only, a
//! certificate pair read from files and reloaded when it changes, and dev certificates.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum_server::tls_rustls::RustlsConfig;
use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

use crate::metrics::{Metrics, ResultLabels};

/// Installs ring as the process-wide rustls provider (kube's client uses it too).
pub fn install_crypto_provider() {
    // Fails only when a provider is already installed, which is what we want anyway.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Why a certificate pair cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("no certificate in the PEM data")]
    NoCertificate,
    #[error("no private key in the PEM data")]
    NoKey,
    #[error("invalid PEM: {0}")]
    Pem(std::io::Error),
    #[error("certificate and key do not fit together: {0}")]
    Pair(rustls::Error),
}

/// A serving configuration and the certificate's expiry.
#[derive(Debug)]
pub struct Loaded {
    pub config: Arc<ServerConfig>,
    /// notAfter of the leaf certificate (Unix seconds).
    pub not_after: Option<i64>,
}

/// Builds the rustls server configuration for a PEM certificate chain and key.
pub fn server_config(cert_pem: &[u8], key_pem: &[u8]) -> Result<Loaded, TlsError> {
    let certs: Vec<CertificateDer<'static>> =
        rustls_pemfile::certs(&mut &cert_pem[..]).collect::<Result<_, _>>().map_err(TlsError::Pem)?;
    let leaf = certs.first().ok_or(TlsError::NoCertificate)?;
    let not_after = der::not_after(leaf);
    let key: PrivateKeyDer<'static> =
        rustls_pemfile::private_key(&mut &key_pem[..]).map_err(TlsError::Pem)?.ok_or(TlsError::NoKey)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    // Checks that the key parses and matches the certificate's public key.
    CertifiedKey::from_der(certs.clone(), key.clone_key(), &provider).map_err(TlsError::Pair)?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(TlsError::Pair)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(TlsError::Pair)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Loaded { config: Arc::new(config), not_after })
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { path: path.display().to_string(), source })
}

/// Loads a pair of PEM files.
pub fn load_files(cert: &Path, key: &Path) -> Result<(Loaded, Vec<u8>, Vec<u8>), TlsError> {
    let (cert_pem, key_pem) = (read(cert)?, read(key)?);
    let loaded = server_config(&cert_pem, &key_pem)?;
    Ok((loaded, cert_pem, key_pem))
}

/// Watches a certificate pair on disk (a mounted Secret is updated by swapping a symlink, so
/// the contents are compared, not file events) and serves a new pair once it is complete and
/// valid. A bad pair keeps the current one and is logged once.
#[derive(Debug)]
pub struct Reloader {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub interval: Duration,
}

impl Reloader {
    pub async fn run(self, tls: RustlsConfig, mut current: (Vec<u8>, Vec<u8>), metrics: Arc<Metrics>) {
        let mut rejected: Option<(Vec<u8>, Vec<u8>)> = None;
        loop {
            tokio::time::sleep(self.interval).await;
            let pair = match (read(&self.cert), read(&self.key)) {
                (Ok(c), Ok(k)) => (c, k),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::debug!(error = %e, "certificate files not readable right now");
                    continue;
                }
            };
            if pair == current || rejected.as_ref() == Some(&pair) {
                continue;
            }
            match server_config(&pair.0, &pair.1) {
                Ok(loaded) => {
                    tls.reload_from_config(loaded.config);
                    if let Some(t) = loaded.not_after {
                        metrics.cert_expiry.set(t);
                    }
                    metrics.cert_reloads.get_or_create(&ResultLabels { result: "success" }).inc();
                    tracing::info!(cert = %self.cert.display(), not_after = loaded.not_after, "serving the new certificate");
                    current = pair;
                    rejected = None;
                }
                Err(e) => {
                    metrics.cert_reloads.get_or_create(&ResultLabels { result: "failure" }).inc();
                    tracing::warn!(cert = %self.cert.display(), error = %e, "new certificate pair rejected; still serving the previous one");
                    rejected = Some(pair);
                }
            }
        }
    }
}

/// A CA and a serving certificate signed by it, PEM-encoded.
#[derive(Debug, Clone)]
pub struct DevCertificates {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// Generates a CA and a serving certificate for `names` (DNS names or IP addresses).
pub fn dev_certificates(names: &[&str]) -> Result<DevCertificates, rcgen::Error> {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.distinguished_name.push(DnType::CommonName, "portcullis dev CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
    let mut params = CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())?;
    params.distinguished_name.push(DnType::CommonName, names.first().copied().unwrap_or("portcullis-webhook"));
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &ca)?;
    Ok(DevCertificates { ca_pem: ca.pem(), cert_pem: cert.pem(), key_pem: key.serialize_pem() })
}

/// Just enough DER to read a certificate's notAfter.
pub mod der {
    /// One TLV: tag, contents, and the rest of the input.
    fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, rest) = input.split_first()?;
        let (&first, mut rest) = rest.split_first()?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || rest.len() < n {
                return None;
            }
            let (bytes, tail) = rest.split_at(n);
            rest = tail;
            bytes.iter().fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
        };
        if rest.len() < len {
            return None;
        }
        let (content, tail) = rest.split_at(len);
        Some((tag, content, tail))
    }

    /// notAfter of an X.509 certificate, as Unix seconds.
    pub fn not_after(cert: &[u8]) -> Option<i64> {
        let (0x30, certificate, _) = tlv(cert)? else { return None };
        let (0x30, tbs, _) = tlv(certificate)? else { return None };
        let mut rest = tbs;
        let (tag, _, tail) = tlv(rest)?;
        if tag == 0xa0 {
            rest = tail; // explicit version
        }
        // serialNumber, signature, issuer, then validity.
        for _ in 0..3 {
            rest = tlv(rest)?.2;
        }
        let (0x30, validity, _) = tlv(rest)? else { return None };
        let (_, _, after) = tlv(validity)?;
        let (tag, time, _) = tlv(after)?;
        parse_time(tag, std::str::from_utf8(time).ok()?)
    }

    /// UTCTime (`YYMMDDHHMMSSZ`) or GeneralizedTime (`YYYYMMDDHHMMSSZ`).
    fn parse_time(tag: u8, s: &str) -> Option<i64> {
        let s = s.strip_suffix('Z')?;
        let (year, rest) = match (tag, s.len()) {
            (0x17, 12) => {
                let yy: i64 = s.get(..2)?.parse().ok()?;
                (if yy >= 50 { 1900 + yy } else { 2000 + yy }, s.get(2..)?)
            }
            (0x18, 14) => (s.get(..4)?.parse().ok()?, s.get(4..)?),
            _ => return None,
        };
        let field = |i: usize| -> Option<i64> { rest.get(i..i + 2)?.parse().ok() };
        let (month, day, hour, minute, second) = (field(0)?, field(2)?, field(4)?, field(6)?, field(8)?);
        if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
            return None;
        }
        Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
    }

    /// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
    fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = (m + 9) % 12;
        let doy = (153 * mp + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn times() {
            assert_eq!(parse_time(0x17, "700101000000Z"), Some(0));
            assert_eq!(parse_time(0x17, "261121103000Z"), Some(1_795_257_000));
            assert_eq!(parse_time(0x18, "40960101000000Z"), Some(67_090_118_400));
            assert_eq!(parse_time(0x17, "261321103000Z"), None);
            assert_eq!(parse_time(0x17, "2611211030Z"), None);
        }

        #[test]
        fn garbage_is_none_not_a_panic() {
            for bytes in [&[][..], &[0x30], &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff], &[0x30, 0x03, 0x30, 0x01]] {
                assert_eq!(not_after(bytes), None);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_certificates_serve_and_carry_an_expiry() {
        install_crypto_provider();
        let dev = dev_certificates(&["localhost", "127.0.0.1"]).unwrap();
        let loaded = server_config(dev.cert_pem.as_bytes(), dev.key_pem.as_bytes()).unwrap();
        assert!(loaded.not_after.is_some_and(|t| t > 1_700_000_000));
    }

    #[test]
    fn mismatched_pair_is_rejected() {
        install_crypto_provider();
        let a = dev_certificates(&["localhost"]).unwrap();
        let b = dev_certificates(&["localhost"]).unwrap();
        let err = server_config(a.cert_pem.as_bytes(), b.key_pem.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("do not fit together"), "{err}");
        assert!(matches!(server_config(b"", a.key_pem.as_bytes()), Err(TlsError::NoCertificate)));
        assert!(matches!(server_config(a.cert_pem.as_bytes(), b"junk"), Err(TlsError::NoKey)));
    }
}
