//! The `authtrail` binary: parse the command line, run it, exit with its code.

use clap::Parser;

#[tokio::main]
async fn main() {
    let cli = authtrail::cli::Cli::parse();
    let code = match authtrail::cli::run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("authtrail: {e:#}");
            2
        }
    };
    std::process::exit(code);
}
