"""Helpers shared by the scenarios."""

import contextlib
import math
import subprocess
import time

from harness.registry import DEVICE_NAME, Entity, mqtt_entities
from harness.stack import Environment, Stack

# Portal id of the real boat capture (sbender9/signalk-venus-plugin test/vrm-test.log,
# anonymised when it was copied into the project).
BOAT_PORTAL_ID = "c0619ab0d0e1"



@contextlib.contextmanager
def running_stack(env: Environment, name: str, **kwargs):
    """A fresh Stack named after the scenario, stopped whatever happens."""
    stack = Stack(env, name, **kwargs)
    try:
        yield stack
    finally:
        stack.stop_all()


def publish(broker_address: str, topic: str, payload: str, retain: bool = True) -> None:
    """Publishes one message with mosquitto_pub (QoS 1)."""
    host, port = broker_address.rsplit(":", 1)
    argv = ["mosquitto_pub", "-h", host, "-p", port, "-q", "1", "-t", topic, "-m", payload]
    if retain:
        argv.append("-r")
    subprocess.run(argv, check=True, timeout=10)


def mqtt_warnings(records: list[dict]) -> list[str]:
    """WARNING or worse records of Home Assistant's log that concern MQTT. The one
    warning every start in a loopback-only namespace logs is left out."""
    benign = ("does not have any enabled IPv4 addresses",)
    found = []
    for record in records:
        text = record["text"]
        if any(b in text for b in benign):
            continue
        if "mqtt" in record["logger"] or "mqtt" in text.lower():
            found.append(text[:1500])
    return found


def our_entities(stack: Stack) -> dict[str, Entity]:
    """MQTT entities of the device "RoamCore Victron System"."""
    return {eid: e for eid, e in mqtt_entities(stack.ha.snapshot()).items()
            if e.device_name == DEVICE_NAME}


def wait_settled(stack: Stack, required: set[str] = frozenset(), timeout: float = 180,
                 quiet: float = 6.0, connected: bool = True) -> dict[str, Entity]:
    """Waits until every id in `required` exists and is available, the bridge status is
    `connected` (unless `connected` is false), and the set of our entities and their
    availability has not changed for `quiet` seconds."""
    deadline = time.monotonic() + timeout
    last_key = None
    stable_since = time.monotonic()
    while True:
        entities = our_entities(stack)
        key = tuple(sorted((eid, e.available) for eid, e in entities.items()))
        now = time.monotonic()
        if key != last_key:
            last_key, stable_since = key, now
        missing = [eid for eid in required if eid not in entities or not entities[eid].available]
        status = entities.get("sensor.vt_bridge_status")
        if connected and (status is None or status.state != "connected"):
            missing.append("sensor.vt_bridge_status=connected")
        if entities and not missing and now - stable_since >= quiet:
            return entities
        if now >= deadline:
            raise TimeoutError(
                f"entities did not settle within {timeout:.0f} s; missing or unavailable: "
                f"{sorted(missing)[:30]}; present: {len(entities)}")
        time.sleep(1.0)


def bring_up(stack: Stack, system: str = "boat") -> None:
    """Starts Home Assistant, the simulated GX replaying `system` and the bridge."""
    stack.start_home_assistant()
    stack.start_simulator(system)
    stack.start_bridge()


def states_match(actual: str | None, expected: str | None, tolerance: float = 1e-6) -> bool:
    """Compares two Home Assistant states: numerically when both are numbers."""
    if actual == expected:
        return True
    try:
        a, b = float(actual), float(expected)
    except (TypeError, ValueError):
        return False
    return math.isclose(a, b, rel_tol=tolerance, abs_tol=tolerance)
