//! `portcullis matrix PATH...`: which workload may reach which workload and outside destination,
//! on which ports.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use super::{EXIT_OK, Io, LoadArgs, load_config, load_project};
use crate::diff::{self, Destination, MatrixRow, Port};
use crate::project::Project;
use crate::report::escape_markup as escape;

#[derive(Debug, clap::Args)]
pub struct MatrixArgs {
    /// Manifests (files or directories)
    #[arg(required = true)]
    pub paths: Vec<String>,
    /// Output format
    #[arg(long, short = 'f', default_value = "table", value_parser = ["table", "json", "csv", "html"])]
    pub format: String,
    #[command(flatten)]
    pub load: LoadArgs,
}

pub fn run(args: &MatrixArgs, io: &mut Io<'_>) -> anyhow::Result<u8> {
    let config = load_config(&args.load)?;
    let project = Project::new(&args.load.namespace);
    let project = load_project(project, &args.paths, &[], &args.load, &config, io.stdin, io.stdin_tty)?;
    if project.inventory.workloads.is_empty() {
        anyhow::bail!("{}: no workloads found", args.paths.join(" "));
    }
    let rows = diff::matrix(&project);
    match args.format.as_str() {
        "json" => writeln!(
            io.stdout,
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"version": diff::SCHEMA_VERSION, "rows": rows}))?
        )?,
        "csv" => write!(io.stdout, "{}", diff::render_matrix_csv(&rows))?,
        "html" => write!(io.stdout, "{}", html(&rows))?,
        _ => write!(io.stdout, "{}", diff::render_matrix_table(&rows))?,
    }
    Ok(EXIT_OK)
}

/// The grid is drawn up to this many cells; larger matrices keep the table and its filters.
const GRID_CELLS: usize = 40_000;

fn ports_text(ports: &[Port]) -> String {
    ports.iter().map(ToString::to_string).collect::<Vec<_>>().join(" ")
}

/// How much of a row is allowed: `all`, `some` or `none` of the probed ports.
fn reach(row: &MatrixRow) -> &'static str {
    match (row.allowed.is_empty(), row.denied.is_empty()) {
        (false, true) => "all",
        (false, false) => "some",
        _ => "none",
    }
}

fn kind(destination: &Destination) -> &'static str {
    match destination {
        Destination::Workload { .. } => "workload",
        Destination::Address { .. } => "address",
        Destination::Name { .. } => "name",
    }
}

