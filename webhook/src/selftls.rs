//! Self-managed TLS (`serve --self-managed-tls SECRET`): TLS without cert-manager.
//!
//! The webhook keeps its own CA and serving certificate in one Secret (`tls.crt`, `tls.key`,
//! `ca.crt`, `ca.key`) and writes the CA into the `caBundle` of its Validating and Mutating
//! webhook configurations, at start and whenever it changes. Every replica runs the same
//! [`SelfTls::ensure`] loop; the Secret's resourceVersion decides races (a replica that loses re-reads
//! and serves the winner's certificate), so all replicas converge on one CA and one certificate.
//!
//! The CA lives 10 years and is kept; the serving certificate lives one year and is re-issued by
//! the same CA 30 days before it expires, so the `caBundle` does not change on rotation.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::api::core::v1::Secret;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

use crate::controller::api::ApiError;

/// The CA's subject; the serving certificate names it as issuer, so it must not change.
pub const CA_NAME: &str = "portcullis webhook CA";
const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 86_400);
const LEAF_VALIDITY: Duration = Duration::from_secs(365 * 86_400);
/// Re-issue the serving certificate this long before it expires.
pub const RENEW_BEFORE: Duration = Duration::from_secs(30 * 86_400);

/// The CA and serving certificate, PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Material {
    pub ca_cert: String,
    pub ca_key: String,
    pub cert: String,
    pub key: String,
}

/// Why material could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SelfTlsError {
    #[error("generating certificates: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("Kubernetes API: {0}")]
    Api(#[from] ApiError),
}

fn ca_params(now: i64) -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.distinguished_name.push(DnType::CommonName, CA_NAME);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    set_validity(&mut params, now, CA_VALIDITY);
    Ok(params)
}

/// Valid from the day before `now` (clock skew between replicas and the API server) for
/// `validity`, at day granularity.
fn set_validity(params: &mut CertificateParams, now: i64, validity: Duration) {
    // A jiff date is a valid calendar date, which is all date_time_ymd asserts.
    let day = |seconds: i64| {
        let date = jiff::Timestamp::from_second(seconds).ok()?.to_zoned(jiff::tz::TimeZone::UTC).date();
        Some(rcgen::date_time_ymd(
            i32::from(date.year()),
            u8::try_from(date.month()).ok()?,
            u8::try_from(date.day()).ok()?,
        ))
    };
    let end = now.saturating_add(i64::try_from(validity.as_secs()).unwrap_or(i64::MAX));
    if let (Some(start), Some(end)) = (day(now - 86_400), day(end)) {
        params.not_before = start;
        params.not_after = end;
    }
}

impl Material {
    /// A new CA and a serving certificate for `names`, valid from `now` (Unix seconds).
    pub fn generate(names: &[String], now: i64) -> Result<Material, SelfTlsError> {
        let ca_key = KeyPair::generate()?;
        let ca_cert = ca_params(now)?.self_signed(&ca_key)?.pem();
        let ca_key = ca_key.serialize_pem();
        let (cert, key) = issue(&ca_key, names, now)?;
        Ok(Material { ca_cert, ca_key, cert, key })
    }

    /// The same CA, a new serving certificate.
    pub fn renew(&self, names: &[String], now: i64) -> Result<Material, SelfTlsError> {
        let (cert, key) = issue(&self.ca_key, names, now)?;
        Ok(Material { cert, key, ..self.clone() })
    }

    /// Reads the four keys of the Secret; `None` when any is missing or not UTF-8.
    pub fn from_secret(secret: &Secret) -> Option<Material> {
        let data = secret.data.as_ref()?;
        let text = |key: &str| String::from_utf8(data.get(key)?.0.clone()).ok();
        Some(Material {
            ca_cert: text("ca.crt")?,
            ca_key: text("ca.key")?,
            cert: text("tls.crt")?,
            key: text("tls.key")?,
        })
    }

    pub fn secret_data(&self) -> BTreeMap<String, ByteString> {
        [("ca.crt", &self.ca_cert), ("ca.key", &self.ca_key), ("tls.crt", &self.cert), ("tls.key", &self.key)]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), ByteString(v.as_bytes().to_vec())))
            .collect()
    }

    fn not_after(pem: &str) -> Option<i64> {
        let der = rustls_pemfile::certs(&mut pem.as_bytes()).next()?.ok()?;
        crate::tls::der::not_after(&der)
    }

    /// What to do with stored material at `now`.
    pub fn plan(stored: Option<&Material>, now: i64) -> Plan {
        let renew = i64::try_from(RENEW_BEFORE.as_secs()).unwrap_or(i64::MAX);
        let Some(stored) = stored else { return Plan::Generate };
        let usable = crate::tls::server_config(stored.cert.as_bytes(), stored.key.as_bytes()).is_ok()
            && KeyPair::from_pem(&stored.ca_key).is_ok();
        match (usable, Self::not_after(&stored.ca_cert), Self::not_after(&stored.cert)) {
            (true, Some(ca), _) if ca - now < renew => Plan::Generate,
            (true, Some(_), Some(leaf)) if leaf - now < renew => Plan::Renew,
            (true, Some(_), Some(_)) => Plan::Keep,
            _ => Plan::Generate,
        }
    }
}

