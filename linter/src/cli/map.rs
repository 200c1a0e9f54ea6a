//! `portcullis map`: the egress map (which workload resolved which external names) from the
//! sensor's JSON lines or a saved map, as a table, JSON, Graphviz dot, Mermaid or one
//! self-contained HTML page; or, with `--export-intents`, the EgressIntents that would allow
//! exactly what was observed.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use super::{EXIT_ERROR, EXIT_FINDINGS, EXIT_OK, Io};
use crate::egress::map::{MapLimits, MapSnapshot, export_intents, read_map};
use crate::emit::to_yaml;
use crate::report::escape_markup as escape;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MapFormat {
    Table,
    Json,
    Dot,
    Mermaid,
    Html,
    /// The connection starts (`portcullis-sensor --flows`) as a traffic file for `replay`
    Traffic,
}

#[derive(Debug, clap::Args)]
pub struct MapArgs {
    /// The sensor's JSON lines (`portcullis-sensor --output stdout`), a saved map (`--format
    /// json`), - for stdin, or the webhook's https://…/v1/map
    #[arg(long, value_name = "FILE|URL")]
    pub from: String,
    /// With an https:// --from: the bearer token file (a map reader's token)
    #[arg(long, value_name = "FILE", env = "PORTCULLIS_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// With an https:// --from: the CA certificate (PEM) of the webhook
    #[arg(long, value_name = "FILE", env = "PORTCULLIS_CA")]
    pub ca: Option<PathBuf>,
    /// Output format
    #[arg(long, short = 'f', value_enum, default_value = "table")]
    pub format: MapFormat,
    /// Write the EgressIntents that allow exactly what was observed (YAML) instead of the map
    #[arg(long, conflicts_with = "export_policies")]
    pub export_intents: bool,
    /// From a traffic file (docs/traffic.md): write least-privilege NetworkPolicies (a default
    /// deny, DNS, and exactly the observed edges per workload; EgressIntents for names), YAML
    #[arg(long)]
    pub export_policies: bool,
    /// Write to this file instead of stdout
    #[arg(long, short = 'o')]
    pub out: Option<PathBuf>,
}

/// The largest `--from` input read (files and stdin), in bytes.
const MAX_MAP_INPUT: u64 = 256 * 1024 * 1024;

/// Exit 0 when every input line was used, 1 when some were skipped (reported on stderr; the
/// output holds the rest), 2 when the input cannot be read.
pub fn run(args: &MapArgs, io: &mut Io<'_>) -> anyhow::Result<u8> {
    if let Some(out) = &args.out
        && let (Ok(a), Ok(b)) = (std::fs::canonicalize(out), std::fs::canonicalize(&args.from))
        && a == b
    {
        writeln!(io.stderr, "portcullis: error: --out {} is the input: nothing written", out.display())?;
        return Ok(EXIT_ERROR);
    }
    let text = if args.from.starts_with("http://") || args.from.starts_with("https://") {
        match fetch_https(&args.from, args.ca.as_deref(), args.token_file.as_deref(), "--from") {
            Ok(text) => text,
            Err(e) => {
                writeln!(io.stderr, "portcullis: cannot read the map from {}: {e:#}", args.from)?;
                return Ok(EXIT_ERROR);
            }
        }
    } else {
        // Bounded like every input: `--from /dev/zero` is an error, not 4 GB of memory.
        let limits = crate::load::Limits { max_file_bytes: MAX_MAP_INPUT };
        let read = if args.from == "-" {
            crate::load::fs::read_inputs(&[crate::load::fs::Input::Stdin], limits, io.stdin)
        } else {
            crate::load::fs::read_inputs(&[crate::load::fs::Input::Path(args.from.clone().into())], limits, io.stdin)
        };
        match read.map(|mut files| files.pop().map(|f| f.content)) {
            Ok(Some(Ok(text))) => text,
            Ok(Some(Err((_, message)))) => {
                writeln!(io.stderr, "portcullis: cannot read {}: {message}", args.from)?;
                return Ok(EXIT_ERROR);
            }
            Ok(None) => String::new(),
            Err(e) => {
                writeln!(io.stderr, "portcullis: cannot read {}: {e}", args.from)?;
                return Ok(EXIT_ERROR);
            }
        }
    };
    if args.export_policies {
        return export_policies(args, &text, io);
    }
    if let Some(log) = traffic_file(&text) {
        return traffic_map(args, &log, io);
    }
    if args.format == MapFormat::Traffic {
        return traffic_from_records(args, &text, io);
    }
    let (map, problems) = read_map(&text, MapLimits::default());
    for problem in &problems {
        writeln!(io.stderr, "{}:{}: {}", args.from, problem.line, problem.message)?;
    }
    let snapshot = map.snapshot();
    let output = if args.export_intents {
        let export = export_intents(&snapshot);
        for skipped in &export.skipped {
            writeln!(io.stderr, "portcullis: not exported: {skipped}")?;
        }
        let docs: Vec<String> = export.intents.iter().map(to_yaml).collect();
        docs.join("---\n")
    } else {
        match args.format {
            MapFormat::Table => table(&snapshot),
            MapFormat::Json => serde_json::to_string_pretty(&snapshot)? + "\n",
            MapFormat::Dot => dot(&snapshot),
            MapFormat::Mermaid => mermaid(&snapshot),
            MapFormat::Html => html(&snapshot),
            // Handled above: sensor lines go to `traffic_from_records`.
            MapFormat::Traffic => String::new(),
        }
    };
    match &args.out {
        Some(path) => std::fs::write(path, output)?,
        None => io.stdout.write_all(output.as_bytes())?,
    }
    Ok(if problems.is_empty() { EXIT_OK } else { EXIT_FINDINGS })
}

