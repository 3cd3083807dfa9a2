//! The named captures, embedded in the binary so `simulate` and `demo` need no files.
//! Their provenance and licences are in `fixtures/captures/SOURCES.md`.

use super::{jsonl, recorder, Capture};

macro_rules! fixture {
    ($file:literal) => {
        (
            $file,
            include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/fixtures/captures/",
                $file
            )) as &[u8],
        )
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    MqttLog,
    Recorder,
}

/// A capture selectable with `--capture NAME`.
#[derive(Debug)]
pub struct NamedCapture {
    pub name: &'static str,
    pub description: &'static str,
    /// The GX's portal id: the one in the log, or a fictional one for D-Bus recordings.
    pub portal_id: &'static str,
    format: Format,
    files: &'static [(&'static str, &'static [u8])],
}

impl NamedCapture {
    pub fn load(&self) -> anyhow::Result<Capture> {
        let mut capture = match self.format {
            Format::MqttLog => jsonl::load(self.name, self.files[0].1, Some(self.portal_id))?,
            Format::Recorder => recorder::load_set(self.name, self.files, Some(self.portal_id))?,
        };
        if capture.description.is_empty() {
            capture.description = self.description.to_string();
        }
        Ok(capture)
    }
}

/// The capture `simulate` and `demo` use when none is given.
pub const DEFAULT_CAPTURE: &str = "boat";

