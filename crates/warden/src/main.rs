//! `warden`: the one binary. Commands to serve the API, initialize a store,
//! and manage organizations and keys from the host's console.

mod cli;
mod commands;
mod data_dir_lock;
mod master_key;
mod store;

use clap::Parser;
use warden_server::http::error::without_credentials;

/// The decision path allocates many small, short-lived values (JSON, audit
/// records); mimalloc serves them with less work than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // Everything Warden writes (the database and its WAL, the search
    // index, the master key) holds every tenant's data or secrets: only
    // its own user may read it, even in a data directory others can list.
    // SAFETY: umask only sets this process's file creation mask.
    unsafe {
        libc::umask(0o077);
    }
    // A spare file, low-numbered, for answering a connection when every
    // other file the process may open is taken.
    warden_server::http::turn_away::reserve();
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        // Help and the version go to standard output as clap writes them;
        // a usage error quotes what was typed, a key pasted in the wrong
        // place included: said without it.
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            say_error(&without_credentials(e.render().to_string()));
            return std::process::ExitCode::from(e.exit_code().clamp(0, 255) as u8);
        }
    };
    // SIGPIPE stays ignored (Rust's default) for every command: a write to
    // a reader gone is an error the command handles where it writes (an
    // answer's reader gone ends it quietly, a secret's is said, a log
    // line's is dropped), rather than a signal that ends it wherever it
    // is, a revocation half done.
    let json = cli.command.wants_json();
    commands::init_logging(cli.log_format, json);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            say_error(&format!("error: cannot start the runtime: {err}\n"));
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli.command)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            // A console command's error may quote a key pasted as an id or
            // a name (`keys revoke wdn_live_…`): never shown again.
            let message = without_credentials(message);
            if json {
                let doc = serde_json::json!({ "error": { "message": message } });
                say_error(&format!("{doc}\n"));
            } else {
                say_error(&format!("error: {message}\n"));
            }
            std::process::ExitCode::FAILURE
        }
    }
}

/// Writes to standard error; one that cannot take it (a full disk, a
/// reader gone) changes nothing of what the command did or its exit code.
fn say_error(text: &str) {
    use std::io::Write;
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}