/// The input as a traffic file (one JSON object with `edges`), when it is one; sensor JSON lines
/// and saved maps are not.
fn traffic_file(text: &str) -> Option<crate::replay::TrafficLog> {
    #[derive(serde::Deserialize)]
    struct Probe {
        edges: Option<serde::de::IgnoredAny>,
    }
    let probe: Probe = serde_json::from_str(text).ok()?;
    probe.edges?;
    crate::replay::traffic::parse(text.as_bytes(), crate::replay::Bounds::default()).ok()
}

/// The map of a traffic file: who reached what, on which ports (table, JSON, dot, mermaid).
fn traffic_map(args: &MapArgs, log: &crate::replay::TrafficLog, io: &mut Io<'_>) -> anyhow::Result<u8> {
    if args.export_intents {
        writeln!(
            io.stderr,
            "portcullis: error: --export-intents reads the sensor's DNS observations; from a traffic file use --export-policies"
        )?;
        return Ok(EXIT_ERROR);
    }
    // Per source, per destination: ports, connections, last seen.
    type Row = (std::collections::BTreeSet<String>, u64, jiff::Timestamp);
    let mut by: BTreeMap<String, BTreeMap<String, Row>> = BTreeMap::new();
    for e in &log.edges {
        let row = by
            .entry(e.source.label())
            .or_default()
            .entry(e.destination.label())
            .or_insert_with(|| (std::collections::BTreeSet::new(), 0, e.last_seen));
        row.0.insert(format!("{}/{}", e.port, e.protocol.as_str()));
        row.1 = row.1.saturating_add(e.count);
        row.2 = row.2.max(e.last_seen);
    }
    let ports = |r: &Row| r.0.iter().cloned().collect::<Vec<_>>().join(", ");
    let output = match args.format {
        MapFormat::Json | MapFormat::Traffic => {
            serde_json::to_string_pretty(
                &serde_json::json!({"version": crate::replay::traffic::SCHEMA_VERSION, "edges": log.edges}),
            )? + "\n"
        }
        MapFormat::Table => {
            let mut out = String::new();
            if by.is_empty() {
                out.push_str("no edges\n");
            }
            for (source, destinations) in &by {
                let _ = writeln!(out, "{source}");
                for (destination, row) in destinations {
                    let _ = writeln!(out, "  -> {destination}  {}  seen {} time(s), last {}", ports(row), row.1, row.2);
                }
                out.push('\n');
            }
            out
        }
        MapFormat::Dot => {
            let mut out = String::from("digraph traffic {\n  rankdir=LR;\n  node [fontname=\"Helvetica\"];\n");
            for (source, destinations) in &by {
                for (destination, row) in destinations {
                    let _ = writeln!(
                        out,
                        "  {} -> {} [label={}];",
                        quoted(source),
                        quoted(destination),
                        quoted(&ports(row))
                    );
                }
            }
            out.push_str("}\n");
            out
        }
        MapFormat::Mermaid => {
            let label = |text: &str| {
                text.replace('"', "#quot;").replace('<', "#lt;").replace('>', "#gt;").replace('|', "#124;")
            };
            let mut ids: BTreeMap<&str, usize> = BTreeMap::new();
            for (source, destinations) in &by {
                let next = ids.len();
                ids.entry(source).or_insert(next);
                for destination in destinations.keys() {
                    let next = ids.len();
                    ids.entry(destination).or_insert(next);
                }
            }
            let mut out = String::from("flowchart LR\n");
            for (name, id) in &ids {
                let _ = writeln!(out, "  e{id}[\"{}\"]", label(name));
            }
            for (source, destinations) in &by {
                for (destination, row) in destinations {
                    let id = |name: &str| ids.get(name).copied().unwrap_or_default();
                    let _ = writeln!(out, "  e{} -->|{}| e{}", id(source), label(&ports(row)), id(destination));
                }
            }
            out
        }
        MapFormat::Html => {
            writeln!(
                io.stderr,
                "portcullis: error: --format html maps DNS observations; for a traffic file use table, json, dot or mermaid"
            )?;
            return Ok(EXIT_ERROR);
        }
    };
    match &args.out {
        Some(path) => std::fs::write(path, output)?,
        None => io.stdout.write_all(output.as_bytes())?,
    }
    Ok(EXIT_OK)
}

