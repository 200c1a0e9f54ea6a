//! Label selectors, exactly as `metav1.LabelSelectorAsSelector` reads them.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::model::Labels;

/// Whether `selector` selects an object with `labels`.
///
/// An empty selector selects everything. `matchLabels` and every `matchExpressions` entry must
/// all hold. A selector the API server would reject (unknown operator, `In` without values)
/// selects nothing here, so an invalid policy never looks like it allows traffic.
pub fn selector_matches(selector: &LabelSelector, labels: &Labels) -> bool {
    if let Some(required) = &selector.match_labels
        && !labels_match(required, labels)
    {
        return false;
    }
    for req in selector.match_expressions.iter().flatten() {
        let values = req.values.as_deref().unwrap_or_default();
        let value = labels.get(&req.key);
        let ok = match req.operator.as_str() {
            "In" => !values.is_empty() && value.is_some_and(|v| values.contains(v)),
            "NotIn" => !values.is_empty() && value.is_none_or(|v| !values.contains(v)),
            "Exists" => values.is_empty() && value.is_some(),
            "DoesNotExist" => values.is_empty() && value.is_none(),
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

/// Whether `labels` carry every label of `required` (a `matchLabels`, or the plain label map
/// Istio's and Services' selectors are); an empty map matches everything.
pub fn labels_match(required: &Labels, labels: &Labels) -> bool {
    required.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Whether the selector is empty (`{}`, or absent where absent means empty): it selects all.
pub fn selector_is_empty(selector: Option<&LabelSelector>) -> bool {
    selector.is_none_or(|s| {
        s.match_labels.as_ref().is_none_or(|m| m.is_empty())
            && s.match_expressions.as_ref().is_none_or(|e| e.is_empty())
    })
}

/// A selector rendered the way people write it: `app=web, tier in (a,b)`; `{}` when empty.
pub fn describe_selector(selector: &LabelSelector) -> String {
    let mut parts: Vec<String> = Vec::new();
    for (k, v) in selector.match_labels.iter().flatten() {
        parts.push(format!("{k}={v}"));
    }
    for req in selector.match_expressions.iter().flatten() {
        let values = req.values.as_deref().unwrap_or_default().join(",");
        parts.push(match req.operator.as_str() {
            "Exists" => req.key.clone(),
            "DoesNotExist" => format!("!{}", req.key),
            "In" => format!("{} in ({values})", req.key),
            "NotIn" => format!("{} notin ({values})", req.key),
            op => format!("{} {op} ({values})", req.key),
        });
    }
    if parts.is_empty() { "{}".to_owned() } else { parts.join(", ") }
}

/// What is wrong with a selector, for the API server's validation (`None` when valid).
pub fn selector_problem(selector: &LabelSelector) -> Option<String> {
    for (key, value) in selector.match_labels.iter().flatten() {
        if let Some(problem) = label_key_problem(key) {
            return Some(format!("matchLabels key {key:?} {problem}"));
        }
        if let Some(problem) = label_value_problem(value) {
            return Some(format!("matchLabels value {value:?} of {key:?} {problem}"));
        }
    }
    for req in selector.match_expressions.iter().flatten() {
        if let Some(problem) = label_key_problem(&req.key) {
            return Some(format!("matchExpressions key {:?} {problem}", req.key));
        }
        for value in req.values.iter().flatten() {
            if let Some(problem) = label_value_problem(value) {
                return Some(format!("matchExpressions value {value:?} of {:?} {problem}", req.key));
            }
        }
        let n = req.values.as_ref().map_or(0, Vec::len);
        match req.operator.as_str() {
            "In" | "NotIn" if n == 0 => {
                return Some(format!("operator {} on key {:?} needs at least one value", req.operator, req.key));
            }
            "Exists" | "DoesNotExist" if n > 0 => {
                return Some(format!("operator {} on key {:?} must not have values", req.operator, req.key));
            }
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => {
                return Some(format!("unknown operator {other:?}; expected In, NotIn, Exists or DoesNotExist"));
            }
        }
    }
    None
}

/// A label's name part, or a label value: at most 63 characters, alphanumeric at both ends,
/// `-`, `_` and `.` between (apimachinery's `IsQualifiedName` name part and `IsValidLabelValue`).
fn is_label_word(s: &str) -> bool {
    let bytes = s.as_bytes();
    let alnum = |b: &u8| b.is_ascii_alphanumeric();
    s.len() <= 63
        && bytes.first().is_some_and(alnum)
        && bytes.last().is_some_and(alnum)
        && bytes.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A DNS-1123 subdomain (a label key's prefix): at most 253 characters of lowercase
/// alphanumerics, `-` and `.`, alphanumeric at both ends of every dot-separated part.
fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|part| {
            let bytes = part.as_bytes();
            let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
            bytes.first().is_some_and(alnum)
                && bytes.last().is_some_and(alnum)
                && bytes.iter().all(|b| alnum(b) || *b == b'-')
        })
}

/// Why the API server rejects `key` as a label key (a qualified name: an optional DNS
/// subdomain prefix and `/`, then a name of at most 63 characters), or `None`.
pub fn label_key_problem(key: &str) -> Option<&'static str> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix
        && (prefix.is_empty() || !is_dns_subdomain(prefix))
    {
        return Some("has a prefix that is not a lowercase DNS subdomain; the API server rejects it");
    }
    if name.is_empty() {
        return Some("has an empty name; the API server rejects it");
    }
    if !is_label_word(name) {
        return Some(
            "is not a valid label name (at most 63 characters, alphanumeric at both ends, `-`, `_` and `.` between); the API server rejects it",
        );
    }
    None
}

/// Why the API server rejects `value` as a label value (empty, or at most 63 characters,
/// alphanumeric at both ends, `-`, `_` and `.` between), or `None`.
pub fn label_value_problem(value: &str) -> Option<&'static str> {
    (!value.is_empty() && !is_label_word(value)).then_some(
        "is not a valid label value (empty, or at most 63 characters, alphanumeric at both ends, `-`, `_` and `.` between); the API server rejects it",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    #[test]
    fn label_keys_and_values_follow_apimachinery() {
        // Valid, from the Kubernetes documentation on labels.
        for key in ["app", "App", "app.kubernetes.io/name", "k8s-app", "a_b.c-d", "kubernetes.io/metadata.name", "x"] {
            assert_eq!(label_key_problem(key), None, "{key}");
        }
        let long_name = "a".repeat(63);
        assert_eq!(label_key_problem(&long_name), None);
        for key in [
            "NoUppercase=Bad",
            "",
            "/app",
            "example.com/",
            "Example.com/app",
            "a/b/c",
            "-app",
            "app-",
            "has space",
            &"a".repeat(64),
        ] {
            assert!(label_key_problem(key).is_some(), "{key:?} must be rejected");
        }
        for value in ["", "v1", "1.2.3", "a_b-c.d", &"z".repeat(63)] {
            assert_eq!(label_value_problem(value), None, "{value}");
        }
        for value in ["-x", "x-", "has space", "a/b", "ü", &"z".repeat(64)] {
            assert!(label_value_problem(value).is_some(), "{value:?} must be rejected");
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelector {
        LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: key.to_owned(),
                operator: op.to_owned(),
                values: if values.is_empty() { None } else { Some(values.iter().map(|s| s.to_string()).collect()) },
            }]),
            match_labels: None,
        }
    }

    #[test]
    fn empty_selector_selects_everything() {
        assert!(selector_matches(&LabelSelector::default(), &labels(&[])));
        assert!(selector_is_empty(None));
        assert!(selector_is_empty(Some(&LabelSelector::default())));
    }

    #[test]
    fn operators_follow_kubernetes() {
        let l = labels(&[("app", "web")]);
        assert!(selector_matches(&expr("app", "In", &["web", "api"]), &l));
        assert!(!selector_matches(&expr("app", "NotIn", &["web"]), &l));
        assert!(selector_matches(&expr("tier", "NotIn", &["db"]), &l), "NotIn matches a missing key");
        assert!(selector_matches(&expr("app", "Exists", &[]), &l));
        assert!(selector_matches(&expr("tier", "DoesNotExist", &[]), &l));
        assert!(!selector_matches(&expr("app", "In", &[]), &l), "invalid In selects nothing");
        assert!(!selector_matches(&expr("app", "Equals", &["web"]), &l));
    }
}
