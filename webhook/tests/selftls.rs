//! Self-managed TLS against an in-memory API: the first replica creates the CA and serving
//! certificate and sets both caBundles; later checks write nothing; the certificate is re-issued
//! by the same CA before it expires (bundles untouched); broken material is replaced; a replica
//! that loses the create race serves the winner's certificate. The certificate is then served
//! for real and a client trusting only the stored CA completes the TLS handshake.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed test

mod common;

use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhook, MutatingWebhookConfiguration, ValidatingWebhook, ValidatingWebhookConfiguration,
    WebhookClientConfig,
};
use k8s_openapi::api::core::v1::Secret;
use portcullis_webhook::controller::api::ApiError;
use portcullis_webhook::selftls::{Material, Plan, SelfTls, TlsApi};

#[derive(Default)]
struct Fake {
    secret: Mutex<Option<Secret>>,
    validating: Mutex<Option<ValidatingWebhookConfiguration>>,
    mutating: Mutex<Option<MutatingWebhookConfiguration>>,
    writes: Mutex<Vec<&'static str>>,
    /// Makes the next create lose to this Secret (written "by another replica").
    race: Mutex<Option<Secret>>,
}

impl TlsApi for Fake {
    fn get_secret<'a>(&'a self, _: &'a str, _: &'a str) -> BoxFuture<'a, Result<Option<Secret>, ApiError>> {
        Box::pin(async move { Ok(self.secret.lock().unwrap().clone()) })
    }
    fn create_secret<'a>(&'a self, _: &'a str, secret: &'a Secret) -> BoxFuture<'a, Result<Secret, ApiError>> {
        Box::pin(async move {
            if let Some(theirs) = self.race.lock().unwrap().take() {
                *self.secret.lock().unwrap() = Some(theirs);
                return Err(ApiError::Conflict("already exists".into()));
            }
            self.writes.lock().unwrap().push("create secret");
            *self.secret.lock().unwrap() = Some(secret.clone());
            Ok(secret.clone())
        })
    }
    fn replace_secret<'a>(&'a self, _: &'a str, secret: &'a Secret) -> BoxFuture<'a, Result<Secret, ApiError>> {
        Box::pin(async move {
            self.writes.lock().unwrap().push("replace secret");
            *self.secret.lock().unwrap() = Some(secret.clone());
            Ok(secret.clone())
        })
    }
    fn get_validating<'a>(
        &'a self,
        _: &'a str,
    ) -> BoxFuture<'a, Result<Option<ValidatingWebhookConfiguration>, ApiError>> {
        Box::pin(async move { Ok(self.validating.lock().unwrap().clone()) })
    }
    fn replace_validating<'a>(&'a self, c: &'a ValidatingWebhookConfiguration) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            self.writes.lock().unwrap().push("replace validating");
            *self.validating.lock().unwrap() = Some(c.clone());
            Ok(())
        })
    }
    fn get_mutating<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Option<MutatingWebhookConfiguration>, ApiError>> {
        Box::pin(async move { Ok(self.mutating.lock().unwrap().clone()) })
    }
    fn replace_mutating<'a>(&'a self, c: &'a MutatingWebhookConfiguration) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            self.writes.lock().unwrap().push("replace mutating");
            *self.mutating.lock().unwrap() = Some(c.clone());
            Ok(())
        })
    }
}

fn client_config() -> WebhookClientConfig {
    WebhookClientConfig { ca_bundle: None, service: None, url: Some("https://example.invalid".into()) }
}

fn fake() -> Fake {
    let fake = Fake::default();
    *fake.validating.lock().unwrap() = Some(ValidatingWebhookConfiguration {
        webhooks: Some(vec![ValidatingWebhook {
            name: "validate.portcullis.dev".into(),
            client_config: client_config(),
            ..Default::default()
        }]),
        ..Default::default()
    });
    *fake.mutating.lock().unwrap() = Some(MutatingWebhookConfiguration {
        webhooks: Some(vec![MutatingWebhook {
            name: "mutate.portcullis.dev".into(),
            client_config: client_config(),
            ..Default::default()
        }]),
        ..Default::default()
    });
    fake
}