/// `--format traffic` over sensor lines: their connection starts folded into edges, written as a
/// traffic file (read back before it is written, so what is written is what `replay` reads).
fn traffic_from_records(args: &MapArgs, text: &str, io: &mut Io<'_>) -> anyhow::Result<u8> {
    let (log, problems) = crate::replay::traffic_from_records(text);
    for p in &problems {
        writeln!(io.stderr, "{}:{}: {}", args.from, p.line, p.message)?;
    }
    if log.edges.is_empty() {
        writeln!(io.stderr, "portcullis: error: no connection starts in {} (run the sensor with --flows)", args.from)?;
        return Ok(EXIT_ERROR);
    }
    let output = serde_json::to_string_pretty(
        &serde_json::json!({"version": crate::replay::traffic::SCHEMA_VERSION, "edges": log.edges}),
    )? + "\n";
    if let Err(e) = crate::replay::traffic::parse(output.as_bytes(), crate::replay::Bounds::default()) {
        writeln!(io.stderr, "portcullis: error: the records do not make a valid traffic file: {e}")?;
        return Ok(EXIT_ERROR);
    }
    match &args.out {
        Some(path) => std::fs::write(path, output)?,
        None => io.stdout.write_all(output.as_bytes())?,
    }
    Ok(if problems.is_empty() { EXIT_OK } else { EXIT_FINDINGS })
}

/// `--export-policies`: the traffic file's edges as least-privilege policies. Exit 0 when every
/// namespace was written, 1 when some were skipped (said on stderr), 2 when the input is not a
/// traffic file.
fn export_policies(args: &MapArgs, text: &str, io: &mut Io<'_>) -> anyhow::Result<u8> {
    let log = match crate::replay::traffic::parse(text.as_bytes(), crate::replay::Bounds::default()) {
        Ok(log) => log,
        Err(e) => {
            writeln!(
                io.stderr,
                "portcullis: --export-policies reads a traffic file (docs/traffic.md): {}: {e}; the sensor's DNS observations name no connections (use --export-intents)",
                args.from
            )?;
            return Ok(EXIT_ERROR);
        }
    };
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let config = crate::config::Config::discover(None, &cwd)?;
    let export = crate::replay::export_policies(&log, &config.dns);
    for skipped in &export.skipped {
        writeln!(io.stderr, "portcullis: not exported: {skipped}")?;
    }
    if export.objects.is_empty() {
        writeln!(io.stderr, "portcullis: error: nothing to export from {}", args.from)?;
        return Ok(EXIT_ERROR);
    }
    let docs: Vec<String> = export.objects.iter().map(to_yaml).collect();
    let output = docs.join("---\n");
    match &args.out {
        Some(path) => std::fs::write(path, output)?,
        None => io.stdout.write_all(output.as_bytes())?,
    }
    Ok(if export.skipped.is_empty() { EXIT_OK } else { EXIT_FINDINGS })
}

