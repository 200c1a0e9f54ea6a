//! `diff` and `matrix` output: human, markdown (a pull-request comment), SARIF, and the matrix
//! as a table and CSV. JSON is the types' own serialization.

use std::collections::{BTreeMap, BTreeSet};

use super::{Change, Destination, Diff, Group, MatrixRow, Pair, Port, list};

/// Groups as a reader sees them: groups that changed the same way on the same ports for the same
/// reason in different namespaces (one templated policy applied in each) read as one, with
/// every place the reason is written. JSON and SARIF keep each group and its location.
struct Shown<'d> {
    change: Change,
    ports: &'d [Port],
    why: String,
    places: Vec<String>,
    sources: Vec<String>,
    destinations: Vec<String>,
    pairs: Vec<&'d Pair>,
}

impl Shown<'_> {
    fn is_product(&self) -> bool {
        self.pairs.len() == self.sources.len() * self.destinations.len()
    }

    fn ports_text(&self) -> String {
        self.ports.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    }

    /// The reason, and where it is written when that is more than one place.
    fn why_text(&self) -> String {
        match self.places.as_slice() {
            [] | [_] => self.why.clone(),
            places => format!("{}, in {} places: {}", self.why, places.len(), list(places, 3)),
        }
    }
}

/// A reason without its namespaces and locations: `team-1/api-egress egress[1] (a.yaml:9)` and
/// `team-2/api-egress egress[1] (b.yaml:9)` both read `api-egress egress[1]`.
fn reason_shape(why: &str) -> String {
    // Locations first: ` (FILE:LINE)`, where FILE may hold spaces.
    let mut bare = String::new();
    let mut rest = why;
    while let Some(i) = rest.find(" (") {
        let after = &rest[i + 2..];
        let end = after.match_indices(')').map(|(j, _)| j).find(|&j| {
            after[..j].rsplit_once(':').is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        });
        match end {
            Some(j) => {
                bare.push_str(&rest[..i]);
                rest = &after[j + 1..];
            }
            None => {
                bare.push_str(&rest[..i + 2]);
                rest = after;
            }
        }
    }
    bare.push_str(rest);
    // Then the namespaces of `NAMESPACE/NAME` (a DNS label before the slash).
    bare.split(' ')
        .map(|word| match word.split_once('/') {
            Some((ns, name))
                if !ns.is_empty()
                    && !name.is_empty()
                    && ns.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    // Object names are lowercase; `53/UDP` is a port.
                    && !name.bytes().any(|b| b.is_ascii_uppercase()) =>
            {
                name
            }
            _ => word,
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Groups read as one: by ports and reason shape, with the index of the first and the groups.
type Merged<'d> = BTreeMap<(&'d [Port], String), (usize, Vec<&'d Group>)>;

fn shown(groups: &[Group], change: Change) -> Vec<Shown<'_>> {
    let mut merged: Merged<'_> = BTreeMap::new();
    for (i, g) in groups.iter().enumerate().filter(|(_, g)| g.change == change) {
        merged.entry((g.ports.as_slice(), reason_shape(&g.why))).or_insert((i, Vec::new())).1.push(g);
    }
    let mut merged: Vec<_> = merged.into_iter().collect();
    // In the order of the first group each came from.
    merged.sort_by_key(|(_, (first, _))| *first);
    merged
        .into_iter()
        .map(|((ports, shape), (_, gs))| {
            let one = gs.len() == 1;
            let sources: BTreeSet<&String> = gs.iter().flat_map(|g| &g.sources).collect();
            let destinations: BTreeSet<&Destination> = gs.iter().flat_map(|g| &g.destinations).collect();
            Shown {
                change,
                ports,
                why: if one { gs[0].why.clone() } else { shape },
                places: if one {
                    Vec::new()
                } else {
                    gs.iter().filter_map(|g| g.at.as_ref()).map(|a| format!("{}:{}", a.file, a.line)).collect()
                },
                sources: sources.into_iter().cloned().collect(),
                destinations: destinations.into_iter().map(Destination::label).collect(),
                pairs: gs.iter().flat_map(|g| &g.pairs).collect(),
            }
        })
        .collect()
}

/// Human output.
pub fn render_human(d: &Diff) -> String {
    let mut out = String::new();
    let section = |out: &mut String, title: &str, sign: char, groups: Vec<Shown<'_>>| {
        if groups.is_empty() {
            return;
        }
        out.push_str(&format!("{title}:\n"));
        for g in groups {
            if g.is_product() {
                out.push_str(&format!(
                    "  {sign} {} from {} to {}\n",
                    g.ports_text(),
                    list(&g.sources, 5),
                    list(&g.destinations, 5)
                ));
            } else {
                out.push_str(&format!("  {sign} {} on {} connections:\n", g.ports_text(), g.pairs.len()));
                for (s, dst) in g.pairs.iter().take(5) {
                    out.push_str(&format!("      {s} -> {}\n", dst.label()));
                }
                if g.pairs.len() > 5 {
                    out.push_str(&format!("      and {} more\n", g.pairs.len() - 5));
                }
            }
            out.push_str(&format!("      why: {}\n", g.why_text()));
        }
    };
    let (opened, closed) = (shown(&d.groups, Change::Opened), shown(&d.groups, Change::Closed));
    let counts = (opened.len(), closed.len());
    section(&mut out, "Opened", '+', opened);
    section(&mut out, "Closed", '-', closed);
    if !d.added_workloads.is_empty() {
        out.push_str(&format!("Workloads added (not compared): {}\n", list(&d.added_workloads, 10)));
    }
    if !d.removed_workloads.is_empty() {
        out.push_str(&format!("Workloads removed (not compared): {}\n", list(&d.removed_workloads, 10)));
    }
    let (opened, closed) = counts;
    if opened + closed == 0 {
        out.push_str("No connection opened or closed.\n");
    } else {
        out.push_str(&format!("{opened} group(s) opened, {closed} closed.\n"));
    }
    out
}

/// The markdown stays under GitHub's 65,536 characters per comment: rows and connections past
/// these sizes are counted, not listed (the JSON output has them all).
const MARKDOWN_TABLE_BUDGET: usize = 40_000;
const MARKDOWN_BUDGET: usize = 60_000;

/// Text for a markdown table cell or code span written by anyone (names, file paths): no
/// markup, no column break, no code-span end.
pub(crate) fn markdown_text(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('|', "\\|").replace('`', "'")
}

/// Markdown output: fits a pull-request comment and a job summary.
pub fn render_markdown(d: &Diff) -> String {
    let mut out = String::from("### portcullis diff\n\n");
    let groups: Vec<Shown<'_>> =
        shown(&d.groups, Change::Opened).into_iter().chain(shown(&d.groups, Change::Closed)).collect();
    let opened = groups.iter().filter(|g| g.change == Change::Opened).count();
    let closed = groups.len() - opened;
    if groups.is_empty() {
        out.push_str("No connection opened or closed.\n");
        return out;
    }
    out.push_str(&format!("**{opened}** group(s) of connections opened, **{closed}** closed.\n\n"));
    out.push_str("| | ports | from | to | why |\n|---|---|---|---|---|\n");
    let cell = markdown_text;
    for (i, g) in groups.iter().enumerate() {
        if out.len() > MARKDOWN_TABLE_BUDGET {
            out.push_str(&format!(
                "| | | | | … and {} more groups: `portcullis diff --format json` lists them all |\n",
                groups.len() - i
            ));
            break;
        }
        let sign = if g.change == Change::Opened { "➕ opened" } else { "➖ closed" };
        out.push_str(&format!(
            "| {sign} | {} | {} | {} | {} |\n",
            cell(&g.ports_text()),
            cell(&list(&g.sources, 5)),
            cell(&list(&g.destinations, 5)),
            cell(&g.why_text())
        ));
    }
    let long: Vec<&Shown<'_>> = groups.iter().filter(|g| g.pairs.len() > 5).collect();
    if !long.is_empty() {
        out.push_str("\n<details><summary>Every connection of the larger groups</summary>\n\n");
        'groups: for g in long {
            out.push_str(&format!(
                "- {} {}:\n",
                if g.change == Change::Opened { "opened" } else { "closed" },
                g.ports_text()
            ));
            for (i, (s, dst)) in g.pairs.iter().enumerate() {
                if out.len() > MARKDOWN_BUDGET {
                    out.push_str(&format!("  - … and {} more (the JSON output lists them all)\n", g.pairs.len() - i));
                    break 'groups;
                }
                out.push_str(&format!("  - `{}` → `{}`\n", cell(s), cell(&dst.label())));
            }
        }
        out.push_str("\n</details>\n");
    }
    out
}

