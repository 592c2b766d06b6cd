//! `login-connect`: the whole service on this machine.
//!
//! ```text
//! login-connect [serve] [--port 8080] [--pages N]   run until Ctrl-C; prints URLs and a signed curl
//! login-connect demo                                 play the whole story, checking every step
//! login-connect send FILE [--url URL]                sign FILE with LC_APP_SECRET and POST it
//! login-connect load --optins N --concurrency C      load test; ends with a `load ...` summary line
//!   --aws-endpoint URL   (any command) use the AWS adapters against URL (moto) instead of memory
//!   --graph-url URL      (serve) a real Graph base URL instead of the built-in simulator
//! ```

use std::process::ExitCode;

use lc_local::{demo, init_logs, load, serve};

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
    let command = args.first().map(String::as_str).unwrap_or("serve");
    let rest = if args.first().is_some_and(|a| !a.starts_with("--")) {
        &args[1..]
    } else {
        &args[..]
    };
    let result = match command {
        "serve" => runtime.block_on(serve::serve(rest)),
        c if c.starts_with("--") => runtime.block_on(serve::serve(rest)),
        "demo" => {
            init_logs();
            runtime.block_on(demo::demo(rest))
        }
        "send" => runtime.block_on(serve::send(rest)),
        "load" => {
            init_logs();
            runtime.block_on(load::load(rest))
        }
        "-h" | "--help" | "help" => {
            println!("{}", include_str!("usage.txt"));
            Ok(())
        }
        other => Err(format!("unknown command {other:?} (try --help)")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("login-connect: {e}");
            ExitCode::FAILURE
        }
    }
}
