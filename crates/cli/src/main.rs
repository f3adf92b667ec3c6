//! `bacalhau`: the command line. Parses arguments, runs one command, prints the error chain.

// Doc comments on clap structs are the CLI's help text, written for terminals, not rustdoc.
#![allow(rustdoc::broken_intra_doc_links, rustdoc::invalid_html_tags)]

mod args;
mod auth;
mod commands;
mod config;
mod devstack;
mod ipfs;
mod jobspec;
mod kubo_rpc;
mod market;
mod output;
mod profile;
mod results;
mod serve;
mod wait;

use clap::Parser;

fn main() -> std::process::ExitCode {
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
        Err(e) => {
            eprintln!("Error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
