//! One module per subcommand.

pub mod adopt;
pub mod demo;
pub mod discover;
pub mod entities;
pub mod forget;
pub mod health;
pub mod run;
pub mod sim_lan;
pub mod simulate;