/// SARIF 2.1.0: one result per opened connection (source to destination, its ports), located at
/// the rule that opens it on HEAD.
pub fn render_sarif(d: &Diff) -> String {
    let mut results = Vec::new();
    for g in d.opened() {
        for (source, destination) in &g.pairs {
            results.push(crate::report::sarif::single_rule_result(
                "opened-connection",
                "warning",
                format!("{source} may now reach {} on {}: {}", destination.label(), g.ports_text(), g.why),
                g.at.as_ref().map(|at| (at.file.as_str(), at.line)),
            ));
        }
    }
    crate::report::sarif::single_rule_log(
        "portcullis diff",
        "opened-connection",
        "A connection the change opens",
        "The change to the manifests allows a connection that was denied before: the source workload may now reach the destination on these ports.",
        results,
    )
}

/// The matrix as a table: one line per pair with at least one allowed port.
pub fn render_matrix_table(rows: &[MatrixRow]) -> String {
    let mut out = String::new();
    for r in rows.iter().filter(|r| !r.allowed.is_empty()) {
        let ports: Vec<String> = r.allowed.iter().map(ToString::to_string).collect();
        let all = if r.denied.is_empty() { " (every probed port)" } else { "" };
        out.push_str(&format!("{} -> {}: {}{all}\n", r.source, r.destination.label(), ports.join(", ")));
    }
    let open = rows.iter().filter(|r| !r.allowed.is_empty()).count();
    out.push_str(&format!("{open} of {} pairs allow some probed port.\n", rows.len()));
    out
}

