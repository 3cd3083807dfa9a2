"""The scenarios, in the order they run. Each takes (Environment, Checks)."""

from .fresh_install import fresh_install
from .gx_loss import gx_loss
from .harness_probe import harness_probe
from .restarts import restarts
from .small_system import small_system
from .user_edits import delete_entity, rename_entity
from .victron_gx import victron_gx_discovery

SCENARIOS = {
    "harness": harness_probe,
    "fresh_install": fresh_install,
    "gx_loss": gx_loss,
    "delete_entity": delete_entity,
    "rename_entity": rename_entity,
    "small_system": small_system,
    "restarts": restarts,
    "victron_gx": victron_gx_discovery,
}

# Scenarios known to fail one check: scenario name -> (reason, start of that check's
# message). When that check is the only failure, the run reports the gap and does not fail.
# Any other failure fails the run, and so does the scenario passing, so that this list is
# emptied as gaps close.
KNOWN_GAPS: dict[str, tuple[str, str]] = {}
