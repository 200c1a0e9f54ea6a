//! What the watch reads from the API server, read into only what the store keeps: a
//! NetworkPolicy's spec as JSON text and the metadata reviews read (see [`WatchedPolicy`]).

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use serde::Deserialize as _;

use crate::state::{LAST_APPLIED, StoredPolicy};

/// A NetworkPolicy as the watch and the fresh read take it from the API server: its spec as
/// compact JSON text, and of its metadata only what a stored policy keeps (and the
/// `resourceVersion` the watch resumes from).
///
/// What the store does not keep is never built. `managedFields` (every field of the spec again,
/// as nested maps) and the `kubectl.kubernetes.io/last-applied-configuration` annotation (the
/// whole object again) are skipped while the API server's JSON is read, and the spec is written
/// out as text while it is read instead of being typed and then written: typing the spec was
/// half of the webhook's CPU while it synced 100,000 policies, and the metadata it drops another
/// part (`webhook/benches/watch-sync.sh`, `docs/benchmarks.md`). Reviews type the spec from the
/// stored text, as they do for every stored policy.
#[derive(Clone, Debug, Default, serde::Deserialize)]
pub struct WatchedPolicy {
    #[serde(deserialize_with = "watched_metadata")]
    pub metadata: ObjectMeta,
    pub spec: Option<JsonText>,
}

/// A JSON value as compact JSON text, written while it is read (any deserializer, no
/// intermediate value): the text `serde_json::to_string` writes for the `Value` of the same
/// input, keys in the order given. A key given twice is written twice (a `Value` keeps the
/// last one; so does every later reading of the text). The text is no longer than the input
/// but for the escapes `serde_json` writes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JsonText(pub String);

impl<'de> serde::Deserialize<'de> for JsonText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut out = Vec::new();
        d.deserialize_any(Transcode(&mut out))?;
        // Only whole UTF-8 strings and ASCII are written.
        String::from_utf8(out).map(JsonText).map_err(serde::de::Error::custom)
    }
}

/// Writes the value it is given, as `serde_json` writes a `Value`.
struct Transcode<'a>(&'a mut Vec<u8>);

impl<'de> serde::de::DeserializeSeed<'de> for Transcode<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl Transcode<'_> {
    fn write<T: serde::Serialize + ?Sized, E: serde::de::Error>(&mut self, value: &T) -> Result<(), E> {
        serde_json::to_writer(&mut *self.0, value).map_err(E::custom)
    }
}

impl<'de> serde::de::Visitor<'de> for Transcode<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: serde::de::Error>(mut self, v: bool) -> Result<(), E> {
        self.write(&v)
    }

    fn visit_i64<E: serde::de::Error>(mut self, v: i64) -> Result<(), E> {
        self.write(&v)
    }

    fn visit_u64<E: serde::de::Error>(mut self, v: u64) -> Result<(), E> {
        self.write(&v)
    }

    fn visit_f64<E: serde::de::Error>(mut self, v: f64) -> Result<(), E> {
        // As a `Value` holds it: a number that is not finite is `null`.
        match serde_json::Number::from_f64(v) {
            Some(n) => self.write(&n),
            None => self.visit_unit(),
        }
    }

    fn visit_str<E: serde::de::Error>(mut self, v: &str) -> Result<(), E> {
        self.write(v)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        self.0.extend_from_slice(b"null");
        Ok(())
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<(), E> {
        self.visit_unit()
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.0.push(b'[');
        let mut comma = false;
        while seq.next_element_seed(Item { out: &mut *self.0, comma })?.is_some() {
            comma = true;
        }
        self.0.push(b']');
        Ok(())
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.0.push(b'{');
        let mut comma = false;
        while map.next_key_seed(Key { out: &mut *self.0, comma })?.is_some() {
            self.0.push(b':');
            map.next_value_seed(Transcode(&mut *self.0))?;
            comma = true;
        }
        self.0.push(b'}');
        Ok(())
    }
}

