"""The scenarios, in the order they run. Each takes (Environment, Checks)."""

from .gx_loss import gx_loss
from .harness_probe import harness_probe
from .restarts import restarts
from .user_edits import delete_entity, rename_entity

SCENARIOS = {
    "harness": harness_probe,
    "gx_loss": gx_loss,
    "delete_entity": delete_entity,
    "rename_entity": rename_entity,
    "restarts": restarts,
}
