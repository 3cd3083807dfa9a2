//! The `simulate` subcommand.

pub fn main(_args: crate::sim::SimArgs) -> i32 {
    eprintln!("simulate: not built yet");
    1
}
