//! `simple-cache-ctl`: the command-line client (see `simple_cache_server::ctl`).

use clap::Parser;
use simple_cache_server::ctl::{self, Ctl};

fn main() {
    simple_cache_server::tls::install_default_provider();
    let ctl = Ctl::parse();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime builds");
    let exit = match rt.block_on(ctl::run(ctl)) {
        Ok(exit) => exit,
        Err(f) => {
            eprintln!("simple-cache-ctl: {}", f.message);
            f.exit
        }
    };
    // Output goes to a pipe as often as to a terminal: flush before exiting.
    use std::io::Write;
    let _ = std::io::stdout().flush();
    std::process::exit(exit as i32);
}
