//! Findings: what a rule reports, where, and how to fix it.

use serde_json::Value;

use crate::load::{DocumentRef, Locator, Position, SourceId};
use crate::model::{ObjectId, ObjectRef};

/// How serious a finding is. Ordered: `Info < Warning < Error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a finding points, before positions are looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Anchor {
    /// A node of a document, by JSON pointer relative to the document.
    Node { doc: DocumentRef, pointer: String },
    /// A position already known (syntax errors, whole-file problems).
    Position { source: SourceId, position: Position },
}

impl Anchor {
    pub fn source(&self) -> SourceId {
        match self {
            Anchor::Node { doc, .. } => doc.source,
            Anchor::Position { source, .. } => *source,
        }
    }

    /// Looks up the position (the locator remembers document nodes already found).
    pub fn resolve(&self, locator: &mut Locator<'_>) -> Position {
        match self {
            Anchor::Node { doc, pointer } => locator.locate(doc, pointer),
            Anchor::Position { position, .. } => *position,
        }
    }
}

/// A secondary location with its own message ("the policy that isolates these pods").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Related {
    pub anchor: Anchor,
    pub message: String,
}

/// Whether a fix can be applied without review.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Applicability {
    /// Keeps the author's intent and only adds what is missing (e.g. the DNS allowance).
    Safe,
    /// Changes behaviour beyond the finding (e.g. default-deny for a whole namespace).
    Unsafe,
    /// Shown for guidance only.
    DisplayOnly,
}

/// One change a fix makes.
#[derive(Debug, Clone, PartialEq)]
pub enum Edit {
    /// A new object to create.
    Create(Value),
    /// An RFC 6902 patch to an existing object.
    Patch { object: ObjectId, patch: json_patch::Patch },
}

/// A fix for a finding.
#[derive(Debug, Clone, PartialEq)]
pub struct Fix {
    pub description: String,
    pub applicability: Applicability,
    pub edits: Vec<Edit>,
}

/// One finding of one rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub code: &'static str,
    pub rule: &'static str,
    pub severity: Severity,
    pub message: String,
    pub anchor: Anchor,
    pub object: Option<ObjectRef>,
    /// The object in the inventory, when the finding is about one.
    pub object_id: Option<ObjectId>,
    pub related: Vec<Related>,
    pub fix: Option<Fix>,
}

/// A finding with its locations looked up, ready for reports.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    pub code: &'static str,
    pub rule: &'static str,
    pub severity: Severity,
    pub message: String,
    /// The file holding the finding, and its name as shown to users.
    pub source: SourceId,
    pub file: String,
    pub position: Position,
    pub object: Option<ObjectRef>,
    pub related: Vec<RelatedLocation>,
    pub fixable: bool,
}

/// A resolved secondary location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelatedLocation {
    pub file: String,
    pub position: Position,
    pub message: String,
}

impl Finding {
    /// Looks up positions and file names (the locator remembers document nodes already found,
    /// so one serves all findings of a run).
    pub fn resolve(&self, locator: &mut Locator<'_>) -> Diagnostic {
        let sources = locator.sources();
        let name = |id: SourceId| sources.get(id).map(|f| f.name.clone()).unwrap_or_default();
        Diagnostic {
            code: self.code,
            rule: self.rule,
            severity: self.severity,
            message: self.message.clone(),
            source: self.anchor.source(),
            file: name(self.anchor.source()),
            position: self.anchor.resolve(locator),
            object: self.object.clone(),
            related: self
                .related
                .iter()
                .map(|r| RelatedLocation {
                    file: name(r.anchor.source()),
                    position: r.anchor.resolve(locator),
                    message: r.message.clone(),
                })
                .collect(),
            fixable: self.fix.is_some(),
        }
    }
}
