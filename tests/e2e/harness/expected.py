"""What Home Assistant should show for the real boat capture, computed from the capture.

Each expectation names the GX source of one entity and the transform the bridge's
catalogue (src/model/catalogue.rs) documents for it, so the expected state is the
capture's value after that transform, never a number typed here. The units and classes
are those the product promises for each entity id.

TODO: take ids, units and classes from `roamcore-victron entities --format json` once it
exists, so this table keeps only the sources and transforms.
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

# Venus OS enum codes and the option strings the bridge publishes for them.
BATTERY_STATE = {0: "idle", 1: "charging", 2: "discharging"}
AC_SOURCE = {1: "grid", 2: "generator", 3: "shore", 240: "not_connected"}
CHARGER_STATE = {0: "off", 2: "fault", 3: "bulk", 4: "absorption", 5: "float", 6: "storage",
                 7: "equalize", 245: "starting", 252: "external_control"}
INVERTER_STATE = {0: "off", 1: "low_power", 2: "fault", 3: "bulk", 4: "absorption",
                  5: "float", 6: "storage", 7: "equalize", 8: "passthru", 9: "inverting",
                  10: "power_assist", 11: "power_supply", 244: "sustain", 245: "starting",
                  252: "external_control"}
INVERTER_MODE = {1: "charger_only", 2: "inverter_only", 3: "on", 4: "off", 5: "eco"}
# The GX caps Dc/Battery/TimeToGo at 864000 s (240 h); the bridge shows unknown there.
TIME_TO_GO_CAP_S = 864000

UNKNOWN = "unknown"


class Capture:
    """The last value of every topic of a JSON-lines GX capture, by path without the
    `N/<portal>/` prefix."""

    def __init__(self, path: Path):
        self.values: dict[str, object] = {}
        for line in path.read_text().splitlines():
            if line.strip():
                message = json.loads(line)["message"]
                self.values[message["topic"].split("/", 2)[2]] = message["value"]

    def get(self, path: str):
        return self.values.get(path)

    def phase_sum(self, template: str):
        """Sum of the non-null L1..L3 values; None when all three are null."""
        values = [self.get(template.format(p)) for p in ("L1", "L2", "L3")]
        values = [v for v in values if v is not None]
        return sum(values) if values else None


@dataclass
class Expectation:
    entity_id: str
    unit: str | None
    device_class: str | None
    state_class: str | None
    precision: int | None
    value: Callable[[Capture], object]

    def expected_state(self, capture: Capture) -> str | float | None:
        """The state Home Assistant should show: a number, an option string, or
        "unknown"; None when the capture has no value for the source."""
        return self.value(capture)


def number(path: str):
    return lambda c: c.get(path)


def phases(template: str):
    return lambda c: c.phase_sum(template)


def scaled(path: str, factor: float):
    return lambda c: None if c.get(path) is None else c.get(path) * factor


def option(path: str, table: dict[int, str]):
    return lambda c: None if c.get(path) is None else table.get(int(c.get(path)), UNKNOWN)


def time_to_go(c: Capture):
    seconds, state = c.get("system/0/Dc/Battery/TimeToGo"), c.get("system/0/Dc/Battery/State")
    if seconds is None:
        return None
    if state != 2 or seconds >= TIME_TO_GO_CAP_S - 1:
        return UNKNOWN
    return seconds


def shore_connected(c: Capture):
    source, connected = c.get("system/0/Ac/ActiveIn/Source"), c.get("system/0/Ac/In/0/Connected")
    if source is None:
        return None
    return "on" if connected == 1 and source in (1, 3) else "off"


def boat_expectations(main_battery: str, inverter: str, solar: str, gps: str) -> list:
    """Expectations for the boat capture; the arguments are the service paths that play
    each role there (for example `battery/275`)."""
    m, e, t, p = "measurement", "energy", "total_increasing", "power"
    return [
        Expectation("sensor.vt_battery_soc", "%", "battery", m, 0, number("system/0/Dc/Battery/Soc")),
        Expectation("sensor.vt_battery_voltage", "V", "voltage", m, 2, number("system/0/Dc/Battery/Voltage")),
        Expectation("sensor.vt_battery_current", "A", "current", m, 1, number("system/0/Dc/Battery/Current")),
        Expectation("sensor.vt_battery_power", "W", p, m, 0, number("system/0/Dc/Battery/Power")),
        Expectation("sensor.vt_solar_power", "W", p, m, 0, number("system/0/Dc/Pv/Power")),
        Expectation("sensor.vt_ac_in_power", "W", p, m, 0, phases("system/0/Ac/ActiveIn/{}/Power")),
        Expectation("sensor.vt_ac_out_power", "W", p, m, 0,
                    phases("system/0/Ac/ConsumptionOnOutput/{}/Power")),
        Expectation("sensor.vt_dc_load_power", "W", p, m, 0, number("system/0/Dc/System/Power")),
        Expectation("binary_sensor.vt_shore_connected", None, "power", None, None, shore_connected),
        Expectation("sensor.vt_battery_temperature", "°C", "temperature", m, 1,
                    number("system/0/Dc/Battery/Temperature")),
        Expectation("sensor.vt_battery_time_to_go", "s", "duration", m, 0, time_to_go),
        Expectation("sensor.vt_battery_consumed_ah", "Ah", None, m, 1,
                    number("system/0/Dc/Battery/ConsumedAmphours")),
        Expectation("sensor.vt_battery_state", None, "enum", None, None,
                    option("system/0/Dc/Battery/State", BATTERY_STATE)),
        Expectation("sensor.vt_battery_charged_energy", "kWh", e, t, 2,
                    number(f"{main_battery}/History/ChargedEnergy")),
        Expectation("sensor.vt_battery_discharged_energy", "kWh", e, t, 2,
                    number(f"{main_battery}/History/DischargedEnergy")),
        Expectation("sensor.vt_solar_yield_today", "kWh", e, t, 2,
                    number(f"{solar}/History/Daily/0/Yield")),
        Expectation("sensor.vt_solar_yield_total", "kWh", e, t, 2, number(f"{solar}/Yield/User")),
        Expectation("sensor.vt_solar_voltage", "V", "voltage", m, 1, number(f"{solar}/Pv/V")),
        Expectation("sensor.vt_solar_charge_state", None, "enum", None, None,
                    option(f"{solar}/State", CHARGER_STATE)),
        Expectation("sensor.vt_ac_in_voltage", "V", "voltage", m, 0,
                    number(f"{inverter}/Ac/ActiveIn/L1/V")),
        Expectation("sensor.vt_ac_in_current", "A", "current", m, 1,
                    phases(f"{inverter}/Ac/ActiveIn/{{}}/I")),
        Expectation("sensor.vt_ac_in_frequency", "Hz", "frequency", m, 1,
                    number(f"{inverter}/Ac/ActiveIn/L1/F")),
        Expectation("sensor.vt_ac_in_current_limit", "A", "current", m, 1,
                    number(f"{inverter}/Ac/ActiveIn/CurrentLimit")),
        Expectation("sensor.vt_ac_in_source", None, "enum", None, None,
                    option("system/0/Ac/ActiveIn/Source", AC_SOURCE)),
        Expectation("sensor.vt_ac_out_voltage", "V", "voltage", m, 0, number(f"{inverter}/Ac/Out/L1/V")),
        Expectation("sensor.vt_ac_out_current", "A", "current", m, 1, phases(f"{inverter}/Ac/Out/{{}}/I")),
        Expectation("sensor.vt_ac_out_frequency", "Hz", "frequency", m, 1,
                    number(f"{inverter}/Ac/Out/L1/F")),
        Expectation("sensor.vt_inverter_state", None, "enum", None, None,
                    option(f"{inverter}/State", INVERTER_STATE)),
        Expectation("sensor.vt_inverter_mode", None, "enum", None, None,
                    option(f"{inverter}/Mode", INVERTER_MODE)),
        Expectation("sensor.vt_gps_speed", "m/s", "speed", m, 1, number(f"{gps}/Speed")),
        Expectation("sensor.vt_gps_satellites", None, None, m, 0, number(f"{gps}/NrOfSatellites")),
    ]


# Entities the bridge publishes whatever the GX has.
ALWAYS_PUBLISHED = {
    "sensor.vt_battery_soc", "sensor.vt_battery_voltage", "sensor.vt_battery_current",
    "sensor.vt_battery_power", "sensor.vt_solar_power", "sensor.vt_ac_in_power",
    "sensor.vt_ac_out_power", "sensor.vt_dc_load_power", "binary_sensor.vt_shore_connected",
}
DIAGNOSTICS = {"sensor.vt_bridge_status", "binary_sensor.vt_gx_connected"}
BRIDGE_STATUS_OPTIONS = ["starting", "searching", "validating", "connecting", "connected",
                         "stale", "mqtt_disabled", "auth_required", "tls_untrusted",
                         "multiple_gx", "config_error"]