fn settings() -> SelfTls {
    SelfTls {
        namespace: "portcullis-system".into(),
        secret: "portcullis-webhook-tls".into(),
        configuration: "portcullis-webhook".into(),
        names: vec!["localhost".into(), "portcullis-webhook.portcullis-system.svc".into()],
    }
}

const NOW: i64 = 1_795_000_000; // 2026-11-18
const DAY: i64 = 86_400;

fn bundles(fake: &Fake) -> (Option<ByteString>, Option<ByteString>) {
    let v = fake.validating.lock().unwrap().clone().unwrap().webhooks.unwrap()[0].client_config.ca_bundle.clone();
    let m = fake.mutating.lock().unwrap().clone().unwrap().webhooks.unwrap()[0].client_config.ca_bundle.clone();
    (v, m)
}

#[tokio::test]
async fn first_start_creates_then_nothing_is_written_again() {
    let fake = fake();
    let tls = settings();
    let material = tls.ensure(&fake, NOW).await.unwrap();
    assert_eq!(*fake.writes.lock().unwrap(), ["create secret", "replace validating", "replace mutating"]);
    let ca = ByteString(material.ca_cert.as_bytes().to_vec());
    assert_eq!(bundles(&fake), (Some(ca.clone()), Some(ca)));
    let secret = fake.secret.lock().unwrap().clone().unwrap();
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
    assert_eq!(Material::from_secret(&secret).unwrap(), material);

    fake.writes.lock().unwrap().clear();
    assert_eq!(tls.ensure(&fake, NOW + DAY).await.unwrap(), material);
    assert!(fake.writes.lock().unwrap().is_empty(), "{:?}", fake.writes.lock().unwrap());
}

#[tokio::test]
async fn the_certificate_is_renewed_by_the_same_ca_before_it_expires() {
    let fake = fake();
    let tls = settings();
    let first = tls.ensure(&fake, NOW).await.unwrap();
    assert_eq!(Material::plan(Some(&first), NOW + 300 * DAY), Plan::Keep);
    assert_eq!(Material::plan(Some(&first), NOW + 340 * DAY), Plan::Renew);
    fake.writes.lock().unwrap().clear();
    let renewed = tls.ensure(&fake, NOW + 340 * DAY).await.unwrap();
    assert_eq!(renewed.ca_cert, first.ca_cert);
    assert_ne!(renewed.cert, first.cert);
    assert_eq!(*fake.writes.lock().unwrap(), ["replace secret"], "the caBundle stays");
    // The CA near its own end (10 years): everything is new.
    assert_eq!(Material::plan(Some(&first), NOW + 3640 * DAY), Plan::Generate);
}

#[tokio::test]
async fn broken_material_is_replaced() {
    let fake = fake();
    let broken = Secret {
        data: Some([("tls.crt".to_owned(), ByteString(b"not a certificate".to_vec()))].into()),
        ..Default::default()
    };
    *fake.secret.lock().unwrap() = Some(broken);
    let material = settings().ensure(&fake, NOW).await.unwrap();
    assert_eq!(fake.writes.lock().unwrap()[0], "replace secret");
    assert_eq!(Material::plan(Some(&material), NOW), Plan::Keep);
}

#[tokio::test]
async fn a_replica_that_loses_the_race_serves_the_winners_certificate() {
    let fake = fake();
    let theirs = Material::generate(&settings().names, NOW).unwrap();
    let secret = Secret { data: Some(theirs.secret_data()), ..Default::default() };
    *fake.race.lock().unwrap() = Some(secret);
    let served = settings().ensure(&fake, NOW).await.unwrap();
    assert_eq!(served, theirs);
    let ca = ByteString(theirs.ca_cert.as_bytes().to_vec());
    assert_eq!(bundles(&fake), (Some(ca.clone()), Some(ca)));
}

