"""Scenarios: the user deletes an entity, or renames an entity id, in Home Assistant."""

from harness.procs import log

from .common import bring_up, our_entities, running_stack, states_match, wait_settled

DELETED = "sensor.vt_battery_voltage"
RENAMED = "sensor.vt_battery_soc"
NEW_ID = "sensor.house_battery_soc"


def delete_entity(env, checks):
    """A user deletes one entity: the others stay. The deleted one comes back with its id
    when the bridge republishes discovery, as documented in docs/ENTITIES.md: after a Home
    Assistant restart and when the bridge reconnects (bridge restart).
    """
    with running_stack(env, "delete_entity") as stack:
        bring_up(stack)
        before = wait_settled(stack, required={DELETED})
        others = {eid for eid, e in before.items() if e.available and eid != DELETED}

        stack.ha.ws({"type": "config/entity_registry/remove", "entity_id": DELETED})
        log(f"{DELETED} removed from the entity registry")
        after = wait_settled(stack, required=others)
        checks.true(DELETED not in after, f"{DELETED} is gone after the removal")
        checks.empty(sorted(others - set(after)), "other entities still present")

        stack.restart_home_assistant()
        after_restart = wait_settled(stack, required=others)
        checks.empty(sorted(others - set(after_restart)),
                     "other entities present after a Home Assistant restart")
        checks.eventually(lambda: DELETED in our_entities(stack), 30,
                          f"{DELETED} is back after a Home Assistant restart")

        stack.ha.ws({"type": "config/entity_registry/remove", "entity_id": DELETED})
        wait_settled(stack, required=others)

        stack.stop_bridge()
        stack.start_bridge()
        returned = wait_settled(stack, required=others | {DELETED})
        checks.true(DELETED in returned and returned[DELETED].available,
                    f"{DELETED} is back, with the same id, after the bridge republished")
        checks.equal(returned[DELETED].unique_id if DELETED in returned else None,
                     before[DELETED].unique_id, f"{DELETED} unique_id after it came back")
        checks.empty(sorted(set(returned) - set(before)), "no new entity ids")


def rename_entity(env, checks):
    """A user renames an entity id: the renamed entity keeps receiving values from the
    bridge, and the old id never comes back, across bridge and Home Assistant restarts."""
    with running_stack(env, "rename_entity") as stack:
        bring_up(stack)
        before = wait_settled(stack, required={RENAMED})

        stack.ha.ws({"type": "config/entity_registry/update", "entity_id": RENAMED,
                     "new_entity_id": NEW_ID})
        log(f"{RENAMED} renamed to {NEW_ID}")
        after = wait_settled(stack, required={NEW_ID})
        checks.true(RENAMED not in after, f"{RENAMED} no longer exists")
        checks.equal(after[NEW_ID].unique_id, before[RENAMED].unique_id,
                     f"{NEW_ID} keeps the unique_id")

        # The GX reports a new state of charge: the renamed entity must show it. Both the
        # battery monitor and the system aggregate are set, whichever the simulator derives.
        stack.simulator_command("set battery/275/Soc 57.5")
        stack.simulator_command("set system/0/Dc/Battery/Soc 57.5")
        checks.eventually(lambda: states_match(our_entities(stack)[NEW_ID].state, "57.5"), 120,
                          f"{NEW_ID} shows the value 57.5 published by the GX after the rename")

        stack.stop_bridge()
        stack.start_bridge()
        stack.restart_home_assistant()
        final = wait_settled(stack, required={NEW_ID})
        checks.true(RENAMED not in final, f"{RENAMED} did not come back after restarts")
        checks.empty(sorted(set(final) - set(after)), "no new entity ids after restarts")
