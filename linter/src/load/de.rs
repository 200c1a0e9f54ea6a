//! Typed values straight from parser events, without building a `serde_json::Value` first.
//!
//! Workload specs are most of a run's input and the engine reads only a few of their fields, so
//! building a `Value` tree for each and then deserializing it again costs more than all the
//! rules. [`from_events`] deserializes one node's events directly. It answers exactly as
//! deserializing the `Value` the same events build would: scalars resolve through the same
//! core-schema code (and are then handed to `serde_json`'s own `Value` deserializer), maps and
//! sequences are visited in document order. What it does not model it refuses rather than
//! approximates — aliases, anchors, tags, merge keys, duplicate keys, enums — and a refusal (or any
//! type error) sends the caller back to the `Value` path, which reports errors with their paths.

use std::borrow::Cow;
use std::fmt;

use saphyr_parser::{Event, Span};
use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};

use super::yaml::{key_string, resolve_untagged};

/// Why a node could not be deserialized from its events; the caller falls back to the `Value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(String);

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

impl de::Error for Refused {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Refused(msg.to_string())
    }
}

/// Largest mapping whose keys are checked for duplicates here; larger ones go the `Value` way.
const MAX_CHECKED_KEYS: usize = 64;

/// Deserializes the node whose events are `events` (exactly one node: a scalar, or a collection
/// from its start to its end event).
pub fn from_events<T: DeserializeOwned>(events: &[(Event<'_>, Span)]) -> Result<T, Refused> {
    // Room for the keys of a pod template's deepest path without growing the stack.
    let mut de = EventDeserializer { events, pos: 0, keys: Vec::with_capacity(16) };
    let value = T::deserialize(&mut de)?;
    if de.pos != events.len() {
        return Err(Refused("trailing events".to_owned()));
    }
    Ok(value)
}

struct EventDeserializer<'s, 'de> {
    events: &'s [(Event<'de>, Span)],
    pos: usize,
    /// Keys of the open mappings, innermost last (one stack for all: a map per allocation would
    /// cost more than the lookups).
    keys: Vec<Cow<'de, str>>,
}

impl<'de> EventDeserializer<'_, 'de> {
    fn next(&mut self) -> Result<&Event<'de>, Refused> {
        let (event, _) = self.events.get(self.pos).ok_or_else(|| Refused("unexpected end of events".to_owned()))?;
        self.pos += 1;
        Ok(event)
    }

    fn peek(&self) -> Option<&Event<'de>> {
        self.events.get(self.pos).map(|(e, _)| e)
    }

    fn expect_end(&mut self, mapping: bool) -> Result<(), Refused> {
        match (self.next()?, mapping) {
            (Event::MappingEnd, true) | (Event::SequenceEnd, false) => Ok(()),
            _ => Err(Refused("collection not fully read".to_owned())),
        }
    }
}

/// A scalar with neither anchor nor tag.
fn plain_scalar<'a, 'de>(event: &'a Event<'de>) -> Result<(&'a Cow<'de, str>, saphyr_parser::ScalarStyle), Refused> {
    match event {
        Event::Scalar(text, style, 0, None) => Ok((text, *style)),
        _ => Err(Refused("not a plain scalar (anchor, tag, alias or collection)".to_owned())),
    }
}

impl<'de> de::Deserializer<'de> for &mut EventDeserializer<'_, 'de> {
    type Error = Refused;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Refused> {
        match self.next()? {
            Event::MappingStart(0, None) => {
                let start = self.keys.len();
                let value = visitor.visit_map(Entries { de: &mut *self, start })?;
                self.keys.truncate(start);
                self.expect_end(true)?;
                Ok(value)
            }
            Event::SequenceStart(0, None) => {
                let value = visitor.visit_seq(Items { de: &mut *self })?;
                self.expect_end(false)?;
                Ok(value)
            }
            event => {
                let (text, style) = plain_scalar(event)?;
                match resolve_untagged(text, style) {
                    // Null, booleans and numbers: exactly what the `Value` would hand over.
                    Some(value) => value.deserialize_any(visitor).map_err(|e| Refused(e.to_string())),
                    None => match text {
                        Cow::Borrowed(s) => visitor.visit_borrowed_str(s),
                        Cow::Owned(s) => visitor.visit_str(s),
                    },
                }
            }
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Refused> {
        if let Some(Event::Scalar(text, style, 0, None)) = self.peek()
            && resolve_untagged(text, *style) == Some(serde_json::Value::Null)
        {
            self.pos += 1;
            return visitor.visit_none();
        }
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _name: &'static str, visitor: V) -> Result<V::Value, Refused> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Refused> {
        Err(Refused("enums are read from the Value".to_owned()))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf unit
        unit_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}

/// The entries of a mapping, refusing duplicate and merge keys.
struct Entries<'a, 's, 'de> {
    de: &'a mut EventDeserializer<'s, 'de>,
    /// Where this mapping's keys start on the deserializer's key stack.
    start: usize,
}

impl<'de> MapAccess<'de> for Entries<'_, '_, 'de> {
    type Error = Refused;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Refused> {
        if matches!(self.de.peek(), Some(Event::MappingEnd)) {
            return Ok(None);
        }
        let (text, style) = plain_scalar(self.de.next()?)?;
        // Keys become strings, as `Value` keys do (`80: x` has the key "80").
        let key: Cow<'de, str> = match resolve_untagged(text, style) {
            None => text.clone(),
            Some(value) => Cow::Owned(key_string(value).map_err(Refused)?),
        };
        let seen = &self.de.keys[self.start..];
        if key == "<<" || seen.len() >= MAX_CHECKED_KEYS || seen.contains(&key) {
            return Err(Refused("merge, duplicate or too many keys".to_owned()));
        }
        self.de.keys.push(key.clone());
        let value = match key {
            Cow::Borrowed(s) => seed.deserialize(de::value::BorrowedStrDeserializer::new(s))?,
            Cow::Owned(s) => seed.deserialize(s.into_deserializer())?,
        };
        Ok(Some(value))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Refused> {
        seed.deserialize(&mut *self.de)
    }
}

struct Items<'a, 's, 'de> {
    de: &'a mut EventDeserializer<'s, 'de>,
}