#[tokio::test]
async fn the_stored_ca_verifies_the_served_certificate() {
    use portcullis_webhook::server::App;
    let fake = fake();
    let material = settings().ensure(&fake, jiff::Timestamp::now().as_second()).await.unwrap();
    portcullis_webhook::tls::install_crypto_provider();
    let loaded = portcullis_webhook::tls::server_config(material.cert.as_bytes(), material.key.as_bytes()).unwrap();
    let metrics = Arc::new(portcullis_webhook::metrics::Metrics::new());
    let app = App {
        config: Arc::new(Default::default()),
        state: Arc::new(portcullis_webhook::state::StaticState::default()),
        memo: Arc::new(metrics.decision_memo(portcullis_webhook::memo::DEFAULT_BUDGET_BYTES)),
        metrics,
        timeout: std::time::Duration::from_secs(5),
        ingest: None,
    };
    let served = axum_server::tls_rustls::RustlsConfig::from_config(loaded.config);
    let running = portcullis_webhook::server::start(
        std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
        std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
        app,
        served.clone(),
        Default::default(),
    )
    .await
    .unwrap();
    let ca = common::ca_der(&material.ca_cert);
    let (status, _, first_leaf) =
        common::https(running.https, &ca, "/validate", b"{}".to_vec(), &rustls::version::TLS13).await.unwrap();
    assert_eq!(status, 400, "the handshake succeeded with only the stored CA trusted");
    // A renewed certificate (issuer rebuilt from the stored CA key) verifies against the same CA.
    let renewed = material.renew(&settings().names, jiff::Timestamp::now().as_second()).unwrap();
    let loaded = portcullis_webhook::tls::server_config(renewed.cert.as_bytes(), renewed.key.as_bytes()).unwrap();
    served.reload_from_config(loaded.config);
    let (status, _, second_leaf) =
        common::https(running.https, &ca, "/validate", b"{}".to_vec(), &rustls::version::TLS12).await.unwrap();
    assert_eq!(status, 400);
    assert_ne!(first_leaf, second_leaf, "the renewed certificate is served");
}

/// The kube implementation's requests, against a mocked API server: a missing Secret is
/// created, the validating configuration is replaced with the bundle, an absent mutating one is
/// left alone.
#[tokio::test]
async fn the_kube_client_reads_creates_and_replaces() {
    use common::respond;
    use hyper::{Request, Response};
    use kube::client::Body;
    use portcullis_webhook::selftls::KubeTlsApi;
    use serde_json::{Value, json};

    let (service, mut server) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let api = KubeTlsApi::new(kube::Client::new(service, "default"));
    let not_found =
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404});
    let serving = tokio::spawn(async move {
        let (request, send) = server.next_request().await.unwrap();
        assert_eq!(
            (request.method().as_str(), request.uri().path()),
            ("GET", "/api/v1/namespaces/portcullis-system/secrets/portcullis-webhook-tls")
        );
        respond(send, 404, &not_found);
        let (request, send) = server.next_request().await.unwrap();
        assert_eq!(
            (request.method().as_str(), request.uri().path()),
            ("POST", "/api/v1/namespaces/portcullis-system/secrets")
        );
        let body: Value =
            serde_json::from_slice(&http_body_util::BodyExt::collect(request.into_body()).await.unwrap().to_bytes())
                .unwrap();
        assert_eq!(body["type"], "kubernetes.io/tls");
        for key in ["ca.crt", "ca.key", "tls.crt", "tls.key"] {
            assert!(body["data"][key].is_string(), "{key}");
        }
        respond(send, 201, &body);
        let (request, send) = server.next_request().await.unwrap();
        assert_eq!(
            request.uri().path(),
            "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/portcullis-webhook"
        );
        respond(
            send,
            200,
            &json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": "portcullis-webhook", "resourceVersion": "7"},
            "webhooks": [{"name": "validate.portcullis.dev", "clientConfig": {"url": "https://example.invalid"},
                "sideEffects": "None", "admissionReviewVersions": ["v1"]}]}),
        );
        let (request, send) = server.next_request().await.unwrap();
        assert_eq!(request.method(), "PUT");
        let body: Value =
            serde_json::from_slice(&http_body_util::BodyExt::collect(request.into_body()).await.unwrap().to_bytes())
                .unwrap();
        assert_eq!(body["metadata"]["resourceVersion"], "7", "replace is guarded by the resourceVersion read");
        assert!(body["webhooks"][0]["clientConfig"]["caBundle"].is_string());
        respond(send, 200, &body);
        let (request, send) = server.next_request().await.unwrap();
        assert_eq!(
            request.uri().path(),
            "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/portcullis-webhook"
        );
        respond(send, 404, &not_found);
    });
    settings().ensure(&api, NOW).await.unwrap();
    serving.await.unwrap();
}
