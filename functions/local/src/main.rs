//! `login-connect`: runs the service locally on the embedded default (in-memory adapters).
//!
//! ```text
//! login-connect [serve] [--port 8080]     run until Ctrl-C, print URLs and a signed curl
//! login-connect send FILE [--url URL]     sign FILE with the local app secret and POST it
//! ```
//! Secrets: `LC_APP_SECRET` / `LC_VERIFY_TOKEN` when set, else generated and printed.

use std::process::ExitCode;

mod serve;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
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
    let result = match args.first().map(String::as_str) {
        None | Some("serve") | Some("--port") => runtime.block_on(serve::serve(&args)),
        Some("send") => runtime.block_on(serve::send(&args[1..])),
        Some("-h") | Some("--help") | Some("help") => {
            println!("usage: login-connect [serve [--port N]] | send FILE [--url URL]");
            Ok(())
        }
        Some(other) => Err(format!("unknown command {other:?} (try --help)")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("login-connect: {e}");
            ExitCode::FAILURE
        }
    }
}
