//! `simple-cache`: the server binary. Placeholder until the server issue lands; it exits with a
//! clear message instead of pretending to serve.

fn main() {
    eprintln!(
        "simple-cache: the server is not implemented yet (see the server issue); nothing to run"
    );
    std::process::exit(2);
}
