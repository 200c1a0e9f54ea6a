//! List-then-watch (src/listwatch.rs): a list response read as it arrives, whatever its key
//! order and however it is cut, and the list, watch and relist requests kube-runtime's watcher
//! would make, against a mocked API server (tower-test) through kube's real client code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Read;
use std::sync::{Arc, Mutex};

use hyper::{Request, Response};
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::ResourceExt;
use kube::client::Body;
use kube::runtime::watcher::Event;
use portcullis_webhook::listwatch::{self, read_list};
use serde_json::{Value, json};
use tower_test::mock::{Handle, pair};

type ApiHandle = Handle<Request<Body>, Response<Body>>;

fn namespace(name: &str, rv: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "resourceVersion": rv,
        "labels": {"team": name}}})
}

/// A reader that hands out one byte per read: every object is cut at every byte.
struct OneByte<'a>(&'a [u8]);

impl Read for OneByte<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match (self.0.split_first(), buf.first_mut()) {
            (Some((b, rest)), Some(out)) => {
                *out = *b;
                self.0 = rest;
                Ok(1)
            }
            _ => Ok(0),
        }
    }
}

fn names(text: &str) -> Result<(Vec<String>, Option<String>), serde_json::Error> {
    let mut seen = Vec::new();
    let meta = read_list::<Namespace, _>(OneByte(text.as_bytes()), |n| seen.push(n.name_any()))?;
    Ok((seen, meta.resource_version))
}

