//! Finding the GX on the LAN without configuration.