/// `GET url` over HTTPS (TLS 1.2+, trusting only `ca`), with the bearer token of `token_file`
/// (the webhook's `/v1/map`; `flag` names the option the URL came from, for errors).
pub(super) fn fetch_https(
    url: &str,
    ca: Option<&std::path::Path>,
    token_file: Option<&std::path::Path>,
    flag: &str,
) -> anyhow::Result<String> {
    use anyhow::Context as _;
    use http_body_util::BodyExt as _;

    let uri: hyper::Uri = url.parse().context("not a URL")?;
    if uri.scheme_str() != Some("https") {
        anyhow::bail!("only https:// (it is served with a bearer token)");
    }
    let ca = ca.with_context(|| format!("--ca is required with an https:// {flag}"))?;
    let token_file = token_file.with_context(|| format!("--token-file is required with an https:// {flag}"))?;
    let token = std::fs::read_to_string(token_file).with_context(|| format!("reading {}", token_file.display()))?;
    let tls = crate::https::client_config_trusting(ca, "--ca")?;
    let connector = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_only().enable_http1().build();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build::<_, http_body_util::Empty<hyper::body::Bytes>>(connector);
    let request = hyper::Request::get(uri)
        .header(hyper::header::AUTHORIZATION, format!("Bearer {}", token.trim()))
        .body(http_body_util::Empty::new())?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let response = tokio::time::timeout(std::time::Duration::from_secs(30), client.request(request))
            .await
            .context("timed out")??;
        let status = response.status();
        // The map is bounded server-side; cap what is read anyway.
        let body = http_body_util::Limited::new(response.into_body(), 256 * 1024 * 1024)
            .collect()
            .await
            .map_err(|e| anyhow::anyhow!("reading the response: {e}"))?
            .to_bytes();
        let text = String::from_utf8(body.to_vec()).context("the response is not UTF-8")?;
        if !status.is_success() {
            anyhow::bail!("HTTP {status}: {}", text.trim());
        }
        Ok(text)
    })
}

fn addresses(name: &crate::egress::map::NameEntry) -> String {
    name.addresses.iter().map(|a| a.ip.to_string()).collect::<Vec<_>>().join(", ")
}

