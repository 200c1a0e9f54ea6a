//! Prints `docs/rules.md` from the rule registry.

use std::io::Write;

fn main() -> std::io::Result<()> {
    std::io::stdout().write_all(portcullis_linter::rules::registry::rules_document().as_bytes())
}
