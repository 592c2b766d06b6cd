//! `login-connect`: the whole service on this machine (`login-connect --help`).

use std::process::ExitCode;

use clap::Parser;
use lc_local::cli::{Cli, Command, ServeArgs};
use lc_local::serve::Settings;
use lc_local::{demo, init_logs, load, scale, serve};

// Both ends of every HTTP hop, the JSON and the in-memory twins allocate on the runtime's
// threads at once: glibc's malloc was a fifth of a `load` flood's CPU, much of it its arena
// lock handed between the threads (perf, 2026-12-07).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        None => runtime.block_on(serve::serve(Settings::new(
            &cli.common,
            &ServeArgs::default(),
        ))),
        Some(Command::Serve(args)) => {
            runtime.block_on(serve::serve(Settings::new(&cli.common, &args)))
        }
        Some(Command::Demo) => {
            init_logs();
            runtime.block_on(demo::demo(Settings::new(
                &cli.common,
                &ServeArgs::default(),
            )))
        }
        Some(Command::Send(args)) => runtime.block_on(serve::send(&args)),
        Some(Command::Message(args)) => runtime.block_on(serve::message(&args)),
        Some(Command::Load(args)) => {
            if cli.common.aws_endpoint.is_some() {
                if let Err(e) = lc_local::init_logs_metered() {
                    eprintln!("login-connect: {e}");
                    return ExitCode::FAILURE;
                }
            } else {
                init_logs();
            }
            runtime.block_on(load::load(&cli.common, &args))
        }
        Some(Command::Scale(args)) => {
            // Millions of retries during the outage: logs only when asked for (RUST_LOG).
            if std::env::var_os("RUST_LOG").is_some() {
                init_logs();
            }
            runtime.block_on(scale::scale(&args))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("login-connect: {e}");
            ExitCode::FAILURE
        }
    }
}
