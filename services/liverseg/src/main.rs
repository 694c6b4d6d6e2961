//! `liverseg`: reads the configuration once and hands it to the command.

mod admin;
mod cli;
mod commands;
mod offline;
mod serve;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = cli::Args::parse();
    let config = match liverseg_core::Config::load(args.config.as_deref(), std::env::vars()) {
        Ok(c) => std::sync::Arc::new(c),
        Err(e) => {
            eprintln!("liverseg: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    // Multi-threaded: blocking work has its own pool, and dicom-ul's P-DATA
    // writer needs `block_in_place` when dropped.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(commands::run(args.command, config)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("liverseg: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
