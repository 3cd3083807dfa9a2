//! The `run` subcommand: the daemon.

pub fn main(_args: crate::cli::RunArgs) -> i32 {
    eprintln!("run: not built yet");
    1
}
