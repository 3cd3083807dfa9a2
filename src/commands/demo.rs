//! The `demo` subcommand.

#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {}

pub fn main(_args: DemoArgs) -> i32 {
    eprintln!("demo: not built yet");
    1
}
