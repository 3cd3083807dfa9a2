"""Scenario: restarts of Home Assistant, its broker and the bridge, ten rounds in a row."""

import os
import time

from harness.procs import log
from harness.registry import mqtt_entities

from .common import bring_up, running_stack, wait_settled

ROUNDS = int(os.environ.get("ROAMCORE_E2E_RESTART_ROUNDS", "10"))


def registry_view(stack) -> dict[str, tuple]:
    """(unique_id, created_at, device name) of every MQTT entity in the registry."""
    return {eid: (e.unique_id, e.created_at, e.device_name)
            for eid, e in mqtt_entities(stack.ha.snapshot()).items()}


def restarts(env, checks):
    """Home Assistant restart, broker restart (retained messages lost), bridge restart, ten
    times in a row: the same entity ids every time, no extra ids, unchanged created_at.

    ROAMCORE_E2E_RESTART_ROUNDS sets the number of rounds (default 10).
    """
    with running_stack(env, "restarts") as stack:
        bring_up(stack)
        settled = wait_settled(stack)
        available = {eid for eid, e in settled.items() if e.available}
        baseline = registry_view(stack)
        log(f"baseline: {len(baseline)} MQTT entities, {len(available)} available")

        def compare(label: str) -> None:
            wait_settled(stack, required=available, timeout=180, quiet=3.0)
            view = registry_view(stack)
            extra = sorted(set(view) - set(baseline))
            missing = sorted(set(baseline) - set(view))
            checks.empty(extra, f"{label}: no extra entity ids")
            checks.empty(missing, f"{label}: no entity id missing")
            changed = sorted(eid for eid in set(view) & set(baseline)
                             if view[eid] != baseline[eid])
            checks.empty([(eid, baseline[eid], view[eid]) for eid in changed],
                         f"{label}: unique_id, created_at and device unchanged")

        for round_number in range(1, ROUNDS + 1):
            started = time.monotonic()
            stack.restart_home_assistant()
            compare(f"round {round_number}, Home Assistant restarted")

            stack.restart_ha_broker()
            compare(f"round {round_number}, Home Assistant's broker restarted")

            status = stack.stop_bridge()
            checks.equal(status, 0, f"round {round_number}: bridge exit status on SIGTERM")
            stack.start_bridge()
            compare(f"round {round_number}, bridge restarted")
            log(f"round {round_number} of {ROUNDS} took {time.monotonic() - started:.0f} s")
