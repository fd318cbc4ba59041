//! `warden`: the one binary. Commands to serve the API, initialize a store,
//! and manage organizations and keys from the host's console.

mod cli;
mod commands;
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
    if !shows_a_secret(&cli.command) {
        // The console commands print and exit: when what reads their
        // output stops early (`| head`), they end quietly as other Unix
        // tools do, instead of panicking on the closed pipe. The server
        // keeps Rust's default, under which a closed socket is an error,
        // and so do the commands that show a secret once: a reader gone
        // is then said, with what was saved, rather than a silent end.
        // SAFETY: sets this process's disposition of one signal, before
        // any other thread exists.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    commands::init_logging(cli.log_format);
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
            say_error(&format!("error: {}\n", without_credentials(message)));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The commands that print a secret once, after saving it.
fn shows_a_secret(command: &cli::Command) -> bool {
    use cli::{Command, KeysCommand, OrgCommand};
    matches!(
        command,
        Command::Serve(_)
            | Command::Init(_)
            | Command::Org(OrgCommand::Create(_))
            | Command::Keys(KeysCommand::Create(_) | KeysCommand::Rotate(_))
    )
}

/// Writes to standard error; one that cannot take it (a full disk, a
/// reader gone) changes nothing of what the command did or its exit code.
fn say_error(text: &str) {
    use std::io::Write;
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}