pub static NAMED_CAPTURES: &[NamedCapture] = &[
    NamedCapture {
        name: "boat",
        description: "real boat on a real GX (Venus v3.70, dbus-flashmq): MultiPlus Compact \
                      12/2000, SmartShunt house and BMV-700 starter battery, SmartShunt DC \
                      load, MPPT 100/50, three tanks, NMEA 2000 GPS",
        portal_id: "c0619ab0d0e1",
        format: Format::MqttLog,
        files: &[fixture!(
            "sbender9__signalk-venus-plugin__test_vrm-test.log"
        )],
    },
    NamedCapture {
        name: "demo1",
        description: "real GX (Venus v3.62) in demo mode 'Boat/Motorhome demo 1': MultiPlus \
                      48/3000, SmartShunt, BMV-702, MPPT 150/35, 7 tanks, RuuviTag",
        portal_id: "c0847dba509e",
        format: Format::MqttLog,
        files: &[fixture!(
            "sbender9__signalk-venus-plugin__test_mqtt-test.log"
        )],
    },
    NamedCapture {
        name: "demo1-dbus",
        description: "the demo1 GX read over D-Bus instead of MQTT (Venus v3.62, Boat/Motorhome \
                      demo 1): the same devices, named by service and device instance",
        // Fictional, so that it and demo1 can share a broker.
        portal_id: "c0847dbad0b5",
        format: Format::MqttLog,
        files: &[fixture!("sbender9__signalk-venus-plugin__test_dbus-test.log")],
    },
    NamedCapture {
        name: "ess",
        description: "Victron's ESS demo recording: grid meter, PV inverter, MPPT 150/35, \
                      MultiPlus 48/3000, BMV-702",
        portal_id: "c0619ab0e550",
        format: Format::Recorder,
        files: &[
            fixture!("victronenergy__dbus-recorder__grid.csv"),
            fixture!("victronenergy__dbus-recorder__pvinverter.csv"),
            fixture!("victronenergy__dbus-recorder__solarcharger.csv"),
            fixture!("victronenergy__dbus-recorder__vebus.csv"),
            fixture!("victronenergy__dbus-recorder__battery.csv"),
        ],
    },
    NamedCapture {
        name: "boat-recorder",
        description: "Victron's Boat/Motorhome demo 1 recording: MultiPlus 48/3000, SmartShunt \
                      house and BMV-702 hydraulic battery, MPPT 150/35, 4 tanks, RuuviTag",
        portal_id: "c0619ab0b0a7",
        format: Format::Recorder,
        files: &[
            fixture!("victronenergy__dbus-recorder__solarcharger.csv"),
            fixture!("victronenergy__dbus-recorder__vebus.csv"),
            fixture!("victronenergy__dbus-recorder__battery-house.csv"),
            fixture!("victronenergy__dbus-recorder__battery-hydraulic.csv"),
            fixture!("victronenergy__dbus-recorder__tank_fwater.csv"),
            fixture!("victronenergy__dbus-recorder__tank_fuel.csv"),
            fixture!("victronenergy__dbus-recorder__tank_oil.csv"),
            fixture!("victronenergy__dbus-recorder__tank_bwater.csv"),
            fixture!("victronenergy__dbus-recorder__ruuvi.csv"),
        ],
    },
    NamedCapture {
        name: "bmv",
        description: "a BMV-702 battery monitor alone (Victron's dbus-recorder battery.csv)",
        portal_id: "c0619ab0b702",
        format: Format::Recorder,
        files: &[fixture!("victronenergy__dbus-recorder__battery.csv")],
    },
    NamedCapture {
        name: "yacht35",
        description:
            "venus-docker simulation r, 35 ft yacht: MultiPlus 12/3000, SmartShunt, BMV-712 \
                      DC system meter, MPPT 100/50, 2 tanks, 4 temperatures, shore on AC-in 1",
        portal_id: "c0619ab03535",
        format: Format::Recorder,
        files: &[
            fixture!("victronenergy__venus-docker__simulations_r_description"),
            fixture!("victronenergy__venus-docker__simulations_r_setup"),
            fixture!("victronenergy__venus-docker__simulations_r_battery.csv"),
            fixture!("victronenergy__venus-docker__simulations_r_dcsystem.csv"),
            fixture!("victronenergy__venus-docker__simulations_r_dieseltank.csv"),
            fixture!("victronenergy__venus-docker__simulations_r_freezer.csv"),
            fixture!("victronenergy__venus-docker__simulations_r_fridge.csv"),
            fixture!("victronenergy__venus-docker__simulations_r_salon.csv"),
            fixture!("victronenergy__venus-docker__simulations_r_solarcharger.csv"),
            fixture!("victronenergy__venus-docker__simulations_r_vebus.csv"),
            fixture!("victronenergy__venus-docker__simulations_r_watertank.csv"),
            fixture!("victronenergy__venus-docker__simulations_r_watertemp.csv"),
        ],
    },
    NamedCapture {
        name: "simple-boat",
        description: "venus-docker simulation nt, a simple boat: BMV-702, MPPT 100/50, wind \
                      charger, 3 tanks",
        portal_id: "c0619ab0517b",
        format: Format::Recorder,
        files: &[
            fixture!("victronenergy__venus-docker__simulations_nt_description"),
            fixture!("victronenergy__venus-docker__simulations_nt_setup"),
            fixture!("victronenergy__venus-docker__simulations_nt_battery.csv"),
            fixture!("victronenergy__venus-docker__simulations_nt_blackwater.csv"),
            fixture!("victronenergy__venus-docker__simulations_nt_diesel.csv"),
            fixture!("victronenergy__venus-docker__simulations_nt_solarcharger.csv"),
            fixture!("victronenergy__venus-docker__simulations_nt_water.csv"),
            fixture!("victronenergy__venus-docker__simulations_nt_windcharger.csv"),
        ],
    },
    NamedCapture {
        name: "multirs",
        description: "venus-docker simulation v: a Multi RS Solar 48 V alone",
        portal_id: "c0619ab0a150",
        format: Format::Recorder,
        files: &[
            fixture!("victronenergy__venus-docker__simulations_v_description"),
            fixture!("victronenergy__venus-docker__simulations_v_setup"),
            fixture!("victronenergy__venus-docker__simulations_v_multirs.csv"),
        ],
    },
    NamedCapture {
        name: "gui-demo",
        description: "venus-docker simulation xy (the data behind the GUI-v2 demo): Quattro \
                      24/3000, grid meter, SmartShunt, MPPT 150/35, alternator, EV charger, \
                      wind charger",
        portal_id: "c0619ab0d3e0",
        format: Format::Recorder,
        files: &[
            fixture!("victronenergy__venus-docker__simulations_xy_alternator.csv"),
            fixture!("victronenergy__venus-docker__simulations_xy_evcharger.csv"),
            fixture!("victronenergy__venus-docker__simulations_xy_grid.csv"),
            fixture!("victronenergy__venus-docker__simulations_xy_smartshunt.csv"),
            fixture!("victronenergy__venus-docker__simulations_xy_solarcharger.csv"),
            fixture!("victronenergy__venus-docker__simulations_xy_vebus.csv"),
            fixture!("victronenergy__venus-docker__simulations_xy_wind.csv"),
        ],
    },
];

/// Returns the named capture called `name`.
pub fn named_capture(name: &str) -> Option<&'static NamedCapture> {
    NAMED_CAPTURES.iter().find(|capture| capture.name == name)
}