/// One self-contained page (like `portcullis map --format html`): a grid of sources by
/// destinations coloured by how much is allowed, and the full table, both narrowed by filters
/// (text, source namespace, destination kind, verdict, port). No external resources; every
/// name escaped; one script, the page's own.
pub fn html(rows: &[MatrixRow]) -> String {
    let sources: BTreeSet<&str> = rows.iter().map(|r| r.source.as_str()).collect();
    let destinations: BTreeSet<&Destination> = rows.iter().map(|r| &r.destination).collect();
    let namespaces: BTreeSet<&str> = sources.iter().filter_map(|s| s.split('/').next()).collect();
    let namespace = |s: &str| s.split('/').next().unwrap_or_default().to_owned();
    let mut options = String::new();
    for ns in &namespaces {
        let _ = write!(options, "<option>{}</option>", escape(ns));
    }
    // The grid: rows are sources, columns destinations.
    let mut grid = String::new();
    if sources.len() * destinations.len() <= GRID_CELLS {
        let by_pair: BTreeMap<(&str, &Destination), &MatrixRow> =
            rows.iter().map(|r| ((r.source.as_str(), &r.destination), r)).collect();
        grid.push_str("<table id=\"grid\"><thead><tr><th></th>");
        for (i, d) in destinations.iter().enumerate() {
            let _ = write!(grid, "<th title=\"{}\">{}</th>", escape(&d.label()), i + 1);
        }
        grid.push_str("</tr></thead><tbody>\n");
        for s in &sources {
            let _ = write!(grid, "<tr data-ns=\"{}\"><th>{}</th>", escape(&namespace(s)), escape(s));
            for d in &destinations {
                match by_pair.get(&(*s, *d)) {
                    Some(r) => {
                        let _ = write!(
                            grid,
                            "<td class=\"{}\" title=\"{} → {}: allowed {}\"></td>",
                            reach(r),
                            escape(s),
                            escape(&d.label()),
                            escape(&ports_text(&r.allowed)).replace(' ', ", ")
                        );
                    }
                    None => grid.push_str("<td></td>"),
                }
            }
            grid.push_str("</tr>\n");
        }
        grid.push_str("</tbody></table>\n<ol id=\"columns\">");
        for d in &destinations {
            let _ = write!(grid, "<li>{}</li>", escape(&d.label()));
        }
        grid.push_str("</ol>\n");
    } else {
        let _ = writeln!(
            grid,
            "<p>{} sources by {} destinations: too many cells for a grid; the table below has every row.</p>",
            sources.len(),
            destinations.len()
        );
    }
    let mut body = String::new();
    for r in rows {
        let _ = writeln!(
            body,
            "<tr data-ns=\"{}\" data-kind=\"{}\" data-reach=\"{}\" data-allowed=\" {} \"><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&namespace(&r.source)),
            kind(&r.destination),
            reach(r),
            escape(&ports_text(&r.allowed)),
            escape(&r.source),
            escape(&r.destination.label()),
            escape(&ports_text(&r.allowed)),
            escape(&ports_text(&r.denied)),
        );
    }
    format!(
        r#"{start}form {{ display: flex; flex-wrap: wrap; gap: .6rem; margin: 1rem 0; align-items: center; }}
input, select {{ font-size: .95rem; padding: .3rem; }}
#grid td {{ width: 14px; height: 14px; padding: 0; border: 1px solid #fff; }}
#grid th {{ padding: .1rem .4rem; font-weight: normal; }}
#grid td.all {{ background: #3a8f50; }}
#grid td.some {{ background: #e0a929; }}
#grid td.none {{ background: #c8d0d4; }}
#columns {{ font-family: ui-monospace, monospace; font-size: 12px; columns: 3; }}
.legend span {{ display: inline-block; width: 12px; height: 12px; margin: 0 .3rem 0 1rem; vertical-align: middle; }}
</style>
</head>
<body>
<h1>portcullis connectivity matrix</h1>
<p>{source_count} workloads, {destination_count} destinations, {row_count} rows, judged on the probed ports as <code>portcullis trace</code> judges them. Generated by <code>portcullis matrix --format html</code>.</p>
<form id="filters" onsubmit="return false">
<input id="q" type="search" placeholder="Filter by workload, address or name" aria-label="text filter">
<select id="ns" aria-label="source namespace"><option value="">every source namespace</option>{options}</select>
<select id="kind" aria-label="destination kind"><option value="">every destination</option><option value="workload">workloads</option><option value="address">addresses</option><option value="name">names</option></select>
<select id="reach" aria-label="verdict"><option value="">any verdict</option><option value="all">every port allowed</option><option value="some">some ports allowed</option><option value="none">nothing allowed</option><option value="any">anything allowed</option></select>
<input id="port" type="search" placeholder="allowed port, e.g. 443/TCP" aria-label="allowed port">
</form>
<p class="legend"><span style="background:#3a8f50"></span>every probed port allowed<span style="background:#e0a929"></span>some<span style="background:#c8d0d4"></span>none</p>
{grid}<table id="rows">
<thead><tr><th>source</th><th>destination</th><th>allowed</th><th>denied</th></tr></thead>
<tbody>
{body}</tbody>
</table>
<script>
(function () {{
  var f = {{}};
  ['q', 'ns', 'kind', 'reach', 'port'].forEach(function (id) {{ f[id] = document.getElementById(id); }});
  function apply() {{
    var q = f.q.value.toLowerCase(), ns = f.ns.value, kind = f.kind.value, reach = f.reach.value;
    var port = f.port.value.trim().toUpperCase();
    document.querySelectorAll('#rows tbody tr').forEach(function (tr) {{
      var d = tr.dataset;
      var ok = (q === '' || tr.textContent.toLowerCase().indexOf(q) !== -1)
        && (ns === '' || d.ns === ns)
        && (kind === '' || d.kind === kind)
        && (reach === '' || d.reach === reach || (reach === 'any' && d.reach !== 'none'))
        && (port === '' || d.allowed.indexOf(' ' + port + (port.indexOf('/') === -1 ? '/' : ' ')) !== -1);
      tr.hidden = !ok;
    }});
    document.querySelectorAll('#grid tbody tr').forEach(function (tr) {{
      tr.hidden = (ns !== '' && tr.dataset.ns !== ns) || (q !== '' && tr.firstChild.textContent.toLowerCase().indexOf(q) === -1);
    }});
  }}
  Object.keys(f).forEach(function (id) {{
    f[id].addEventListener('input', function () {{
      // The filters live in the address too, so a filtered view can be linked to.
      var p = new URLSearchParams();
      Object.keys(f).forEach(function (k) {{ if (f[k].value) {{ p.set(k, f[k].value); }} }});
      history.replaceState(null, '', '#' + p.toString());
      apply();
    }});
  }});
  var start = new URLSearchParams(location.hash.slice(1));
  Object.keys(f).forEach(function (id) {{ if (start.has(id)) {{ f[id].value = start.get(id); }} }});
  apply();
}})();
</script>
</body>
</html>
"#,
        start = crate::report::html_start("portcullis connectivity matrix"),
        source_count = sources.len(),
        destination_count = destinations.len(),
        row_count = rows.len(),
    )
}
