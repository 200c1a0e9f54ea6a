//! `portcullis replay POLICY_PATHS... --traffic FILE|URL [--since 7d]`: which observed
//! connections the policies would deny, and the smallest change that allows each.

use std::io::Write as _;
use std::path::PathBuf;

use jiff::Timestamp;

use super::{EXIT_ERROR, EXIT_FINDINGS, EXIT_OK, Io, LoadArgs, load_config, load_project};
use crate::project::Project;
use crate::replay::{self, Bounds, TrafficLog};

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// Manifests holding the policies under test (and, optionally, the workloads)
    #[arg(required = true)]
    pub paths: Vec<String>,
    #[command(flatten)]
    pub traffic: TrafficArgs,
    /// Output format
    #[arg(long, short = 'f', default_value = "human", value_parser = ["human", "json", "markdown", "sarif"])]
    pub format: String,
    /// Exit 1 when observed traffic would be denied (denied-traffic), or never
    #[arg(long, default_value = "never", value_parser = ["denied-traffic", "never"])]
    pub fail_on: String,
    #[command(flatten)]
    pub load: LoadArgs,
}

/// Where observed traffic comes from (`replay`, and `lint --traffic`).
#[derive(Debug, Clone, clap::Args)]
pub struct TrafficArgs {
    /// The observed traffic: a traffic file (docs/traffic.md), - for stdin, or an https:// URL
    #[arg(long, value_name = "FILE|URL")]
    pub traffic: Option<String>,
    /// Only traffic seen in this window: a duration back from now (7d, 36h, 90m, 2w) or an
    /// RFC 3339 time (2026-11-20T00:00:00Z)
    #[arg(long, value_name = "DURATION|TIME", requires = "traffic")]
    pub since: Option<String>,
    /// With an https:// --traffic: the bearer token file
    #[arg(long, value_name = "FILE", env = "PORTCULLIS_TOKEN_FILE", requires = "traffic")]
    pub token_file: Option<PathBuf>,
    /// With an https:// --traffic: the CA certificate (PEM) of the server
    #[arg(long, value_name = "FILE", env = "PORTCULLIS_CA", requires = "traffic")]
    pub ca: Option<PathBuf>,
}

/// `--since`: a duration back from `now`, or a time.
pub fn parse_since(raw: &str, now: Timestamp) -> Result<Timestamp, String> {
    if let Ok(t) = raw.parse::<Timestamp>() {
        return Ok(t);
    }
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (number, unit) = raw.split_at(split);
    let bad = || format!("--since {raw:?}: expected a duration (7d, 36h, 90m, 2w) or an RFC 3339 time");
    let n: i64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return Err(bad()),
    };
    let back = n.checked_mul(seconds).map(jiff::SignedDuration::from_secs).ok_or_else(bad)?;
    now.checked_sub(back).map_err(|_| format!("--since {raw:?} reaches before the earliest time"))
}

/// Reads the traffic file `--traffic` names, cut to `--since`.
pub fn read_traffic(args: &TrafficArgs, io: &mut Io<'_>) -> anyhow::Result<Option<TrafficLog>> {
    let Some(bytes) = traffic_bytes(args, io)? else { return Ok(None) };
    parse_traffic(args, &bytes).map(Some)
}

/// The bytes of the traffic `--traffic` names (a file, stdin or a URL), bounded.
fn traffic_bytes(args: &TrafficArgs, io: &mut Io<'_>) -> anyhow::Result<Option<Vec<u8>>> {
    let Some(source) = &args.traffic else { return Ok(None) };
    let bounds = Bounds::default();
    let bytes = if source.starts_with("https://") || source.starts_with("http://") {
        super::map::fetch_https(source, args.ca.as_deref(), args.token_file.as_deref(), "--traffic")
            .map_err(|e| anyhow::anyhow!("cannot read the traffic from {source}: {e:#}"))?
            .into_bytes()
    } else {
        let limits = crate::load::Limits { max_file_bytes: bounds.max_bytes as u64 };
        let input =
            if source == "-" { crate::load::fs::Input::Stdin } else { crate::load::fs::Input::Path(source.into()) };
        match crate::load::fs::read_inputs(&[input], limits, io.stdin)?.pop().map(|f| f.content) {
            Some(Ok(text)) => text.into_bytes(),
            Some(Err((_, message))) => anyhow::bail!("cannot read {source}: {message}"),
            None => anyhow::bail!("cannot read {source}: no file"),
        }
    };
    Ok(Some(bytes))
}