impl<'de> SeqAccess<'de> for Items<'_, '_, 'de> {
    type Error = Refused;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, Refused> {
        if matches!(self.de.peek(), Some(Event::SequenceEnd)) {
            return Ok(None);
        }
        seed.deserialize(&mut *self.de).map(Some)
    }
}

/// The end (exclusive) of the node starting at `start`: one event for a scalar or alias, up to
/// and including the matching end event for a collection. `None` when the events end first.
pub fn node_end(events: &[(Event<'_>, Span)], start: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (i, (event, _)) in events.iter().enumerate().skip(start) {
        match event {
            Event::MappingStart(..) | Event::SequenceStart(..) => depth += 1,
            Event::MappingEnd | Event::SequenceEnd => depth = depth.checked_sub(1)?,
            _ => {}
        }
        if depth == 0 {
            return Some(i + 1);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::apps::v1::DeploymentSpec;
    use serde_json::Value;

    use super::*;
    use crate::load::block;

    /// The node of `src`'s root, as events.
    fn root(src: &str) -> Vec<(Event<'_>, Span)> {
        let events = block::scan(src).expect("fast path");
        // StreamStart, DocumentStart, …, DocumentEnd, StreamEnd.
        events[2..events.len() - 2].to_vec()
    }

    fn via_value<T: DeserializeOwned>(src: &str) -> Result<T, serde_json::Error> {
        let text = src.to_owned();
        let chunk = crate::load::yaml::split_documents(&text)[0];
        let value: Value = crate::load::yaml::parse_chunk(&text, chunk).expect("parses").expect("a document");
        T::deserialize(&value)
    }

    #[test]
    fn typed_values_equal_the_value_path() {
        let src = "replicas: 3\nselector: {matchLabels: {app: x}}\ntemplate:\n  metadata:\n    labels: {app: x, \"n\": '1'}\n  spec:\n    hostNetwork: true\n    containers:\n    - name: c\n      image: i:1\n      ports:\n      - {name: http, containerPort: 8080, protocol: UDP}\n      resources: {requests: {cpu: 100m, memory: 1Gi}}\n      env:\n      - {name: A, value: \"1\"}\n    nodeSelector:\n      80: yes\n    terminationGracePeriodSeconds: ~\n";
        let typed: DeploymentSpec = from_events(&root(src)).expect("typed");
        assert_eq!(typed, via_value::<DeploymentSpec>(src).expect("via value"));
        let generic: Value = from_events(&root(src)).expect("generic");
        assert_eq!(generic, via_value::<Value>(src).expect("via value"));
    }

    #[test]
    fn what_the_value_path_must_report_is_refused() {
        // Type errors, duplicate keys and merge keys are left to the `Value` path.
        assert!(from_events::<DeploymentSpec>(&root("replicas: many\n")).is_err());
        assert!(from_events::<BTreeMap<String, String>>(&root("a: x\na: y\n")).is_err());
        assert!(from_events::<BTreeMap<String, Value>>(&root("<<: {a: 1}\nb: 2\n")).is_err());
    }

    #[test]
    fn node_ends_are_found() {
        let events = root("a: {b: [1, 2]}\nc: d\n");
        assert_eq!(node_end(&events, 0), Some(events.len()));
        // The key `a`, then its value: `{`, `b`, `[`, `1`, `2`, `]`, `}`.
        assert_eq!(node_end(&events, 1), Some(2));
        assert_eq!(node_end(&events, 2), Some(9));
        assert_eq!(node_end(&events[..5], 2), None);
    }
}
