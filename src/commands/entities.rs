//! The `entities` subcommand.

#[derive(Debug, Clone, clap::Args)]
pub struct EntitiesArgs {}

pub fn main(_args: EntitiesArgs) -> i32 {
    eprintln!("entities: not built yet");
    1
}