/// Writes an array's element, after a comma unless it is the first (nothing is written when
/// the array has no more).
struct Item<'a> {
    out: &'a mut Vec<u8>,
    comma: bool,
}

impl<'de> serde::de::DeserializeSeed<'de> for Item<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        if self.comma {
            self.out.push(b',');
        }
        d.deserialize_any(Transcode(self.out))
    }
}

/// Writes a map's key, which JSON has as a string, after a comma unless it is the first.
struct Key<'a> {
    out: &'a mut Vec<u8>,
    comma: bool,
}

impl<'de> serde::de::DeserializeSeed<'de> for Key<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Key<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a string key")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<(), E> {
        if self.comma {
            self.out.push(b',');
        }
        serde_json::to_writer(&mut *self.out, v).map_err(E::custom)
    }
}

impl WatchedPolicy {
    /// The policy as stored: the texts `StoredPolicy::new` writes from the object's `Value`,
    /// written without one. The spec is the text it was read into; the object without it is its
    /// metadata as read, less the `resourceVersion` only the watch needed (`apiVersion` and
    /// `kind` are left out of every stored NetworkPolicy).
    pub fn into_stored(mut self) -> StoredPolicy {
        #[derive(serde::Serialize)]
        struct Head<'a> {
            metadata: &'a ObjectMeta,
        }
        self.metadata.resource_version = None;
        let head = serde_json::to_string(&Head { metadata: &self.metadata }).unwrap_or_default();
        StoredPolicy::from_text(head, self.metadata.name.unwrap_or_default(), self.spec.map(|spec| spec.0))
    }
}

impl kube::Resource for WatchedPolicy {
    type DynamicType = ();
    type Scope = k8s_openapi::NamespaceResourceScope;

    fn kind(dt: &()) -> Cow<'_, str> {
        NetworkPolicy::kind(dt)
    }

    fn group(dt: &()) -> Cow<'_, str> {
        NetworkPolicy::group(dt)
    }

    fn version(dt: &()) -> Cow<'_, str> {
        NetworkPolicy::version(dt)
    }

    fn plural(dt: &()) -> Cow<'_, str> {
        NetworkPolicy::plural(dt)
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// The metadata a stored policy keeps; other fields (`managedFields`, `uid`,
/// `creationTimestamp`, `generation`, `selfLink`, …) are skipped unread, as
/// `state::slim_metadata` would remove them.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct WatchedMetadata {
    annotations: Option<Annotations>,
    deletion_grace_period_seconds: Option<i64>,
    deletion_timestamp: Option<Time>,
    finalizers: Option<Vec<String>>,
    generate_name: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    name: Option<String>,
    namespace: Option<String>,
    owner_references: Option<Vec<OwnerReference>>,
    resource_version: Option<String>,
}

fn watched_metadata<'de, D: serde::Deserializer<'de>>(d: D) -> Result<ObjectMeta, D::Error> {
    let m = WatchedMetadata::deserialize(d)?;
    Ok(ObjectMeta {
        annotations: m.annotations.map(|a| a.0).filter(|a| !a.is_empty()),
        deletion_grace_period_seconds: m.deletion_grace_period_seconds,
        deletion_timestamp: m.deletion_timestamp,
        finalizers: m.finalizers,
        generate_name: m.generate_name,
        labels: m.labels,
        name: m.name,
        namespace: m.namespace,
        owner_references: m.owner_references,
        resource_version: m.resource_version,
        ..ObjectMeta::default()
    })
}

/// Annotations without the last applied configuration, whose value is skipped unread.
struct Annotations(BTreeMap<String, String>);

impl<'de> serde::Deserialize<'de> for Annotations {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Annotations;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a map of annotations")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Annotations, A::Error> {
                let mut out = BTreeMap::new();
                while let Some(key) = map.next_key::<String>()? {
                    if key == LAST_APPLIED {
                        map.next_value::<serde::de::IgnoredAny>()?;
                    } else {
                        let value = map.next_value::<String>()?;
                        out.insert(key, value);
                    }
                }
                Ok(Annotations(out))
            }
        }
        d.deserialize_map(Visit)
    }
}
