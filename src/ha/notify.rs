//! Persistent notifications in Home Assistant for problems the user must fix.
