"""The scenarios, in the order they run. Each takes (Environment, Checks)."""

from .harness_probe import harness_probe

SCENARIOS = {
    "harness": harness_probe,
}
