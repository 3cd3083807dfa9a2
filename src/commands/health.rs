//! The `health` subcommand.

#[derive(Debug, Clone, clap::Args)]
pub struct HealthArgs {}

pub fn main(_args: HealthArgs) -> i32 {
    eprintln!("health: not built yet");
    1
}
