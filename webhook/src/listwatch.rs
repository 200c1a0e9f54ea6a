//! List-then-watch for the cluster state's watches: kube-runtime's `watcher` semantics (the
//! same [`Event`]s: `Init`, one `InitApply` per object, `InitDone`, then `Apply` and `Delete`,
//! relisting on `410 Gone`), with the list asked for as client-go's informers ask for it and
//! read while it arrives.
//!
//! - **The list is served from the API server's watch cache** (`resourceVersion=0`, no
//!   `limit`), as a client-go reflector's first list is: one response, from memory, instead of
//!   pages of 500 read from etcd one after the other. It may be older than a quorum read; the
//!   watch that follows starts at its `resourceVersion`, so nothing after it is missed, and a
//!   denial is always confirmed by a quorum read first (`ClusterState::fresh`).
//! - **The response is read as it arrives**: its body's chunks go to a blocking task that
//!   parses them with serde ([`read_list`]) and hands each object on as soon as it is read. The
//!   webhook never holds the list's text (103 MB for 100,000 NetworkPolicies) or its objects
//!   (kube's `ObjectList` buffers the whole document to read its flattened type fields), and
//!   reading overlaps the API server's writing.
//!
//! Errors are retried with kube-runtime's own backoff (`DefaultBackoff`: 0.8 s doubling to 30 s,
//! jittered, the one its `default_backoff` uses).

