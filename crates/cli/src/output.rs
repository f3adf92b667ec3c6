//! Output formats: tables for people, JSON/YAML/CSV for programs.

use anyhow::{Context, Result};
use comfy_table::presets::NOTHING;
use comfy_table::{ContentArrangement, Table};
use serde::Serialize;

use crate::args::{Format, OutputArgs};

/// Column width in tables unless --wide.
const NARROW: usize = 40;

/// Prints rows as a table or CSV, or `raw` as JSON/YAML.
pub fn print_list<T: Serialize>(args: &OutputArgs, headers: &[&str], rows: Vec<Vec<String>>, raw: &T) -> Result<()> {
    match args.output {
        Format::Json => println!("{}", serde_json::to_string_pretty(raw)?),
        Format::Yaml => print!("{}", yaml_serde::to_string(raw)?),
        Format::Csv => {
            let mut w = csv::Writer::from_writer(std::io::stdout());
            if !args.hide_header {
                w.write_record(headers)?;
            }
            for r in rows {
                w.write_record(r)?;
            }
            w.flush().context("writing CSV")?;
        }
        Format::Table => {
            let mut t = Table::new();
            t.load_style(NOTHING).set_content_arrangement(ContentArrangement::Disabled);
            if !args.hide_header {
                t.set_header(headers.iter().map(|h| h.to_uppercase()));
            }
            for r in rows {
                t.add_row(r.into_iter().map(|c| if args.wide { c } else { cut(&c, NARROW) }));
            }
            println!("{t}");
        }
    }
    Ok(())
}

/// Prints one object as JSON or YAML.
pub fn print_object<T: Serialize>(format: Format, raw: &T) -> Result<()> {
    match format {
        Format::Yaml => print!("{}", yaml_serde::to_string(raw)?),
        _ => println!("{}", serde_json::to_string_pretty(raw)?),
    }
    Ok(())
}

/// Cuts text to `n` characters with an ellipsis, on one line.
pub fn cut(s: &str, n: usize) -> String {
    let one_line = s.replace('\n', " ");
    if one_line.chars().count() <= n {
        one_line
    } else {
        let mut t: String = one_line.chars().take(n.saturating_sub(1)).collect();
        t.push('\u{2026}');
        t
    }
}

/// Unix nanoseconds as a short local-free time (UTC), e.g. `08:30:21`.
pub fn clock(nanos: i64) -> String {
    let s = bacalhau_model::format_rfc3339_nanos(nanos);
    s.get(11..19).unwrap_or(&s).to_owned()
}

/// Unix nanoseconds as `2026-11-25 08:30:21`.
pub fn datetime(nanos: i64) -> String {
    let s = bacalhau_model::format_rfc3339_nanos(nanos);
    format!("{} {}", s.get(..10).unwrap_or(""), s.get(11..19).unwrap_or(""))
}

/// An RFC 3339 time as `08:30:21.123`.
pub fn rfc_clock(s: &str) -> String {
    s.get(11..23).unwrap_or(s).to_owned()
}
