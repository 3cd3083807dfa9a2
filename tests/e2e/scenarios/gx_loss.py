"""Scenario: the GX goes silent (unplugged) and comes back."""

import time

from harness.procs import log

from .common import bring_up, our_entities, running_stack, states_match, wait_settled

# The bridge promises that entities turn unavailable within 45 s after the GX goes silent.
UNAVAILABLE_WITHIN_S = 45
# The bridge-status states that explain a lost GX link.
LINK_LOST_STATUSES = {"stale", "connecting", "searching"}


def gx_loss(env, checks):
    """GX unplugged: entities unavailable within 45 s and diagnostics show why. GX back:
    values again and no new entities.

    The GX broker and the simulator are frozen with SIGSTOP, so their TCP connections stay
    open but nothing responds, as after a pulled cable. A killed broker would close the
    connection and tell the bridge at once, which is the easier case.
    """
    with running_stack(env, "gx_loss") as stack:
        bring_up(stack)
        before = wait_settled(stack)
        measured = {eid for eid, e in before.items() if e.entity_category != "diagnostic"}
        diagnostic = {eid for eid, e in before.items() if e.entity_category == "diagnostic"}
        checks.true(bool(measured), "entities besides diagnostics exist before the GX is lost")
        checks.true("sensor.vt_bridge_status" in diagnostic,
                    "sensor.vt_bridge_status is a diagnostic entity")
        checks.true("binary_sensor.vt_gx_connected" in diagnostic,
                    "binary_sensor.vt_gx_connected is a diagnostic entity")

        # --- GX gone -----------------------------------------------------------------
        stack.simulator.pause()
        stack.gx_broker.service.pause()
        lost_at = time.monotonic()
        log("GX frozen (SIGSTOP on its broker and the simulator)")
        elapsed = None
        while time.monotonic() - lost_at < UNAVAILABLE_WITHIN_S + 30:
            entities = our_entities(stack)
            if all(not entities[eid].available for eid in measured if eid in entities):
                elapsed = time.monotonic() - lost_at
                break
            time.sleep(1.0)
        log(f"all measured entities unavailable after "
            f"{'more than 75' if elapsed is None else f'{elapsed:.1f}'} s")
        checks.true(elapsed is not None and elapsed <= UNAVAILABLE_WITHIN_S,
                    f"measured entities unavailable within {UNAVAILABLE_WITHIN_S} s",
                    f"took {elapsed if elapsed is not None else 'over 75'} s; still available: "
                    f"{sorted(e for e in measured if entities.get(e) and entities[e].available)}")

        entities = our_entities(stack)
        for eid in sorted(diagnostic):
            checks.true(eid in entities and entities[eid].available,
                        f"{eid} stays available while the GX is gone",
                        f"state {entities[eid].state if eid in entities else 'missing'}")
        status = entities.get("sensor.vt_bridge_status")
        checks.true(status is not None and status.state in LINK_LOST_STATUSES,
                    "bridge status tells that the GX link is lost",
                    f"state {status.state if status else 'missing'}, expected one of "
                    f"{sorted(LINK_LOST_STATUSES)}")
        connected = entities.get("binary_sensor.vt_gx_connected")
        checks.equal(connected.state if connected else None, "off",
                     "binary_sensor.vt_gx_connected while the GX is gone")

        # --- GX back -----------------------------------------------------------------
        stack.gx_broker.service.resume()
        stack.simulator.resume()
        back_at = time.monotonic()
        log("GX resumed (SIGCONT)")
        was_available = {eid for eid in measured if before[eid].available}
        after = wait_settled(stack, required=was_available, timeout=120)
        log(f"values back after {time.monotonic() - back_at:.1f} s")
        checks.equal(sorted(after), sorted(before), "entity ids after the GX is back")
        for eid in sorted(was_available):
            checks.true(states_match(after[eid].state, before[eid].state, 0.05),
                        f"{eid} shows the GX's value again",
                        f"before {before[eid].state!r}, after {after[eid].state!r}")
        connected = after.get("binary_sensor.vt_gx_connected")
        checks.equal(connected.state if connected else None, "on",
                     "binary_sensor.vt_gx_connected after the GX is back")
        status = after.get("sensor.vt_bridge_status")
        checks.equal(status.state if status else None, "connected",
                     "sensor.vt_bridge_status after the GX is back")
