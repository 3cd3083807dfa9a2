"""What Home Assistant should show for the real boat capture, computed from the capture.

Each expectation names the GX source of one entity and the transform the bridge's
catalogue (src/model/catalogue.rs) documents for it, so the expected state is the
capture's value after that transform, never a number typed here. Units, classes and
precisions come from the catalogue itself (`roamcore-victron entities --format json`).
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
    # The part of the catalogue's source text that names the same GX path.
    source_path: str
    value: Callable[[Capture], object]

    def expected_state(self, capture: Capture) -> str | float | None:
        """The state Home Assistant should show: a number, an option string, or
        "unknown"; None when the capture has no value for the source."""
        return self.value(capture)


def number(path: str):
    return lambda c: c.get(path)


def phases(template: str):
    return lambda c: c.phase_sum(template)


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
    def system(entity_id: str, path: str, transform=number) -> Expectation:
        return Expectation(entity_id, path, transform(f"system/0/{path}"))

    def role(entity_id: str, service: str, path: str, transform=number) -> Expectation:
        return Expectation(entity_id, path, transform(f"{service}/{path}"))

    return [
        system("sensor.vt_battery_soc", "Dc/Battery/Soc"),
        system("sensor.vt_battery_voltage", "Dc/Battery/Voltage"),
        system("sensor.vt_battery_current", "Dc/Battery/Current"),
        system("sensor.vt_battery_power", "Dc/Battery/Power"),
        system("sensor.vt_solar_power", "Dc/Pv/Power"),
        Expectation("sensor.vt_ac_in_power", "Ac/ActiveIn/L*/Power",
                    phases("system/0/Ac/ActiveIn/{}/Power")),
        Expectation("sensor.vt_ac_out_power", "Ac/ConsumptionOnOutput/L*/Power",
                    phases("system/0/Ac/ConsumptionOnOutput/{}/Power")),
        system("sensor.vt_dc_load_power", "Dc/System/Power"),
        Expectation("binary_sensor.vt_shore_connected", "shore_connected", shore_connected),
        system("sensor.vt_battery_temperature", "Dc/Battery/Temperature"),
        Expectation("sensor.vt_battery_time_to_go", "Dc/Battery/TimeToGo", time_to_go),
        system("sensor.vt_battery_consumed_ah", "Dc/Battery/ConsumedAmphours"),
        system("sensor.vt_battery_state", "Dc/Battery/State",
               lambda path: option(path, BATTERY_STATE)),
        role("sensor.vt_battery_charged_energy", main_battery, "History/ChargedEnergy"),
        role("sensor.vt_battery_discharged_energy", main_battery, "History/DischargedEnergy"),
        role("sensor.vt_solar_yield_today", solar, "History/Daily/0/Yield"),
        role("sensor.vt_solar_yield_total", solar, "Yield/User"),
        role("sensor.vt_solar_voltage", solar, "Pv/V"),
        role("sensor.vt_solar_charge_state", solar, "State",
             lambda path: option(path, CHARGER_STATE)),
        role("sensor.vt_ac_in_voltage", inverter, "Ac/ActiveIn/L1/V"),
        Expectation("sensor.vt_ac_in_current", "Ac/ActiveIn/L*/I",
                    phases(f"{inverter}/Ac/ActiveIn/{{}}/I")),
        role("sensor.vt_ac_in_frequency", inverter, "Ac/ActiveIn/L1/F"),
        role("sensor.vt_ac_in_current_limit", inverter, "Ac/ActiveIn/CurrentLimit"),
        system("sensor.vt_ac_in_source", "Ac/ActiveIn/Source",
               lambda path: option(path, AC_SOURCE)),
        role("sensor.vt_ac_out_voltage", inverter, "Ac/Out/L1/V"),
        Expectation("sensor.vt_ac_out_current", "Ac/Out/L*/I",
                    phases(f"{inverter}/Ac/Out/{{}}/I")),
        role("sensor.vt_ac_out_frequency", inverter, "Ac/Out/L1/F"),
        role("sensor.vt_inverter_state", inverter, "State",
             lambda path: option(path, INVERTER_STATE)),
        role("sensor.vt_inverter_mode", inverter, "Mode",
             lambda path: option(path, INVERTER_MODE)),
        role("sensor.vt_gps_speed", gps, "Speed"),
        role("sensor.vt_gps_satellites", gps, "NrOfSatellites"),
    ]
