//! The `authtrail` binary: parse the command line, run it, exit with its code.

use clap::Parser;

/// jemalloc, not glibc's malloc: it keeps each size class in pages of its own, so the small
/// objects that outlive a request (a parked connection's socket and task) do not pin the pages
/// of the buffers freed around them, and its background thread hands freed pages back to the
/// OS. Measured with 10,000 parked keep-alive connections (docs/benchmarks.md): RSS 89 MiB on
/// glibc (with `malloc_trim`), 51 MiB on jemalloc with the options below.
#[cfg(target_os = "linux")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read when it starts (before `main`): one background thread purges freed
/// pages, those unused for about a second (`dirty_decay_ms`), straight back to the OS
/// (`muzzy_decay_ms:0`: no lazy `MADV_FREE` stage, whose pages would still count as resident).
/// The default decay of 10 s would leave a burst's peak resident that long. Each thread's cache
/// is garbage-collected every 1 MiB it allocates (`tcache_gc_incr_bytes`; default 64 KiB): that
/// took 4.4 % off an unmapped request's instructions (callgrind, `scripts/bench/profile.sh`;
/// docs/benchmarks.md); the caches' bounds are unchanged, and RSS with 10,000 idle connections
/// stayed where it was. An operator can add or override options with the
/// `_RJEM_MALLOC_CONF` environment variable (read after these).
#[cfg(target_os = "linux")]
#[export_name = "_rjem_malloc_conf"]
#[allow(non_upper_case_globals)]
pub static malloc_conf: Option<&'static std::ffi::c_char> =
    // SAFETY: the pointer is to the first byte of a static, NUL-terminated C string.
    Some(unsafe {
        &*c"background_thread:true,max_background_threads:1,dirty_decay_ms:1000,muzzy_decay_ms:0,tcache_gc_incr_bytes:1048576"
            .as_ptr()
    });

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
