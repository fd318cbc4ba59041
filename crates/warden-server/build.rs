//! Names the commit a build was made from (`WARDEN_COMMIT`), so that two
//! builds of one version number are told apart by `--version` and
//! `/metrics` (a rolling upgrade shows which replicas run which). Built
//! outside a git checkout, or without git, it is `unknown`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!text.is_empty()).then_some(text)
}

fn main() {
    let here = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let commit = git(&here, &["rev-parse", "--short=12", "HEAD"]);
    println!(
        "cargo:rustc-env=WARDEN_COMMIT={}",
        commit.as_deref().unwrap_or("unknown")
    );
    // Run again when HEAD moves (a commit, a checkout), not on every
    // build: only files that exist are named, since cargo counts a named
    // file that is missing as changed at every build.
    println!("cargo:rerun-if-changed=build.rs");
    for (flag, files) in [
        ("--git-dir", &["HEAD"][..]),
        ("--git-common-dir", &["refs/heads", "packed-refs"][..]),
    ] {
        if let Some(dir) = git(&here, &["rev-parse", flag]) {
            let dir = here.join(dir);
            for file in files {
                let path = dir.join(file);
                if path.exists() {
                    println!("cargo:rerun-if-changed={}", path.display());
                }
            }
        }
    }
}
