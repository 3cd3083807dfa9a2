//! The `entities` subcommand: the catalogue as Markdown (docs/ENTITIES.md) or JSON (for
//! tests and scripts that must not keep their own copy of the entity list).

use std::fmt::Write;

use clap::ValueEnum;
use serde_json::json;

use crate::model::catalogue::CATALOGUE;
use crate::model::spec::{EntityDef, Family, Presence, Role, Source, Transform};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Markdown,
    Json,
}

#[derive(Debug, Clone, clap::Args)]
pub struct EntitiesArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "markdown")]
    pub format: Format,
}

pub fn main(args: EntitiesArgs) -> i32 {
    let text = match args.format {
        Format::Markdown => markdown(),
        Format::Json => serde_json::to_string_pretty(&json_catalogue()).unwrap_or_default() + "\n",
    };
    print!("{text}");
    0
}

/// Renders the catalogue as JSON: one object per row, with the entity id pattern.
pub fn json_catalogue() -> serde_json::Value {
    let rows: Vec<serde_json::Value> = CATALOGUE
        .iter()
        .map(|def| {
            json!({
                "key": def.key,
                "entity_id": entity_id(def),
                "unique_id": format!("roamcore_victron_{}", def.key),
                "component": def.component.as_str(),
                "name": def.name,
                "source": source_text(def),
                "transform": transform_text(def),
                "unit": def.unit,
                "device_class": def.device_class,
                "state_class": def.state_class.map(|s| s.as_str()),
                "precision": def.precision,
                "options": def.options(),
                "throttle": def.throttle,
                "presence": def.presence,
                "per_device": def.family,
                "entity_category": def.is_diagnostic().then_some("diagnostic"),
                "note": def.note,
            })
        })
        .collect();
    json!({ "entities": rows })
}

fn entity_id(def: &EntityDef) -> String {
    format!("{}.vt_{}", def.component.as_str(), def.key)
}

fn role_text(role: Role) -> &'static str {
    match role {
        Role::MainBattery => "main battery monitor",
        Role::Inverter => "inverter/charger",
        Role::MainSolar => "first solar charger",
        Role::Gps => "GPS",
    }
}

fn source_text(def: &EntityDef) -> String {
    match def.source {
        Source::System(path) => format!("`system/0/{path}`"),
        Source::SystemPhases(pattern) => format!("`system/0/{}`, L1+L2+L3", pattern.replace("{}", "L*")),
        Source::Role(role, path) => format!("{}: `{path}`", role_text(role)),
        Source::RoleFirst(role, paths) => format!(
            "{}: {}",
            role_text(role),
            paths.iter().map(|p| format!("`{p}`")).collect::<Vec<_>>().join(" or ")
        ),
        Source::RolePhases(role, pattern) => format!("{}: `{}`, L1+L2+L3", role_text(role), pattern.replace("{}", "L*")),
        Source::SumAll(kinds, path) => {
            let kinds: Vec<String> = kinds.iter().map(|kind| format!("`{}`", kind.as_str())).collect();
            format!("sum over every {}: `{path}`", kinds.join(" and "))
        }
        Source::Device(path) => format!("the device: `{path}`"),
        Source::Derived(derived) => format!("derived ({})", serde_json::to_value(derived).unwrap_or_default().as_str().unwrap_or("")),
    }
}

fn transform_text(def: &EntityDef) -> String {
    match def.transform {
        Transform::Number => "as is".into(),
        Transform::Scale(factor) => format!("x {factor}"),
        Transform::Enum(table) => table
            .codes
            .iter()
            .map(|(code, option)| format!("{code}={option}"))
            .collect::<Vec<_>>()
            .join(", "),
        Transform::TimeToGo => "unknown unless discharging; unknown at the 864000 s cap".into(),
        Transform::Derived => "see note".into(),
    }
}

fn presence_text(def: &EntityDef) -> &'static str {
    match (def.presence, def.family) {
        (_, Some(Family::ExtraBattery)) => "per extra battery monitor",
        (_, Some(Family::Tank)) => "per tank",
        (_, Some(Family::Temperature)) => "per temperature sensor",
        (Presence::Always, _) => "always",
        (Presence::Diagnostic, _) => "always (diagnostic)",
        (Presence::WhenSeen, _) => "once seen",
    }
}

/// The entity reference, generated; `docs/ENTITIES.md` must equal this.
pub fn markdown() -> String {
    let mut out = String::new();
    out.push_str("# Entity reference\n\n");
    out.push_str(
        "Generated from the catalogue in `src/model/catalogue.rs` by `roamcore-victron entities`; \
         a test fails when this file is out of date. Entity ids and unique ids never change: \
         automations and dashboards can rely on them.\n\n",
    );
    out.push_str(
        "- **Availability**: an entity is unavailable while the bridge is stopped, while the GX link is down \
         or stale, and while the GX lacks its source (service absent, or a path it never published with a \
         value). A source the GX has but reports as `null` gives the state unknown.\n\
         - **Signs** follow Victron: battery current and power are positive while charging; DC loads power \
         is positive while consuming; AC input power is positive when drawn from the input.\n\
         - **One of each role**: the main battery, the inverter/charger and the AC figures are the ones the \
         GX's system overview uses (its `ActiveBatteryService` and `VebusInstance`). A second inverter (a boat \
         with separate 230 V and 120 V inverters) has no entities of its own.\n\
         - **Per-device entities** are numbered by slot, assigned when the device is first seen and kept in \
         the data directory: `tank_fresh_water_level`, then `tank_fresh_water_2_level` for a second tank of \
         the same fluid. Extra battery monitors are `battery_2_*`, `battery_3_*`, ... Fluids: fuel, fresh_water, \
         waste_water, live_well, oil, black_water, gasoline, diesel, lpg, lng, hydraulic_oil, raw_water, and \
         other for a code Venus OS does not list. Temperature types: battery, fridge, generic, room, outdoor, \
         water_heater, freezer; an unlisted code counts as generic. A tank or sensor that publishes no type \
         has no entities, and the log says so. The type set on the GX chooses the id, not the custom name.\n\
         - **Deleting** an entity in Home Assistant removes only that entity; it comes back the next time the \
         bridge republishes discovery (on every reconnect and Home Assistant restart). Disable an unwanted \
         entity instead of deleting it.\n\n",
    );

    out.push_str("| Entity id | Name | Unit | Device class | State class | Source | Transform | Present |\n");
    out.push_str("|---|---|---|---|---|---|---|---|\n");
    for def in CATALOGUE {
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {} | {} | {} | {} |",
            entity_id(def),
            def.name,
            def.unit.unwrap_or(""),
            def.device_class.unwrap_or(""),
            def.state_class.map(|s| s.as_str()).unwrap_or(""),
            source_text(def),
            transform_text(def),
            presence_text(def),
        );
    }

    out.push_str("\n## Notes\n\n");
    for def in CATALOGUE.iter().filter(|d| !d.note.is_empty()) {
        let _ = writeln!(out, "- `{}`: {}", entity_id(def), def.note);
    }
    out
}
