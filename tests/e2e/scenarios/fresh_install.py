"""Scenario: a fresh Home Assistant, the bridge, and the real boat capture."""

import json
import re

from harness.expected import (ALWAYS_PUBLISHED, BRIDGE_STATUS_OPTIONS, DIAGNOSTICS, UNKNOWN,
                              Capture, boat_expectations)
from harness.procs import log
from harness.registry import DEVICE_NAME, mqtt_entities
from harness.stack import SYSTEMS

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

    Every expected entity has exactly its id, sits on the one device, has the promised
    unit and classes and shows the capture's value. Home Assistant's log has no MQTT
    warning or error.
    """
    capture = Capture(env.captures / SYSTEMS["boat"])
    roles = boat_roles(capture)
    expectations = boat_expectations(**roles)
    with_value = [x for x in expectations if x.expected_state(capture) is not None]
    log(f"roles in the capture: {roles}; {len(with_value)} entities with a value to check")

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
        duplicates = [eid for eid in ours
                      if re.sub(r"_\d+$", "", eid) != eid and re.sub(r"_\d+$", "", eid) in ours]
        checks.empty(duplicates, "ids that Home Assistant suffixed because the id was taken")
        unique_ids = [e.unique_id for e in ours.values()]
        checks.equal(len(set(unique_ids)), len(unique_ids), "unique_ids are distinct")
        checks.empty(sorted(ALWAYS_PUBLISHED - set(ours)), "always-published entities missing")

        # Diagnostics.
        for eid in sorted(DIAGNOSTICS):
            entity = ours.get(eid)
            checks.true(entity is not None and entity.entity_category == "diagnostic",
                        f"{eid} exists as a diagnostic entity")
        status = ours.get("sensor.vt_bridge_status")
        if status:
            checks.equal(status.state, "connected", "sensor.vt_bridge_status state")
            checks.equal(status.attributes.get("options"), BRIDGE_STATUS_OPTIONS,
                         "sensor.vt_bridge_status options")
            checks.equal(status.attributes.get("portal_id"), capture.get("system/0/Serial"),
                         "sensor.vt_bridge_status portal_id attribute")

        # Units, classes and values against the capture.
        for expectation in with_value:
            eid = expectation.entity_id
            entity = ours.get(eid)
            if not checks.true(entity is not None, f"{eid} exists"):
                continue
            attributes = entity.attributes
            checks.equal(attributes.get("unit_of_measurement"), expectation.unit, f"{eid} unit")
            checks.equal(attributes.get("device_class"), expectation.device_class,
                         f"{eid} device_class")
            checks.equal(attributes.get("state_class"), expectation.state_class,
                         f"{eid} state_class")
            expected = expectation.expected_state(capture)
            if isinstance(expected, (int, float)) and not isinstance(expected, bool):
                checks.true(numeric_match(entity.state, expected, expectation.precision),
                            f"{eid} state", f"expected {expected!r} at precision "
                            f"{expectation.precision}, got {entity.state!r}")
            else:
                checks.equal(entity.state, expected, f"{eid} state")
            if expectation.device_class == "enum" and expected != UNKNOWN:
                checks.true(entity.state in (attributes.get("options") or []),
                            f"{eid} state is one of its options",
                            f"{entity.state!r} not in {attributes.get('options')}")

        checks.empty(mqtt_warnings(stack.ha.log_records()),
                     "MQTT warnings or errors in Home Assistant's log")
        (stack.dir / "entities.json").write_text(json.dumps(
            {eid: {"state": e.state, "attributes": e.attributes} for eid, e in ours.items()},
            indent=1, default=str))
