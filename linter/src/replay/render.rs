//! Replay output: human, JSON, markdown (a pull-request comment) and SARIF.

use super::{DeniedGroup, Fix, Replay};
use crate::diff::render::markdown_text;

/// Edges listed per group in human and markdown output; JSON lists them all.
const EDGES_SHOWN: usize = 20;
/// Markdown stays under GitHub's 65,536 characters per comment.
const MARKDOWN_BUDGET: usize = 60_000;

fn summary(r: &Replay) -> String {
    if r.denied_edges == 0 {
        return format!("Replayed {} edge(s): none would be denied.", r.edges);
    }
    format!(
        "Replayed {} edge(s): {} would be denied ({} connection(s) seen), in {} group(s).",
        r.edges,
        r.denied_edges,
        r.denied_connections,
        r.groups.len()
    )
}

fn undecided_note(r: &Replay) -> Option<String> {
    (r.undecided_allowed > 0).then(|| {
        format!(
            "{} allowed edge(s) depend on a rule the input cannot settle (see `portcullis trace` for each).",
            r.undecided_allowed
        )
    })
}

/// The fix's lines: the policy patch as one JSON operation per line, and each object to apply.
fn fix_lines(g: &DeniedGroup) -> Vec<String> {
    let mut out = Vec::new();
    match &g.fix {
        Fix::None { why } => out.push(format!("no NetworkPolicy change allows these: {why}")),
        Fix::Change { policy, objects } => {
            if let Some(p) = policy {
                out.push(format!("smallest change: patch {} ({}:{})", p.policy, p.at.file, p.at.line));
                for op in &p.patch.0 {
                    out.push(format!("  {}", serde_json::to_string(op).unwrap_or_default()));
                }
            }
            for (i, o) in objects.iter().enumerate() {
                let (namespace, name) = o.namespace_and_name();
                let first = if policy.is_none() && i == 0 { "smallest change: " } else { "and " };
                let why = match o {
                    super::FixObject::Intent(_) => " (its addresses are kept fresh from DNS)",
                    super::FixObject::Policy(_) => " (only namespace-wide policies isolate the workload)",
                };
                out.push(format!("{first}apply {} {namespace}/{name}{why}:", o.kind()));
                out.push(format!("  {}", o.to_json()));
            }
        }
    }
    out
}

/// Human output.
pub fn render_human(r: &Replay) -> String {
    let mut out = summary(r) + "\n";
    for g in &r.groups {
        out.push_str(&format!(
            "\nDENIED {}\n  {} connection(s) over {} edge(s), last seen {}\n",
            g.why,
            g.connections,
            g.edges.len(),
            g.last_seen
        ));
        for e in g.edges.iter().take(EDGES_SHOWN) {
            out.push_str(&format!(
                "    {} -> {} on {}: seen {} time(s), {} to {}\n",
                e.source, e.destination, e.port, e.count, e.first_seen, e.last_seen
            ));
            if let Some(u) = &e.undecided {
                out.push_str(&format!("      (may be allowed after all: {u})\n"));
            }
        }
        if g.edges.len() > EDGES_SHOWN {
            out.push_str(&format!("    … and {} more (--format json lists them all)\n", g.edges.len() - EDGES_SHOWN));
        }
        for line in fix_lines(g) {
            out.push_str(&format!("  {line}\n"));
        }
    }
    if let Some(note) = undecided_note(r) {
        out.push_str(&format!("\n{note}\n"));
    }
    out
}

/// JSON output (schema [`super::SCHEMA_VERSION`]).
pub fn render_json(r: &Replay) -> String {
    let mut out = serde_json::to_string_pretty(r).unwrap_or_default();
    out.push('\n');
    out
}

/// Markdown output.
pub fn render_markdown(r: &Replay) -> String {
    let cell = markdown_text;
    let mut out = format!("### portcullis replay\n\n{}\n", summary(r));
    'groups: for g in &r.groups {
        out.push_str(&format!(
            "\n#### {} connection(s) denied: {}\n\n| from | to | port | seen | last seen |\n|---|---|---|---:|---|\n",
            g.connections,
            cell(&g.why)
        ));
        for (i, e) in g.edges.iter().enumerate() {
            if i == EDGES_SHOWN || out.len() > MARKDOWN_BUDGET {
                out.push_str(&format!("| … and {} more | | | | |\n", g.edges.len() - i));
                break;
            }
            out.push_str(&format!(
                "| `{}` | `{}` | {} | {} | {} |\n",
                cell(&e.source),
                cell(&e.destination),
                e.port,
                e.count,
                e.last_seen
            ));
        }
        if out.len() > MARKDOWN_BUDGET {
            out.push_str("\n… the rest is left out to fit a comment: `portcullis replay --format json` has it all.\n");
            break 'groups;
        }
        // Each header line a paragraph, the JSON under it a block (JSON text cannot end a
        // fence: it has no backtick run outside strings, and serde escapes none inside).
        let mut open = false;
        for line in fix_lines(g) {
            match line.strip_prefix("  ") {
                Some(json) => {
                    if !open {
                        out.push_str("\n```json\n");
                        open = true;
                    }
                    out.push_str(&json.replace("```", "`\u{200b}``"));
                    out.push('\n');
                }
                None => {
                    if open {
                        out.push_str("```\n");
                        open = false;
                    }
                    out.push_str(&format!("\n{}\n", cell(&line)));
                }
            }
        }
        if open {
            out.push_str("```\n");
        }
    }
    if let Some(note) = undecided_note(r) {
        out.push_str(&format!("\n{note}\n"));
    }
    out
}

/// SARIF 2.1.0: one result per denied edge, at what denies it.
pub fn render_sarif(r: &Replay) -> String {
    let mut results = Vec::new();
    for g in &r.groups {
        for e in &g.edges {
            results.push(crate::report::sarif::single_rule_result(
                "denied-traffic",
                "error",
                format!(
                    "{} -> {} on {}, seen {} time(s), last at {}, would be denied: {}",
                    e.source, e.destination, e.port, e.count, e.last_seen, g.why
                ),
                g.at.as_ref().map(|at| (at.file.as_str(), at.line)),
            ));
        }
    }
    crate::report::sarif::single_rule_log(
        "portcullis replay",
        "denied-traffic",
        "Observed traffic the policies would deny",
        "A connection recorded in the traffic file would be denied by the policies under test: the change would break it.",
        results,
    )
}
