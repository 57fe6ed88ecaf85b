//! The `msfb_seat_exporter` binary: the edge of the program. It parses the
//! command line, sets up logging, and turns the outcome of `run` into an exit
//! code (0 success, 1 runtime failure, 2 bad usage or invalid config).
//! Everything else lives in the library.

mod cli;
mod logging;
mod run;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let args = cli::Args::parse();
    if let Err(e) = logging::init(args.log_level, args.log_format) {
        eprintln!("msfb_seat_exporter: {e:#}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("msfb_seat_exporter: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = match runtime.block_on(run::run(args)) {
        Ok(code) => code,
        Err(e) => {
            // Once, as a log line in the format asked for (as Prometheus'
            // exporters do): a second, plain copy on the same stderr would
            // read as two failures.
            tracing::error!(error = format!("{e:#}"), "exiting");
            ExitCode::from(1)
        }
    };
    // In-flight checks were cancelled; do not wait for blocking tasks.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    code
}
