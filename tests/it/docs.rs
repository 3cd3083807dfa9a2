//! Generated documentation stays in step with the code.

use std::process::Command;

use crate::support::daemon::BIN;

#[test]
fn entity_reference_is_up_to_date() {
    let output = Command::new(BIN).args(["entities", "--format", "markdown"]).output().unwrap();
    assert!(output.status.success());
    let generated = String::from_utf8(output.stdout).unwrap();
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/ENTITIES.md")).unwrap();
    assert!(
        generated == committed,
        "docs/ENTITIES.md is out of date; regenerate it with `cargo run -- entities > docs/ENTITIES.md`"
    );
}

#[test]
fn invalid_flag_value_exits_2_naming_it() {
    let output = Command::new(BIN).args(["run", "--gx", "host:99999"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--gx") && stderr.contains("99999"), "{stderr}");

    let output = Command::new(BIN).args(["run", "--log-level", "loud"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("loud"));
}
