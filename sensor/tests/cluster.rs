//! The sensor's cluster code paths through kube's real client, against a mocked API server (the
//! one edge we cannot run here): the pod watch asks only for this node's pods and fills the
//! directory; the kube-dns Service and EndpointSlices become the trusted resolvers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed test

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::{Request, Response};
use kube::client::Body;
use portcullis_sensor::cluster::{watch_pods, watch_resolvers};
use portcullis_sensor::pods::PodDirectory;
use serde_json::{Value, json};

fn respond(send: tower_test::mock::SendResponse<Response<Body>>, value: &Value) {
    send.send_response(Response::builder().status(200).body(Body::from(serde_json::to_vec(value).unwrap())).unwrap());
}

fn query(request: &Request<Body>) -> String {
    percent_decode(request.uri().query().unwrap_or(""))
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            out.push(u8::from_str_radix(&text[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn the_pod_watch_lists_only_this_nodes_pods() {
    let (service, mut server) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "default");
    let pods = Arc::new(PodDirectory::default());
    let watching = tokio::spawn(watch_pods(client, "n1".into(), pods.clone()));

    let (request, send) = server.next_request().await.unwrap();
    assert_eq!(request.uri().path(), "/api/v1/pods");
    assert!(query(&request).contains("fieldSelector=spec.nodeName=n1"), "{}", query(&request));
    respond(
        send,
        &json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "10"}, "items": [
            {"metadata": {"name": "pay-7f9c4d-x2k8q", "namespace": "shop", "labels": {"app": "pay"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "pay-7f9c4d", "uid": "u", "controller": true}]},
             "spec": {"nodeName": "n1", "containers": []},
             "status": {"phase": "Running", "podIP": "10.0.1.5"}},
            {"metadata": {"name": "exporter", "namespace": "monitoring"},
             "spec": {"nodeName": "n1", "hostNetwork": true, "containers": []},
             "status": {"phase": "Running", "podIP": "192.168.0.10"}}
        ]}),
    );
    // Then the watch itself: hold it open without events.
    let (request, _held) = server.next_request().await.unwrap();
    assert!(query(&request).contains("watch=true"), "{}", query(&request));
    assert!(query(&request).contains("fieldSelector=spec.nodeName=n1"), "{}", query(&request));
    let pod = pods.lookup("10.0.1.5".parse().unwrap()).unwrap();
    assert_eq!((pod.namespace.as_str(), pod.workload.as_deref()), ("shop", Some("ReplicaSet/pay-7f9c4d")));
    assert!(pods.lookup("192.168.0.10".parse().unwrap()).is_none(), "host-network pods are not attributed");
    watching.abort();
}

#[tokio::test]
async fn kube_dns_addresses_become_trusted_resolvers() {
    let (service, mut server) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "default");
    let (tx, mut rx) = tokio::sync::watch::channel(Vec::new());
    let watching = tokio::spawn(watch_resolvers(client, "kube-system".into(), "kube-dns".into(), tx));

    let (request, send) = server.next_request().await.unwrap();
    assert_eq!(request.uri().path(), "/api/v1/namespaces/kube-system/services/kube-dns");
    respond(
        send,
        &json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "kube-dns", "namespace": "kube-system"},
            "spec": {"clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10", "fd00:96::a"]}}),
    );
    let (request, send) = server.next_request().await.unwrap();
    assert_eq!(request.uri().path(), "/apis/discovery.k8s.io/v1/namespaces/kube-system/endpointslices");
    assert!(query(&request).contains("labelSelector=kubernetes.io/service-name=kube-dns"), "{}", query(&request));
    respond(
        send,
        &json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSliceList", "metadata": {}, "items": [
            {"metadata": {"name": "kube-dns-abc"}, "addressType": "IPv4",
             "endpoints": [{"addresses": ["10.0.0.7"]}, {"addresses": ["10.0.3.9"]}]}
        ]}),
    );
    tokio::time::timeout(Duration::from_secs(5), rx.changed()).await.unwrap().unwrap();
    let trusted: Vec<IpAddr> = rx.borrow().clone();
    let expected: Vec<IpAddr> =
        ["10.0.0.7", "10.0.3.9", "10.96.0.10", "fd00:96::a"].iter().map(|ip| ip.parse().unwrap()).collect();
    assert_eq!(trusted, expected);
    watching.abort();
}