/// What [`Material::plan`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    Keep,
    /// The serving certificate is close to expiry: a new one from the same CA.
    Renew,
    /// Nothing usable (absent, broken, or the CA itself expiring): a new CA and certificate.
    Generate,
}

fn issue(ca_key_pem: &str, names: &[String], now: i64) -> Result<(String, String), rcgen::Error> {
    let ca_key = KeyPair::from_pem(ca_key_pem)?;
    // The issuer is rebuilt from the same subject and key: what a signature and an issuer name
    // need, without parsing the stored CA certificate.
    let issuer = Issuer::new(ca_params(now)?, ca_key);
    let mut params = CertificateParams::new(names.to_vec())?;
    params.distinguished_name.push(DnType::CommonName, names.first().map_or("portcullis-webhook", String::as_str));
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    set_validity(&mut params, now, LEAF_VALIDITY);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// The API calls self-managed TLS makes; the kube implementation is [`KubeTlsApi`].
pub trait TlsApi: Send + Sync {
    fn get_secret<'a>(&'a self, namespace: &'a str, name: &'a str) -> BoxFuture<'a, Result<Option<Secret>, ApiError>>;
    /// Creates; `Err(ApiError::Conflict(_))` when it exists already.
    fn create_secret<'a>(&'a self, namespace: &'a str, secret: &'a Secret) -> BoxFuture<'a, Result<Secret, ApiError>>;
    /// Replaces, guarded by the resourceVersion in `secret`.
    fn replace_secret<'a>(&'a self, namespace: &'a str, secret: &'a Secret) -> BoxFuture<'a, Result<Secret, ApiError>>;
    fn get_validating<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<ValidatingWebhookConfiguration>, ApiError>>;
    fn replace_validating<'a>(
        &'a self,
        config: &'a ValidatingWebhookConfiguration,
    ) -> BoxFuture<'a, Result<(), ApiError>>;
    fn get_mutating<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<MutatingWebhookConfiguration>, ApiError>>;
    fn replace_mutating<'a>(&'a self, config: &'a MutatingWebhookConfiguration) -> BoxFuture<'a, Result<(), ApiError>>;
}

/// Where the material lives and what it serves.
#[derive(Debug, Clone)]
pub struct SelfTls {
    pub namespace: String,
    pub secret: String,
    /// The Validating and Mutating webhook configurations' name (the chart gives both one name).
    pub configuration: String,
    /// DNS names of the serving certificate (the Service and the headless Service).
    pub names: Vec<String>,
}

impl SelfTls {
    /// Makes sure the Secret holds usable material and both configurations trust its CA;
    /// returns the material to serve.
    pub async fn ensure(&self, api: &dyn TlsApi, now: i64) -> Result<Material, SelfTlsError> {
        let material = self.ensure_secret(api, now).await?;
        self.ensure_bundles(api, &material.ca_cert).await?;
        Ok(material)
    }