/// The matrix as CSV: `source,destination,port,protocol,verdict`, one line per probed port.
pub fn render_matrix_csv(rows: &[MatrixRow]) -> String {
    // Quoted when it holds a separator; a cell a spreadsheet would run as a formula (OWASP's
    // CSV injection: `=`, `+`, `-`, `@`, tab, carriage return first) is made text with `'`.
    let field = |s: &str| {
        let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{s}") } else { s.to_owned() };
        if s.contains([',', '"', '\n', '\r', '\'']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s }
    };
    let mut out = String::from("source,destination,port,protocol,verdict\n");
    for r in rows {
        for (ports, verdict) in [(&r.allowed, "allowed"), (&r.denied, "denied")] {
            for p in ports {
                out.push_str(&format!(
                    "{},{},{},{},{verdict}\n",
                    field(&r.source),
                    field(&r.destination.label()),
                    p.port,
                    p.protocol.as_str()
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_read_the_same_across_namespaces_and_files() {
        let a = "egress of the source: allowed by team-1/api-egress egress[1] (a/ns 1.yaml:191)";
        let b = "egress of the source: allowed by team-2/api-egress egress[1] (b.yaml:9)";
        assert_eq!(reason_shape(a), "egress of the source: allowed by api-egress egress[1]");
        assert_eq!(reason_shape(a), reason_shape(b));
        // Different rules, policies or layers stay apart.
        assert_ne!(reason_shape(a), reason_shape(&b.replace("egress[1]", "egress[0]")));
        assert_ne!(reason_shape(a), reason_shape(&b.replace("api-egress", "db-egress")));
        // Addresses and ports are not namespaces.
        assert_eq!(reason_shape("to 10.0.0.0/8 on 53/UDP"), "to 10.0.0.0/8 on 53/UDP");
    }

    #[test]
    fn markdown_text_cannot_break_out() {
        let hostile = "a|b`c<img src=x>&";
        assert_eq!(markdown_text(hostile), "a\\|b'c&lt;img src=x&gt;&amp;");
    }
}