/// Parses what [`traffic_bytes`] read, cut to `--since`.
fn parse_traffic(args: &TrafficArgs, bytes: &[u8]) -> anyhow::Result<TrafficLog> {
    let source = args.traffic.as_deref().unwrap_or("-");
    let log = replay::traffic::parse(bytes, Bounds::default()).map_err(|e| anyhow::anyhow!("{source}: {e}"))?;
    Ok(match &args.since {
        Some(since) => log.since(parse_since(since, Timestamp::now()).map_err(anyhow::Error::msg)?),
        None => log,
    })
}

pub fn run(args: &ReplayArgs, io: &mut Io<'_>) -> anyhow::Result<u8> {
    if args.traffic.traffic.is_none() {
        anyhow::bail!("--traffic is required: the observed traffic to replay");
    }
    if args.traffic.traffic.as_deref() == Some("-") && args.paths.iter().any(|p| p == "-") {
        anyhow::bail!("stdin can hold the manifests or the traffic, not both");
    }
    let config = load_config(&args.load)?;
    let Some(bytes) = traffic_bytes(&args.traffic, io)? else { return Ok(EXIT_ERROR) };
    // Replay writes nothing back: objects need not keep their values (fixes are built from the
    // typed specs).
    let mut project = Project::new(&args.load.namespace);
    project.inventory.keep_values(false);
    // The traffic is parsed while the manifests load: the two are independent, and each is a
    // large share of a big replay.
    let (project, log) = std::thread::scope(|scope| {
        let parsing = scope.spawn(|| parse_traffic(&args.traffic, &bytes));
        let project = load_project(project, &args.paths, &[], &args.load, &config, io.stdin, io.stdin_tty);
        let log = parsing.join().unwrap_or_else(|_| Err(anyhow::anyhow!("parsing the traffic failed")));
        (project, log)
    });
    drop(bytes);
    let project = project?;
    // Every policy must be in: an answer about a set with a file left out would be a lie.
    if super::output::refuse_invalid_input(&project, io.stderr, "nothing was replayed")? {
        return Ok(EXIT_ERROR);
    }
    let log = log?;
    let result = replay::replay(&project, &log);
    match args.format.as_str() {
        // Written as it is serialized: the answer for 100,000 edges is tens of megabytes.
        "json" => {
            let mut out = std::io::BufWriter::new(&mut *io.stdout);
            serde_json::to_writer_pretty(&mut out, &result)?;
            out.write_all(b"\n")?;
            out.flush()?;
        }
        "markdown" => io.stdout.write_all(replay::render_markdown(&result).as_bytes())?,
        "sarif" => io.stdout.write_all(replay::render_sarif(&result).as_bytes())?,
        _ => io.stdout.write_all(replay::render_human(&result).as_bytes())?,
    }
    let code = if args.fail_on == "denied-traffic" && result.denied_edges > 0 { EXIT_FINDINGS } else { EXIT_OK };
    if io.exiting {
        // Freed by the operating system at exit: freeing a large replay piece by piece costs a
        // tenth of its run.
        std::mem::forget((project, log, result));
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_reads_durations_and_times() {
        let now: Timestamp = "2026-11-26T12:00:00Z".parse().unwrap();
        assert_eq!(parse_since("7d", now).unwrap(), "2026-11-19T12:00:00Z".parse::<Timestamp>().unwrap());
        assert_eq!(parse_since("36h", now).unwrap(), "2026-11-25T00:00:00Z".parse::<Timestamp>().unwrap());
        assert_eq!(parse_since("2w", now).unwrap(), "2026-11-12T12:00:00Z".parse::<Timestamp>().unwrap());
        assert_eq!(
            parse_since("2026-11-20T00:00:00Z", now).unwrap(),
            "2026-11-20T00:00:00Z".parse::<Timestamp>().unwrap()
        );
        for bad in ["", "7", "d", "7y", "-7d", "99999999999999999d", "7 d"] {
            assert!(parse_since(bad, now).is_err(), "{bad:?}");
        }
    }
}
