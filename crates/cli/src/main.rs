//! `bacalhau`: the command line. Parses arguments, runs one command, prints the error chain.

// Doc comments on clap structs are the CLI's help text, written for terminals, not rustdoc.
#![allow(rustdoc::broken_intra_doc_links, rustdoc::invalid_html_tags)]

mod args;
mod auth;
mod commands;
mod config;
mod config_keys;
mod devstack;
mod ipfs;
mod jobspec;
mod market;
mod output;
mod profile;
mod results;
mod serve;
mod telemetry;
mod wait;

use clap::Parser;

/// Whether an error is a write to a closed stdout (`bacalhau job list | head -1`).
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe))
}

fn main() -> std::process::ExitCode {
    bacalhau_node::tune_allocator();
    // Rust ignores SIGPIPE, so printing into a closed pipe panics in `println!`. A reader that
    // stopped reading is not an error: end quietly with success, as a filter in a pipeline does.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.contains("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(0);
        }
        default_hook(info);
    }));
    let cli = args::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("Error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(code) => code,
        Err(e) if is_broken_pipe(&e) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