use std::io::{BufReader, Read};
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes};
use futures::StreamExt;
use http_body_util::BodyExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta;
use kube::api::{Api, ListParams, WatchEvent, WatchParams};
use kube::core::{Request, Status};
use kube::runtime::utils::Backoff as _;
use kube::runtime::watcher::{DefaultBackoff, Event};
use kube::{Client, Resource, ResourceExt};
use serde::de::{DeserializeOwned, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use tokio::sync::mpsc;

/// What is done with each event, from the task that reads the list as well as from the watch.
pub type Apply<K> = Arc<dyn Fn(Event<K>) + Send + Sync>;

/// How many body chunks may wait for the reader: bounds what a list holds in memory while it
/// is read (a chunk is at most hyper's HTTP/1 read buffer, 408 KiB: at most about 3 MiB).
const CHUNKS_IN_FLIGHT: usize = 8;

/// The reader's buffer (serde reads a reader byte by byte; through a buffer that is cheap).
const READ_BUFFER: usize = 64 * 1024;

/// The most of an error response's body that is read (a `Status` is a few hundred bytes).
const MAX_ERROR_BODY: usize = 64 * 1024;

/// The longest wait between attempts (`DefaultBackoff`'s own ceiling).
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Why a list or watch failed.
#[derive(Debug, thiserror::Error)]
pub enum ListWatchError {
    #[error(transparent)]
    Kube(#[from] kube::Error),
    #[error("request: {0}")]
    Request(#[from] kube::core::request::Error),
    #[error("list response: {0}")]
    Read(#[from] serde_json::Error),
    #[error("the list response has no resourceVersion to watch from")]
    NoResourceVersion,
    #[error("the list reader stopped: {0}")]
    Reader(#[from] tokio::task::JoinError),
    #[error("the list response is not UTF-8 text")]
    NotUtf8,
}

/// Lists `api`'s objects, then watches them, forever: every event goes to `apply`.
pub async fn run<K>(api: Api<K>, kind: &'static str, apply: Apply<K>)
where
    K: Resource + DeserializeOwned + Clone + std::fmt::Debug + Send + 'static,
{
    let mut backoff = DefaultBackoff::default();
    loop {
        let resource_version = match list(&api, &apply).await {
            Ok(rv) => rv,
            Err(e) => {
                tracing::warn!(kind, error = %e, "list failed; retrying with backoff");
                wait(&mut backoff).await;
                continue;
            }
        };
        backoff.reset();
        watch(&api, kind, resource_version, &apply, &mut backoff).await;
        tracing::info!(kind, "watch history expired (410 Gone); listing again");
    }
}

/// Lists from the watch cache, reading the response as it arrives; returns the version to
/// watch from.
async fn list<K>(api: &Api<K>, apply: &Apply<K>) -> Result<String, ListWatchError>
where
    K: Resource + DeserializeOwned + Clone + Send + 'static,
{
    let params = ListParams { resource_version: Some("0".to_owned()), ..ListParams::default() };
    let request = Request::new(api.resource_url()).list(&params)?;
    let client: Client = api.clone().into_client();
    let response = client.send(request.map(kube::client::Body::from)).await?;
    let status = response.status();
    let mut body = response.into_body();
    if status.is_client_error() || status.is_server_error() {
        return Err(api_error(status.as_u16(), body).await);
    }
    apply(Event::Init);
    let (chunks, rx) = mpsc::channel::<Bytes>(CHUNKS_IN_FLIGHT);
    let to_index = Arc::clone(apply);
    let reader = tokio::task::spawn_blocking(move || {
        let source = BufReader::with_capacity(READ_BUFFER, Chunks { rx, chunk: Bytes::new() });
        read_list(source, |o| to_index(Event::InitApply(o)))
    });
    let mut failed = None;
    let mut utf8 = Utf8Check::default();
    loop {
        let Some(frame) = body.frame().await else {
            if !utf8.end() {
                failed = Some(ListWatchError::NotUtf8);
            }
            break;
        };
        match frame {
            Ok(frame) => {
                let Ok(data) = frame.into_data() else { continue };
                if !utf8.check(&data) {
                    failed = Some(ListWatchError::NotUtf8);
                    break;
                }
                if chunks.send(data).await.is_err() {
                    // The reader stopped on an error it reports below.
                    break;
                }
            }
            Err(e) => {
                failed = Some(e.into());
                break;
            }
        }
    }
    drop(chunks);
    let read = reader.await;
    if let Some(e) = failed {
        return Err(e);
    }
    let meta = read??;
    let resource_version = meta.resource_version.filter(|v| !v.is_empty()).ok_or(ListWatchError::NoResourceVersion)?;
    apply(Event::InitDone);
    Ok(resource_version)
}

/// Watches from `resource_version` until the API server says it is too old (`410 Gone`): the
/// caller lists again. A watch that ends (the server's timeout, a dropped connection) is started
/// again from the last version seen.
async fn watch<K>(
    api: &Api<K>,
    kind: &'static str,
    mut resource_version: String,
    apply: &Apply<K>,
    backoff: &mut DefaultBackoff,
) where
    K: Resource + DeserializeOwned + Clone + std::fmt::Debug + Send + 'static,
{
    // Bookmarks on: an idle watch still learns how far it has read.
    let params = WatchParams::default();
    loop {
        let mut stream = match api.watch(&params, &resource_version).await {
            Ok(stream) => stream.boxed(),
            Err(kube::Error::Api(s)) if s.code == 410 => return,
            Err(e) => {
                tracing::warn!(kind, error = %e, "watch failed; retrying with backoff");
                wait(backoff).await;
                continue;
            }
        };
        while let Some(event) = stream.next().await {
            match event {
                Ok(WatchEvent::Added(o) | WatchEvent::Modified(o)) => {
                    resource_version = o.resource_version().unwrap_or(resource_version);
                    apply(Event::Apply(o));
                    backoff.reset();
                }
                Ok(WatchEvent::Deleted(o)) => {
                    resource_version = o.resource_version().unwrap_or(resource_version);
                    apply(Event::Delete(o));
                    backoff.reset();
                }
                Ok(WatchEvent::Bookmark(b)) if !b.metadata.resource_version.is_empty() => {
                    resource_version = b.metadata.resource_version;
                }
                Ok(WatchEvent::Bookmark(_)) => {}
                Ok(WatchEvent::Error(e)) if e.code == 410 => return,
                Ok(WatchEvent::Error(e)) => {
                    tracing::warn!(kind, code = e.code, message = %e.message, "watch error event")
                }
                Err(e) => {
                    tracing::warn!(kind, error = %e, "watch stream failed; watching again with backoff");
                    wait(backoff).await;
                    break;
                }
            }
        }
    }
}

/// An error response, read into kube's error (its `Status` when it is one).
async fn api_error(code: u16, body: kube::client::Body) -> ListWatchError {
    let mut text = Vec::new();
    let mut body = std::pin::pin!(body);
    while let Some(Ok(frame)) = body.frame().await {
        if let Ok(data) = frame.into_data() {
            let room = MAX_ERROR_BODY.saturating_sub(text.len());
            text.extend_from_slice(&data[..data.len().min(room)]);
            if room <= data.len() {
                break;
            }
        }
    }
    let status = serde_json::from_slice::<Status>(&text).unwrap_or_else(|_| {
        Status::failure(String::from_utf8_lossy(&text).trim(), "Failed to parse error data").with_code(code)
    });
    ListWatchError::Kube(kube::Error::Api(status.boxed()))
}

/// Reads a list response (`{"kind": …, "metadata": {…}, "items": [...]}`, keys in any order)
/// from `reader`, calling `item` with each object as soon as it is read; returns the list's
/// metadata. Only one object is held at a time. `items: null` is an empty list.
pub fn read_list<K, R>(reader: R, mut item: impl FnMut(K)) -> Result<ListMeta, serde_json::Error>
where
    K: DeserializeOwned,
    R: Read,
{
    let mut de = serde_json::Deserializer::from_reader(reader);
    let meta = ListSeed { item: &mut item, object: PhantomData }.deserialize(&mut de)?;
    de.end()?;
    Ok(meta)
}

/// Body chunks as a reader, for the blocking task that reads the list.
struct Chunks {
    rx: mpsc::Receiver<Bytes>,
    chunk: Bytes,
}

impl Read for Chunks {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.chunk.is_empty() {
            match self.rx.blocking_recv() {
                Some(chunk) => self.chunk = chunk,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk[..n]);
        self.chunk.advance(n);
        Ok(n)
    }
}

/// UTF-8 checked chunk by chunk, a character cut between two chunks included: kube reads every
/// response as UTF-8 text before parsing it, and serde checks only the strings it keeps, not
/// those it skips.
#[derive(Debug, Default)]
pub struct Utf8Check {
    /// The start of a character the last chunk ended in (at most 3 bytes).
    tail: Vec<u8>,
}

impl Utf8Check {
    /// Whether `chunk`, after the chunks before it, is still UTF-8 (a character it ends in
    /// may be completed by the next).
    pub fn check(&mut self, chunk: &[u8]) -> bool {
        let mut rest = chunk;
        if !self.tail.is_empty() {
            let held = self.tail.len();
            let take = rest.len().min(4 - held);
            self.tail.extend_from_slice(&rest[..take]);
            let complete = match std::str::from_utf8(&self.tail) {
                Ok(_) => take,
                Err(e) if e.valid_up_to() >= held => e.valid_up_to() - held,
                // Still the start of the character: the chunk was shorter than its end.
                Err(e) if e.error_len().is_none() && take == rest.len() => {
                    return true;
                }
                Err(_) => return false,
            };
            self.tail.clear();
            rest = &rest[complete..];
        }
        match std::str::from_utf8(rest) {
            Ok(_) => true,
            Err(e) if e.error_len().is_none() => {
                self.tail.extend_from_slice(&rest[e.valid_up_to()..]);
                true
            }
            Err(_) => false,
        }
    }

    /// Whether the text ended at a character's end.
    pub fn end(&self) -> bool {
        self.tail.is_empty()
    }
}

struct ListSeed<'a, K, F> {
    item: &'a mut F,
    object: PhantomData<K>,
}

#[derive(serde::Deserialize)]
#[serde(field_identifier, rename_all = "camelCase")]
enum ListField {
    Metadata,
    Items,
    #[serde(other)]
    Other,
}

impl<'de, K: DeserializeOwned, F: FnMut(K)> DeserializeSeed<'de> for ListSeed<'_, K, F> {
    type Value = ListMeta;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<ListMeta, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de, K: DeserializeOwned, F: FnMut(K)> Visitor<'de> for ListSeed<'_, K, F> {
    type Value = ListMeta;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a Kubernetes list")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ListMeta, A::Error> {
        let mut meta = ListMeta::default();
        while let Some(field) = map.next_key::<ListField>()? {
            match field {
                ListField::Metadata => meta = map.next_value::<Option<ListMeta>>()?.unwrap_or_default(),
                ListField::Items => map.next_value_seed(ItemsSeed { item: &mut *self.item, object: PhantomData })?,
                ListField::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(meta)
    }
}

struct ItemsSeed<'a, K, F> {
    item: &'a mut F,
    object: PhantomData<K>,
}

impl<'de, K: DeserializeOwned, F: FnMut(K)> DeserializeSeed<'de> for ItemsSeed<'_, K, F> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de, K: DeserializeOwned, F: FnMut(K)> Visitor<'de> for ItemsSeed<'_, K, F> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a list's items")
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(object) = seq.next_element::<K>()? {
            (self.item)(object);
        }
        Ok(())
    }
}

/// Waits as long as the backoff says before the next attempt.
async fn wait(backoff: &mut DefaultBackoff) {
    tokio::time::sleep(backoff.next().unwrap_or(BACKOFF_MAX)).await;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// UTF-8 cut anywhere is checked as the whole text is: valid text cut at every byte passes,
    /// and a stray or cut-short byte fails wherever the cuts fall.
    #[test]
    fn utf8_is_checked_across_chunks() {
        let texts: [&[u8]; 9] = [
            "plain".as_bytes(),
            "ü-名-𝄞-€".as_bytes(),
            "𝄞𝄞".as_bytes(),
            b"\xff",
            b"a\xc3",
            b"\xe2\x82",
            b"\xe2\x82a",
            b"\xf0\x9d\x84\x9e\x80",
            b"\xed\xa0\x80",
        ];
        for text in texts {
            let whole = std::str::from_utf8(text).is_ok();
            for first in 0..=text.len() {
                for second in first..=text.len() {
                    let mut check = Utf8Check::default();
                    let ok = [&text[..first], &text[first..second], &text[second..]].iter().all(|c| check.check(c))
                        && check.end();
                    assert_eq!(ok, whole, "{text:?} cut at {first} and {second}");
                }
            }
        }
    }

    /// Chunks cut anywhere (inside a string, a number, a UTF-8 sequence) read as the whole text.
    #[test]
    fn chunks_read_as_the_text_they_were_cut_from() {
        let text =
            r#"{"metadata":{"resourceVersion":"42"},"items":[{"metadata":{"name":"ü-名"}},{"metadata":{"name":"b"}}]}"#;
        for size in [1, 2, 3, 7, text.len()] {
            let (tx, rx) = mpsc::channel(text.len() + 1);
            for chunk in text.as_bytes().chunks(size) {
                tx.try_send(Bytes::copy_from_slice(chunk)).unwrap();
            }
            tx.try_send(Bytes::new()).unwrap();
            drop(tx);
            let mut names = Vec::new();
            let reader = BufReader::with_capacity(4, Chunks { rx, chunk: Bytes::new() });
            let meta =
                read_list::<k8s_openapi::api::core::v1::Namespace, _>(reader, |n| names.push(n.name_any())).unwrap();
            assert_eq!(names, ["ü-名", "b"], "chunks of {size}");
            assert_eq!(meta.resource_version.as_deref(), Some("42"));
        }
    }
}
