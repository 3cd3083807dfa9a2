//! The `adopt` subcommand.

#[derive(Debug, Clone, clap::Args)]
pub struct AdoptArgs {}

pub fn main(_args: AdoptArgs) -> i32 {
    eprintln!("adopt: not built yet");
    1
}
