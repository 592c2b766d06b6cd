//! `graph-sim [--port N] [--config FILE.json]`: runs the simulator until
//! killed and prints its base URL on stdout. `GRAPH_SIM_*` variables
//! override the faults of the config.

use std::process::ExitCode;

fn usage() -> ExitCode {
    eprintln!("usage: graph-sim [--port N] [--config FILE.json]");
    ExitCode::from(2)
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut port: u16 = 0;
    let mut config_path: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--port" => match args.next().and_then(|p| p.parse().ok()) {
                Some(p) => port = p,
                None => return usage(),
            },
            "--config" => match args.next() {
                Some(p) => config_path = Some(p),
                None => return usage(),
            },
            "-h" | "--help" => {
                let _ = usage();
                return ExitCode::SUCCESS;
            }
            _ => return usage(),
        }
    }
    let config = match &config_path {
        Some(path) => {
            let parsed = std::fs::read_to_string(path)
                .map_err(|e| e.to_string())
                .and_then(|s| {
                    serde_json::from_str::<graph_sim::SimConfig>(&s).map_err(|e| e.to_string())
                });
            match parsed {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("graph-sim: cannot load {path}: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        None => graph_sim::SimConfig::default(),
    };
    let config = match config.with_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("graph-sim: {e}");
            return ExitCode::FAILURE;
        }
    };
    let handle = match graph_sim::start_on(config, port).await {
        Ok(h) => h,
        Err(e) => {
            eprintln!("graph-sim: cannot listen on 127.0.0.1:{port}: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("{}", handle.base_url());
    std::future::pending::<()>().await;
    ExitCode::SUCCESS
}
