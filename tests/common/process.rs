//! The `mesh-records` binary as a child process, for the tests that run it as users do.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The binary cargo built for this test run.
pub fn mesh_records() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mesh-records"))
}

/// Writes `text` as `config.toml` in `dir`; returns its path.
pub fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("config.toml");
    std::fs::write(&path, text).expect("write the test config");
    path
}

/// Starts the binary on `config`; its warnings and errors go to the test's stderr.
pub fn serve(config: &Path) -> Child {
    mesh_records()
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("start mesh-records")
}

/// Asks the child to stop, as a service manager does (SIGTERM).
pub fn sigterm(child: &Child) {
    // SAFETY: kill only sends a signal to our own child process.
    let sent = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(sent, 0, "SIGTERM to the server");
}
