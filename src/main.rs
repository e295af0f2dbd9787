//! The `authtrail` binary: parse the command line, run it, exit with its code.

use clap::Parser;

fn main() {
    let cli = authtrail::cli::Cli::parse();
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("authtrail: cannot start the async runtime: {e}");
            std::process::exit(2);
        }
    };
    let code = match runtime.block_on(authtrail::cli::run(cli)) {
        Ok(code) => code,
        // `authtrail check | head -1`: the reader has what it wanted; exit quietly, with 0.
        Err(e) if authtrail::cli::stdout_closed(&e) => 0,
        Err(e) => {
            eprintln!("authtrail: {e:#}");
            2
        }
    };
    std::process::exit(code);
}

/// The tokio runtime: one worker thread per CPU this process may use (its affinity mask and
/// cgroup quota, as `std::thread::available_parallelism` reads them; `TOKIO_WORKER_THREADS`
/// overrides), and with a single CPU a current-thread runtime, which skips the work-stealing
/// machinery a lone worker never uses: a sidecar is often given one core or less. SQLite runs on
/// its own threads either way (sqlx-sqlite), so the store never blocks the proxy's thread.
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let workers = std::env::var("TOKIO_WORKER_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| *n > 0)
        .or_else(|| std::thread::available_parallelism().ok().map(usize::from))
        .unwrap_or(1);
    let mut builder = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(workers);
        b
    };
    builder.enable_all().build()
}
