//! The `mesh-bench` command; everything is in the library (`mesh_bench::run`).

use std::process::ExitCode;

fn main() -> ExitCode {
    mesh_bench::run(std::env::args().skip(1))
}
