//! From Venus OS values to canonical RoamCore entities.
