//! The hidden `sim-lan` subcommand: the simulated GX's LAN presence, for tests.

pub fn main(args: crate::sim::lan::SimLanArgs) -> i32 {
    crate::sim::lan::main(args)
}
