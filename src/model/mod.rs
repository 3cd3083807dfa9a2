//! From Venus OS values to canonical RoamCore entities.
//!
//! [`catalogue`] is the table of entities; [`normalise::Normaliser`] stores incoming GX
//! values ([`gx_state`]), evaluates the entities that depend on them ([`eval`],
//! [`derive`]) and keeps the entity set with its slots and persistence ([`registry`]).

pub mod capabilities;
pub mod catalogue;
pub mod counter;
pub mod derive;
pub mod enums;
pub mod eval;
pub mod gx_state;
pub mod normalise;
pub mod paths;
pub mod registry;
pub mod spec;
