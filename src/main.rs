//! The `aerie` binary: all-in-one mode with no subcommand, one service per
//! subcommand, and `aerie query` as a command-line client.

mod cli;
mod config;
mod modes;
mod query;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("aerie: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(modes::dispatch(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("aerie: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
