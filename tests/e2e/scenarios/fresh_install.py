"""Scenario: a fresh Home Assistant, the bridge, and the real boat capture."""

import json
import re

from harness.catalogue import load_catalogue, row_for
from harness.expected import UNKNOWN, Capture, boat_expectations
from harness.procs import log
from harness.registry import DEVICE_NAME, mqtt_entities

from .common import bring_up, mqtt_warnings, running_stack, wait_settled

ENTITY_ID = re.compile(r"^(sensor|binary_sensor|device_tracker)\.vt_[a-z0-9_]+$")


def boat_roles(capture: Capture) -> dict[str, str]:
    """The service that plays each role in the capture, as `<type>/<instance>`: the GX's
    active battery service, the service on AC input 0, and the only solar charger and
    GPS."""
    battery = str(capture.get("system/0/ActiveBatteryService")).split(".")[-1]
    inverter = (f"{capture.get('system/0/Ac/In/0/ServiceType')}/"
                f"{capture.get('system/0/Ac/In/0/DeviceInstance')}")

    def only(service_type: str) -> str:
        instances = {p.split("/")[1] for p in capture.values if p.startswith(service_type + "/")}
        if len(instances) != 1:
            raise ValueError(f"expected one {service_type} in the capture, found {instances}")
        return f"{service_type}/{instances.pop()}"

    return {"main_battery": battery, "inverter": inverter, "solar": only("solarcharger"),
            "gps": only("gps")}


def numeric_match(state: str, expected: float, precision: int | None) -> bool:
    """Whether Home Assistant's state shows `expected` at the entity's display precision."""
    try:
        actual = float(state)
    except (TypeError, ValueError):
        return False
    tolerance = 0.5 * 10 ** -(precision if precision is not None else 3) + 1e-9
    return abs(actual - expected) <= tolerance


def fresh_install(env, checks):
    """Fresh Home Assistant, bridge and simulated GX replaying the real boat capture.

    Every entity sits on the one device and comes from a catalogue row
    (`roamcore-victron entities --format json`) with exactly its id, unique_id, unit,
    classes and options. The always-published and diagnostic entities exist, and each entity
    shows the capture's value. Home Assistant's log has no MQTT warning or error.
    """
    catalogue = load_catalogue(env.binary)
    capture = Capture(env.capture_file("boat"))
    roles = boat_roles(capture)
    expectations = boat_expectations(**roles)
    with_value = [x for x in expectations if x.expected_state(capture) is not None]
    log(f"roles in the capture: {roles}; {len(with_value)} entities with a value to check")

    # The value table must name the same source as the catalogue, or one of them drifted.
    for expectation in expectations:
        row = row_for(catalogue, expectation.entity_id)
        checks.true(row is not None and expectation.source_path in row.source,
                    f"{expectation.entity_id} is read from {expectation.source_path}",
                    f"catalogue source: {row.source if row else 'no such row'}")

    with running_stack(env, "fresh_install") as stack:
        bring_up(stack)
        wait_settled(stack, required={x.entity_id for x in with_value
                                      if x.expected_state(capture) != UNKNOWN})
        snapshot = stack.snapshot_to_file("settled")
        everything = mqtt_entities(snapshot)
        ours = {eid: e for eid, e in everything.items() if e.device_name == DEVICE_NAME}
        log(f"{len(ours)} entities on {DEVICE_NAME!r}: {sorted(ours)}")

        # One device, every MQTT entity on it, ids as promised.
        devices = [d for d in snapshot["devices"] if d.get("name") == DEVICE_NAME]
        checks.equal(len(devices), 1, f"number of devices named {DEVICE_NAME!r}")
        checks.empty(sorted(set(everything) - set(ours)), "MQTT entities on another device")
        checks.empty([eid for eid in ours if not ENTITY_ID.match(eid)],
                     "entity ids outside <domain>.vt_[a-z0-9_]+")
        # The bridge derives both the default entity id and the unique_id from the entity's
        # key. An id that does not match its unique_id was changed by Home Assistant,
        # typically suffixed with _2 because the requested id was taken.
        mismatched = [(eid, e.unique_id) for eid, e in ours.items()
                      if eid.split(".", 1)[1] != "vt_" + (e.unique_id or "").removeprefix(
                          "roamcore_victron_")]
        checks.empty(mismatched, "entity ids that differ from their unique_id's key")
        unique_ids = [e.unique_id for e in ours.values()]
        checks.equal(len(set(unique_ids)), len(unique_ids), "unique_ids are distinct")

        required = {row.entity_id for row in catalogue
                    if row.per_device is None and row.presence in ("always", "diagnostic")}
        checks.empty(sorted(required - set(ours)), "always-published or diagnostic entities")

        # Every entity against its catalogue row.
        for eid, entity in sorted(ours.items()):
            row = row_for(catalogue, eid)
            if not checks.true(row is not None, f"{eid} comes from a catalogue row"):
                continue
            attributes = entity.attributes
            if row.per_device is None:
                checks.equal(entity.unique_id, row.unique_id, f"{eid} unique_id")
            else:
                checks.true(entity.unique_id.startswith("roamcore_victron_"),
                            f"{eid} unique_id prefix", entity.unique_id)
            checks.equal(entity.entity_category, row.entity_category, f"{eid} entity_category")
            if not entity.available:
                continue  # an unavailable entity's state carries no attributes to compare
            checks.equal(attributes.get("unit_of_measurement"), row.unit, f"{eid} unit")
            checks.equal(attributes.get("device_class"), row.device_class, f"{eid} device_class")
            checks.equal(attributes.get("state_class"), row.state_class, f"{eid} state_class")
            if row.options is not None:
                checks.equal(attributes.get("options"), row.options, f"{eid} options")
                checks.true(entity.state in row.options + [UNKNOWN],
                            f"{eid} state is one of its options", entity.state)

        status = ours.get("sensor.vt_bridge_status")
        checks.equal(status.state if status else None, "connected", "sensor.vt_bridge_status")
        checks.equal(status.attributes.get("portal_id") if status else None,
                     capture.get("system/0/Serial"), "sensor.vt_bridge_status portal_id")

        # Values against the capture.
        for expectation in with_value:
            eid = expectation.entity_id
            entity = ours.get(eid)
            if not checks.true(entity is not None, f"{eid} exists"):
                continue
            expected = expectation.expected_state(capture)
            row = row_for(catalogue, eid)
            precision = row.precision if row else None
            if isinstance(expected, (int, float)) and not isinstance(expected, bool):
                checks.true(numeric_match(entity.state, expected, precision),
                            f"{eid} state", f"expected {expected!r} at precision "
                            f"{precision}, got {entity.state!r}")
            else:
                checks.equal(entity.state, expected, f"{eid} state")

        checks.empty(mqtt_warnings(stack.ha.log_records()),
                     "MQTT warnings or errors in Home Assistant's log")
        (stack.dir / "entities.json").write_text(json.dumps(
            {eid: {"state": e.state, "attributes": e.attributes} for eid, e in ours.items()},
            indent=1, default=str))