/// The API conventions' list: `kind`, `apiVersion`, `metadata` (ListMeta), `items`. Keys come
/// in any order, unknown keys are ignored, and `items: null` is an empty list (Go's nil slice).
#[test]
fn a_list_is_read_object_by_object_whatever_its_key_order() {
    let items = json!([namespace("a", "5"), namespace("b", "6")]);
    let lists = [
        json!({"kind": "NamespaceList", "apiVersion": "v1", "metadata": {"resourceVersion": "9"}, "items": items}),
        json!({"items": items, "future": {"x": [1, 2]}, "metadata": {"resourceVersion": "9", "continue": ""}}),
    ];
    for list in lists {
        let text = serde_json::to_string(&list).unwrap();
        assert_eq!(names(&text).unwrap(), (vec!["a".to_owned(), "b".to_owned()], Some("9".to_owned())), "{text}");
        let pretty = serde_json::to_string_pretty(&list).unwrap();
        assert_eq!(names(&pretty).unwrap().0, ["a", "b"], "{pretty}");
    }
    assert_eq!(names(r#"{"metadata":{"resourceVersion":"3"},"items":null}"#).unwrap(), (vec![], Some("3".to_owned())));
    assert_eq!(names(r#"{"items":[]}"#).unwrap(), (vec![], None));
    assert_eq!(names(r#"{"metadata":null,"items":[]}"#).unwrap(), (vec![], None));
}

/// A list that is cut short, is not a list, or carries anything after it fails: the watch then
/// lists again, and the index keeps what it had (a relist is swapped in only when complete).
#[test]
fn a_broken_list_is_an_error_not_a_shorter_list() {
    let whole = serde_json::to_string(&json!({"metadata": {"resourceVersion": "9"},
        "items": [namespace("a", "5"), namespace("b", "6")]}))
    .unwrap();
    for cut in 0..whole.len() {
        assert!(names(&whole[..cut]).is_err(), "a list cut at {cut} bytes was read: {}", &whole[..cut]);
    }
    for broken in [
        "",
        "[]",
        "null",
        r#"{"items": {}}"#,
        r#"{"items": [1]}"#,
        r#"{"items": [{"metadata": {"name": 5}}]}"#,
        r#"{"metadata": {"resourceVersion": 9}, "items": []}"#,
        r#"{"items": []} {"items": []}"#,
        r#"{"items": []}]"#,
    ] {
        assert!(names(broken).is_err(), "{broken:?} was read as a list");
    }
}

fn mocked() -> (kube::Client, ApiHandle) {
    let (service, handle) = pair::<Request<Body>, Response<Body>>();
    (kube::Client::new(service, "default"), handle)
}

fn query(request: &Request<Body>) -> Vec<(String, String)> {
    let query = request.uri().query().unwrap_or_default();
    query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

fn has(query: &[(String, String)], key: &str, value: &str) -> bool {
    query.iter().any(|(k, v)| k == key && v == value)
}

fn ok(body: impl Into<Vec<u8>>) -> Response<Body> {
    Response::builder().status(200).body(Body::from(body.into())).unwrap()
}

/// Answers the next request, which must be the list from the watch cache.
async fn answer_list(api: &mut ApiHandle, rv: &str, items: Value) {
    let (request, send) = api.next_request().await.expect("the watch lists");
    assert_eq!(request.uri().path(), "/api/v1/namespaces");
    let q = query(&request);
    assert!(has(&q, "resourceVersion", "0"), "the list is asked of the watch cache: {q:?}");
    assert!(!q.iter().any(|(k, _)| k == "limit" || k == "watch"), "one response, not pages: {q:?}");
    let list =
        json!({"kind": "NamespaceList", "apiVersion": "v1", "metadata": {"resourceVersion": rv}, "items": items});
    send.send_response(ok(serde_json::to_vec(&list).unwrap()));
}

/// Answers the next request, which must be a watch from `rv`, with watch event lines.
async fn answer_watch(api: &mut ApiHandle, rv: &str, events: &[Value]) {
    let (request, send) = api.next_request().await.expect("the list is followed by a watch");
    assert_eq!(request.uri().path(), "/api/v1/namespaces");
    let q = query(&request);
    assert!(has(&q, "watch", "true") && has(&q, "resourceVersion", rv), "a watch from {rv}: {q:?}");
    assert!(has(&q, "allowWatchBookmarks", "true"), "{q:?}");
    let lines: String = events.iter().map(|e| format!("{e}\n")).collect();
    send.send_response(ok(lines));
}

fn describe(event: &Event<Namespace>) -> String {
    match event {
        Event::Init => "init".to_owned(),
        Event::InitApply(n) => format!("init-apply {}", n.name_any()),
        Event::InitDone => "init-done".to_owned(),
        Event::Apply(n) => format!("apply {}", n.name_any()),
        Event::Delete(n) => format!("delete {}", n.name_any()),
    }
}

type Seen = Arc<Mutex<Vec<String>>>;

/// Namespaces listed and watched from the mocked API server, each event described in `Seen`.
fn watching() -> (ApiHandle, Seen, tokio::task::JoinHandle<()>) {
    let (client, api) = mocked();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    let run = tokio::spawn(listwatch::run(
        Api::<Namespace>::all(client),
        "Namespace",
        Arc::new(move |e: Event<Namespace>| record.lock().unwrap().push(describe(&e))),
    ));
    (api, seen, run)
}

/// The events kube-runtime's watcher gives for the same answers: the list (Init, each object,
/// InitDone), the watch's changes from the list's version, a watch started again from the last
/// version seen (an object's or a bookmark's, never an empty one), and a relist when that version has expired
/// (410 Gone). A failed list (500) is retried, and the index never sees half of it.
#[tokio::test(start_paused = true)]
async fn a_list_is_followed_by_a_watch_from_its_version_and_a_relist_when_it_expires() {
    let (mut api, seen, run) = watching();

    answer_list(&mut api, "10", json!([namespace("a", "4"), namespace("b", "7")])).await;
    answer_watch(
        &mut api,
        "10",
        &[
            json!({"type": "ADDED", "object": namespace("c", "11")}),
            json!({"type": "MODIFIED", "object": namespace("a", "12")}),
            json!({"type": "BOOKMARK", "object": {"kind": "Namespace", "apiVersion": "v1",
                "metadata": {"resourceVersion": "15"}}}),
            // A bookmark without a version says nothing: watching from "" would start anywhere.
            json!({"type": "BOOKMARK", "object": {"kind": "Namespace", "apiVersion": "v1", "metadata": {}}}),
        ],
    )
    .await;
    // The watch ended (the server's timeout): watched again from the bookmark's version.
    answer_watch(
        &mut api,
        "15",
        &[
            json!({"type": "DELETED", "object": namespace("b", "16")}),
            json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                "message": "too old resource version: 16 (20)", "reason": "Expired", "code": 410}}),
        ],
    )
    .await;
    // Expired: listed again. The first try fails; the next, after a backoff, succeeds.
    let (_, send) = api.next_request().await.expect("an expired watch lists again");
    send.send_response(
        Response::builder()
            .status(500)
            .body(Body::from(
                serde_json::to_vec(&json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                    "message": "etcd is sad", "reason": "InternalError", "code": 500}))
                .unwrap(),
            ))
            .unwrap(),
    );
    answer_list(&mut api, "30", json!([namespace("a", "12"), namespace("c", "11")])).await;
    let (request, _send) = api.next_request().await.expect("and watches from the new list's version");
    assert!(has(&query(&request), "resourceVersion", "30"));
    run.abort();

    assert_eq!(
        *seen.lock().unwrap(),
        [
            "init",
            "init-apply a",
            "init-apply b",
            "init-done",
            "apply c",
            "apply a",
            "delete b",
            "init",
            "init-apply a",
            "init-apply c",
            "init-done"
        ]
    );
}

/// A list response cut short by the connection, or with bytes that are not UTF-8 (even in a
/// field nothing reads), is an error, never `InitDone`: the relist buffer it filled is dropped
/// by the next list's `Init`.
#[tokio::test(start_paused = true)]
async fn a_list_cut_short_is_listed_again() {
    let (mut api, seen, run) = watching();
    let whole = serde_json::to_string(&json!({"metadata": {"resourceVersion": "10"},
        "items": [namespace("a", "4"), namespace("b", "7")]}))
    .unwrap();
    let cut = whole.find(r#""name":"b""#).unwrap() + 3;
    let (_, send) = api.next_request().await.unwrap();
    send.send_response(ok(&whole.as_bytes()[..cut]));
    let (_, send) = api.next_request().await.unwrap();
    // `{"x":"\xff",` and the whole list's keys after it.
    let mut not_utf8 = br#"{"x":"?","#.to_vec();
    not_utf8[6] = 0xff;
    not_utf8.extend_from_slice(&whole.as_bytes()[1..]);
    send.send_response(ok(not_utf8));
    answer_list(&mut api, "10", json!([namespace("a", "4"), namespace("b", "7")])).await;
    let (request, _send) = api.next_request().await.unwrap();
    assert!(has(&query(&request), "watch", "true"));
    run.abort();
    assert_eq!(
        *seen.lock().unwrap(),
        ["init", "init-apply a", "init", "init", "init-apply a", "init-apply b", "init-done"]
    );
}
