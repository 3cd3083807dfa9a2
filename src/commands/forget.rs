//! The `forget` subcommand.

#[derive(Debug, Clone, clap::Args)]
pub struct ForgetArgs {}

pub fn main(_args: ForgetArgs) -> i32 {
    eprintln!("forget: not built yet");
    1
}