/// One block per workload: its names, their addresses, when last seen and how often.
pub fn table(snapshot: &MapSnapshot) -> String {
    let mut out = String::new();
    if snapshot.workloads.is_empty() {
        out.push_str("no observations\n");
    }
    for workload in &snapshot.workloads {
        let labels: Vec<String> = workload.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let who =
            if workload.key.is_attributed() { workload.key.to_string() } else { format!("{} (no pod)", workload.key) };
        let _ = write!(out, "{who}");
        if !labels.is_empty() {
            let _ = write!(out, "  [{}]", labels.join(", "));
        }
        out.push('\n');
        let rows: Vec<[String; 4]> = workload
            .names
            .iter()
            .map(|n| {
                let via =
                    if n.cnames.is_empty() { String::new() } else { format!(" (via {})", n.cnames.join(" → ")) };
                [format!("{}{via}", n.name), addresses(n), n.last_seen.to_string(), n.count.to_string()]
            })
            .collect();
        let header = ["NAME", "ADDRESSES", "LAST SEEN", "ANSWERS"].map(str::to_owned);
        let mut widths = header.clone().map(|h| h.chars().count());
        for row in &rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        for row in std::iter::once(&header).chain(&rows) {
            let cells: Vec<String> = row.iter().zip(widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
            let _ = writeln!(out, "  {}", cells.join("  ").trim_end());
        }
        out.push('\n');
    }
    out
}

/// Every name of the map, alphabetically, with its index (node ids and layout rows).
fn name_index(snapshot: &MapSnapshot) -> BTreeMap<&str, usize> {
    let mut names: BTreeMap<&str, usize> =
        snapshot.workloads.iter().flat_map(|w| w.names.iter().map(|n| (n.name.as_str(), 0))).collect();
    for (index, slot) in names.values_mut().enumerate() {
        *slot = index;
    }
    names
}

fn quoted(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Graphviz: workloads (boxes) → names (ellipses), edges labelled with the answer count.
pub fn dot(snapshot: &MapSnapshot) -> String {
    let mut out = String::from("digraph egress {\n  rankdir=LR;\n  node [fontname=\"Helvetica\"];\n");
    for workload in &snapshot.workloads {
        let _ = writeln!(out, "  {} [shape=box];", quoted(&workload.key.to_string()));
    }
    for name in name_index(snapshot).keys() {
        let _ = writeln!(out, "  {} [shape=ellipse];", quoted(name));
    }
    for workload in &snapshot.workloads {
        for name in &workload.names {
            let _ = writeln!(
                out,
                "  {} -> {} [label={}];",
                quoted(&workload.key.to_string()),
                quoted(&name.name),
                quoted(&name.count.to_string())
            );
        }
    }
    out.push_str("}\n");
    out
}

/// Mermaid flowchart; node ids are generated (`w0`, `n0`), labels quoted.
pub fn mermaid(snapshot: &MapSnapshot) -> String {
    let mut out = String::from("flowchart LR\n");
    let names = name_index(snapshot);
    // Mermaid entity codes: labels may be rendered as HTML.
    let label = |text: &str| text.replace('"', "#quot;").replace('<', "#lt;").replace('>', "#gt;");
    for (index, workload) in snapshot.workloads.iter().enumerate() {
        let _ = writeln!(out, "  w{index}[\"{}\"]", label(&workload.key.to_string()));
    }
    for (name, index) in &names {
        let _ = writeln!(out, "  n{index}([\"{}\"])", label(name));
    }
    for (index, workload) in snapshot.workloads.iter().enumerate() {
        for name in &workload.names {
            let _ = writeln!(out, "  w{index} -->|{}| n{}", name.count, names[name.name.as_str()]);
        }
    }
    out
}

/// One self-contained page: an SVG graph (workloads left, names right) and a table filtered by
/// a search box. No external resources; all text escaped.
pub fn html(snapshot: &MapSnapshot) -> String {
    let order = name_index(snapshot);
    let row = 28;
    let rows = snapshot.workloads.len().max(order.len()).max(1);
    let height = rows * row + 20;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"900\" height=\"{height}\" role=\"img\" aria-label=\"egress graph\">\n"
    );
    let y = |i: usize| i * row + 24;
    for (w, workload) in snapshot.workloads.iter().enumerate() {
        for name in &workload.names {
            let n = order[name.name.as_str()];
            let _ = writeln!(
                svg,
                "<line x1=\"300\" y1=\"{}\" x2=\"560\" y2=\"{}\" stroke=\"#8aa\" stroke-width=\"1.5\"><title>{} → {} ({} answers)</title></line>",
                y(w) - 4,
                y(n) - 4,
                escape(&workload.key.to_string()),
                escape(&name.name),
                name.count
            );
        }
    }
    for (w, workload) in snapshot.workloads.iter().enumerate() {
        let _ = writeln!(
            svg,
            "<text x=\"290\" y=\"{}\" text-anchor=\"end\" class=\"workload\">{}</text>",
            y(w),
            escape(&workload.key.to_string())
        );
    }
    for (name, n) in &order {
        let _ = writeln!(svg, "<text x=\"570\" y=\"{}\" class=\"name\">{}</text>", y(*n), escape(name));
    }
    svg.push_str("</svg>\n");

    let mut body = String::new();
    for workload in &snapshot.workloads {
        for name in &workload.names {
            let _ = writeln!(
                body,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&workload.key.to_string()),
                escape(&name.name),
                escape(&addresses(name)),
                escape(&name.last_seen.to_string()),
                name.count
            );
        }
    }
    format!(
        r#"{start}svg text {{ font-size: 13px; font-family: ui-monospace, monospace; }}
svg .workload {{ fill: #1d4e89; }}
svg .name {{ fill: #2a6b3c; }}
input {{ font-size: 1rem; padding: .4rem; width: 24rem; margin: 1rem 0; }}
</style>
</head>
<body>
<h1>portcullis egress map</h1>
<p>{workloads} workloads, {names} external names. Generated by <code>portcullis map --format html</code>.</p>
{svg}<input id="q" type="search" placeholder="Filter by workload, name or address" aria-label="filter">
<table id="map">
<thead><tr><th>workload</th><th>name</th><th>addresses</th><th>last seen</th><th>answers</th></tr></thead>
<tbody>
{body}</tbody>
</table>
<script>
document.getElementById('q').addEventListener('input', function () {{
  var q = this.value.toLowerCase();
  document.querySelectorAll('#map tbody tr').forEach(function (tr) {{
    tr.hidden = q !== '' && tr.textContent.toLowerCase().indexOf(q) === -1;
  }});
}});
</script>
</body>
</html>
"#,
        start = crate::report::html_start("portcullis egress map"),
        workloads = snapshot.workloads.len(),
        names = order.len(),
    )
}