    async fn ensure_secret(&self, api: &dyn TlsApi, now: i64) -> Result<Material, SelfTlsError> {
        let existing = api.get_secret(&self.namespace, &self.secret).await?;
        let stored = existing.as_ref().and_then(Material::from_secret);
        let next = match Material::plan(stored.as_ref(), now) {
            Plan::Keep => return stored.ok_or_else(|| ApiError::Other("material vanished".into()).into()),
            Plan::Renew => match &stored {
                Some(stored) => stored.renew(&self.names, now)?,
                None => Material::generate(&self.names, now)?,
            },
            Plan::Generate => Material::generate(&self.names, now)?,
        };
        let mut secret = existing.clone().unwrap_or_default();
        secret.metadata.name = Some(self.secret.clone());
        secret.metadata.namespace = Some(self.namespace.clone());
        secret.type_ = Some("kubernetes.io/tls".to_owned());
        secret.data = Some(next.secret_data());
        let written = if existing.is_some() {
            api.replace_secret(&self.namespace, &secret).await
        } else {
            api.create_secret(&self.namespace, &secret).await
        };
        match written {
            Ok(_) => {
                tracing::info!(secret = %self.secret, "self-managed TLS: wrote a new serving certificate");
                Ok(next)
            }
            // Another replica wrote first: serve what it wrote.
            Err(ApiError::Conflict(_)) => {
                let theirs = api.get_secret(&self.namespace, &self.secret).await?;
                theirs.as_ref().and_then(Material::from_secret).ok_or_else(|| {
                    ApiError::Other("the Secret changed under us and holds no certificate".into()).into()
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn ensure_bundles(&self, api: &dyn TlsApi, ca_pem: &str) -> Result<(), SelfTlsError> {
        let bundle = ByteString(ca_pem.as_bytes().to_vec());
        if let Some(mut config) = api.get_validating(&self.configuration).await?
            && set_bundle(config.webhooks.iter_mut().flatten().map(|hook| &mut hook.client_config), &bundle)
        {
            api.replace_validating(&config).await?;
            tracing::info!(configuration = %self.configuration, "self-managed TLS: caBundle set (validating)");
        }
        if let Some(mut config) = api.get_mutating(&self.configuration).await?
            && set_bundle(config.webhooks.iter_mut().flatten().map(|hook| &mut hook.client_config), &bundle)
        {
            api.replace_mutating(&config).await?;
            tracing::info!(configuration = %self.configuration, "self-managed TLS: caBundle set (mutating)");
        }
        Ok(())
    }
}

/// Sets `bundle` on every webhook of a configuration; true when any was different.
fn set_bundle<'a>(configs: impl Iterator<Item = &'a mut WebhookClientConfig>, bundle: &ByteString) -> bool {
    let mut changed = false;
    for config in configs {
        if config.ca_bundle.as_ref() != Some(bundle) {
            config.ca_bundle = Some(bundle.clone());
            changed = true;
        }
    }
    changed
}

/// [`TlsApi`] over kube's client.
#[derive(Clone)]
pub struct KubeTlsApi {
    client: kube::Client,
}

impl std::fmt::Debug for KubeTlsApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeTlsApi").finish_non_exhaustive()
    }
}

impl KubeTlsApi {
    pub fn new(client: kube::Client) -> Self {
        Self { client }
    }
}

impl TlsApi for KubeTlsApi {
    fn get_secret<'a>(&'a self, namespace: &'a str, name: &'a str) -> BoxFuture<'a, Result<Option<Secret>, ApiError>> {
        Box::pin(
            async move { Ok(kube::Api::<Secret>::namespaced(self.client.clone(), namespace).get_opt(name).await?) },
        )
    }
    fn create_secret<'a>(&'a self, namespace: &'a str, secret: &'a Secret) -> BoxFuture<'a, Result<Secret, ApiError>> {
        Box::pin(async move {
            let api = kube::Api::<Secret>::namespaced(self.client.clone(), namespace);
            Ok(api.create(&kube::api::PostParams::default(), secret).await?)
        })
    }
    fn replace_secret<'a>(&'a self, namespace: &'a str, secret: &'a Secret) -> BoxFuture<'a, Result<Secret, ApiError>> {
        Box::pin(async move {
            let api = kube::Api::<Secret>::namespaced(self.client.clone(), namespace);
            let name = secret.metadata.name.clone().unwrap_or_default();
            Ok(api.replace(&name, &kube::api::PostParams::default(), secret).await?)
        })
    }
    fn get_validating<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<ValidatingWebhookConfiguration>, ApiError>> {
        Box::pin(async move { Ok(kube::Api::all(self.client.clone()).get_opt(name).await?) })
    }
    fn replace_validating<'a>(
        &'a self,
        config: &'a ValidatingWebhookConfiguration,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            let api = kube::Api::<ValidatingWebhookConfiguration>::all(self.client.clone());
            let name = config.metadata.name.clone().unwrap_or_default();
            api.replace(&name, &kube::api::PostParams::default(), config).await?;
            Ok(())
        })
    }
    fn get_mutating<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<MutatingWebhookConfiguration>, ApiError>> {
        Box::pin(async move { Ok(kube::Api::all(self.client.clone()).get_opt(name).await?) })
    }
    fn replace_mutating<'a>(&'a self, config: &'a MutatingWebhookConfiguration) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            let api = kube::Api::<MutatingWebhookConfiguration>::all(self.client.clone());
            let name = config.metadata.name.clone().unwrap_or_default();
            api.replace(&name, &kube::api::PostParams::default(), config).await?;
            Ok(())
        })
    }
}

/// Re-checks every `every`: picks up another replica's rotation, rotates when due, keeps the
/// bundles right; reloads the served certificate when it changed.
pub async fn run(
    tls: SelfTls,
    api: std::sync::Arc<dyn TlsApi>,
    served: axum_server::tls_rustls::RustlsConfig,
    mut current: Material,
    every: Duration,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
) {
    loop {
        tokio::time::sleep(every).await;
        let now = jiff::Timestamp::now().as_second();
        match tls.ensure(api.as_ref(), now).await {
            Ok(material) if material != current => {
                match crate::tls::server_config(material.cert.as_bytes(), material.key.as_bytes()) {
                    Ok(loaded) => {
                        served.reload_from_config(loaded.config);
                        if let Some(t) = loaded.not_after {
                            metrics.cert_expiry.set(t);
                        }
                        tracing::info!("self-managed TLS: serving the new certificate");
                        current = material;
                    }
                    Err(e) => tracing::error!(error = %e, "self-managed TLS: the stored certificate cannot be served"),
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "self-managed TLS: check failed; retrying"),
        }
    }
}
