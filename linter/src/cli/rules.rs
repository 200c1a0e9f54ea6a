//! `portcullis rules` and `portcullis rule`.

use serde_json::json;

use super::{EXIT_OK, Io};
use crate::rules::{FixAvailability, registry};

#[derive(Debug, clap::Args)]
pub struct RulesArgs {
    /// Output format
    #[arg(long, short = 'f', default_value = "table", value_parser = ["table", "json"])]
    pub format: String,
}

#[derive(Debug, clap::Args)]
pub struct RuleArgs {
    /// Rule code (PC003) or name (egress-blocks-dns)
    pub rule: String,
}

pub fn list(args: &RulesArgs, io: &mut Io<'_>) -> anyhow::Result<u8> {
    if args.format == "json" {
        let rules: Vec<_> = registry::all()
            .map(|m| {
                json!({"code": m.code, "name": m.name, "severity": m.severity, "fixable": m.fix != FixAvailability::None, "summary": m.summary(), "docs": m.docs_markdown()})
            })
            .collect();
        writeln!(io.stdout, "{}", serde_json::to_string_pretty(&rules)?)?;
        return Ok(EXIT_OK);
    }
    io.stdout.write_all(registry::markdown_table().as_bytes())?;
    Ok(EXIT_OK)
}

pub fn show(args: &RuleArgs, io: &mut Io<'_>) -> anyhow::Result<u8> {
    let Some(m) = registry::find(&args.rule) else {
        anyhow::bail!("unknown rule {:?}; run `portcullis rules` for the list", args.rule);
    };
    writeln!(io.stdout, "# {} {} ({} by default)\n", m.code, m.name, m.severity)?;
    io.stdout.write_all(m.docs_markdown().as_bytes())?;
    Ok(EXIT_OK)
}
