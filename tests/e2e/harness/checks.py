"""Named checks that record every result, so one failing value does not hide the next."""

import time

from .procs import log


class ScenarioSkipped(Exception):
    """Raised when a scenario cannot run here; the reason is printed with the result."""


class Checks:
    def __init__(self, scenario: str):
        self.scenario = scenario
        self.passed = 0
        self.failures: list[str] = []

    def true(self, condition: bool, what: str, detail: str = "") -> bool:
        if condition:
            self.passed += 1
            return True
        message = f"{what}" + (f": {detail}" if detail else "")
        self.failures.append(message)
        log(f"  FAIL {message}")
        return False

    def equal(self, actual, expected, what: str) -> bool:
        return self.true(actual == expected, what,
                         f"expected {expected!r}, got {actual!r}")

    def empty(self, items, what: str) -> bool:
        items = list(items)
        return self.true(not items, what, f"found {len(items)}: {items[:20]!r}")

    def eventually(self, condition, timeout: float, what: str) -> bool:
        """Polls `condition()` once a second for up to `timeout` s; records one result."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if condition():
                    return self.true(True, what)
            except (KeyError, AttributeError, TypeError):
                pass  # the entity is not there yet
            if time.monotonic() >= deadline:
                return self.true(False, what, f"not true within {timeout:.0f} s")
            time.sleep(1.0)

    @property
    def ok(self) -> bool:
        return not self.failures
