//! The commands that only read files: `status` (the status file) and
//! `validate` (catalogs), so they work without a running daemon or engine.
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::catalog::{self, parse_catalog};
use crate::{Error, Result};

pub fn status(path: &Path, json: bool) -> Result<ExitCode> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let st: crate::status::FleetStatus =
        serde_json::from_str(&text).map_err(|e| Error::Config {
            pos: catalog::SourcePos::file(path),
            message: format!("not a status file: {e}"),
        })?;
    if json {
        println!("{text}");
    } else {
        println!("fleet {}", st.fleet);
        if !st.engine.reachable {
            let why = st.engine.error.as_deref().unwrap_or("not reached yet");
            println!("container engine not reachable (waiting for it): {why}");
        }
        if let Some(e) = &st.catalog.error {
            println!("catalog error (last good state in force): {e}");
        }
        for w in st.catalog.warnings.iter().chain(&st.clashes) {
            println!("warning: {w}");
        }
        println!(
            "{:<24} {:<17} {:<6} {:>8}  MESSAGE",
            "SERVER", "PHASE", "READY", "RESTARTS"
        );
        for (name, s) in &st.servers {
            let ready = match &s.ready {
                Some(c) if c.status => "yes",
                Some(_) => "no",
                None => "-",
            };
            println!(
                "{name:<24} {:<17} {ready:<6} {:>8}  {}",
                format!("{:?}", s.phase),
                s.restart_count,
                s.message
            );
        }
    }
    let healthy = st.engine.reachable
        && st.catalog.error.is_none()
        && st.servers.values().all(|s| {
            s.phase.is_running() && s.ready.as_ref().is_none_or(|c| c.status)
                || matches!(s.phase, crate::status::Phase::Remote)
                    && s.ready.as_ref().is_some_and(|c| c.status)
        });
    Ok(if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

pub fn validate(files: &[PathBuf]) -> ExitCode {
    let mut failed = false;
    for path in files {
        match validate_file(path) {
            Ok(n) => println!("{}: ok ({n} servers)", path.display()),
            Err(errors) => {
                failed = true;
                for e in errors {
                    eprintln!("{e}");
                }
            }
        }
    }
    ExitCode::from(u8::from(failed))
}

/// Checks one catalog: the file as a whole, then every entry on its own.
fn validate_file(path: &Path) -> Result<usize, Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| vec![Error::io(path, e).to_string()])?;
    let cat = parse_catalog(path, &text).map_err(|e| vec![e.to_string()])?;
    let errors: Vec<String> = cat
        .entries
        .iter()
        .filter_map(|e| match &e.entry {
            Err(err) => Some(format!("{}: server `{}`: {err}", e.pos, e.name)),
            Ok(_) if !catalog::valid_name(&e.name) => {
                Some(format!("{}: invalid server name `{}`", e.pos, e.name))
            }
            Ok(_) => None,
        })
        .collect();
    if errors.is_empty() {
        Ok(cat.entries.len())
    } else {
        Err(errors)
    }
}
