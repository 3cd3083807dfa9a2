"""Scenario: a GX with nothing but one battery monitor."""

from harness.catalogue import load_catalogue
from harness.procs import log

from .common import bring_up, mqtt_warnings, running_stack, wait_settled

# Always-published entities that a lone battery monitor gives no source for.
WITHOUT_SOURCE = {
    "sensor.vt_solar_power", "sensor.vt_ac_in_power", "sensor.vt_ac_out_power",
    "sensor.vt_dc_load_power", "binary_sensor.vt_shore_connected",
}
BATTERY = {"sensor.vt_battery_soc", "sensor.vt_battery_voltage", "sensor.vt_battery_current",
           "sensor.vt_battery_power"}
# Ids of entity families the battery monitor cannot feed.
FOREIGN_PREFIXES = ("sensor.vt_tank_", "sensor.vt_solar_", "sensor.vt_ac_", "sensor.vt_inverter_",
                    "sensor.vt_temperature_", "sensor.vt_humidity_", "device_tracker.vt_gps",
                    "sensor.vt_gps_", "sensor.vt_alternator_")


def small_system(env, checks):
    """BMV-702 alone, with the system aggregates a GX computes from it: the always-published
    entities without a source are unavailable (not missing, not 0), and no tank, solar or
    AC entity exists."""
    always = {row.entity_id for row in load_catalogue(env.binary)
              if row.per_device is None and row.presence == "always"}
    checks.empty(sorted(WITHOUT_SOURCE - always),
                 "entities expected unavailable that the catalogue does not always publish")
    with running_stack(env, "small_system") as stack:
        bring_up(stack, "bmv702")
        entities = wait_settled(stack, required=BATTERY)
        stack.snapshot_to_file("settled")
        log(f"{len(entities)} entities: "
            + ", ".join(f"{eid}={e.state}" for eid, e in sorted(entities.items())))

        checks.empty(sorted(always - set(entities)), "always-published entities missing")
        for eid in sorted(WITHOUT_SOURCE):
            entity = entities.get(eid)
            checks.equal(entity.state if entity else None, "unavailable", f"{eid} state")
        foreign = [eid for eid in entities
                   if eid.startswith(FOREIGN_PREFIXES) and eid not in always]
        checks.empty(sorted(foreign), "tank, solar, AC, GPS or temperature entities")
        for eid in sorted(BATTERY):
            checks.true(entities[eid].available, f"{eid} available",
                        f"state {entities[eid].state}")
        checks.empty(mqtt_warnings(stack.ha.log_records()),
                     "MQTT warnings or errors in Home Assistant's log")
