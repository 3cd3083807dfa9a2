"""Runs the end-to-end scenarios against a real Home Assistant. Started by scripts/e2e-ha
inside a fresh network and PID namespace; run `scripts/e2e-ha --help` for the options."""

import argparse
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness.checks import Checks, ScenarioSkipped  # noqa: E402
from harness.procs import log  # noqa: E402
from harness.stack import Environment  # noqa: E402
from scenarios import KNOWN_GAPS, SCENARIOS  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chroot", type=Path, required=True,
                        help="Debian chroot holding Home Assistant's venv")
    parser.add_argument("--binary", type=Path, required=True,
                        help="the roamcore-victron binary under test")
    parser.add_argument("--out", type=Path, required=True,
                        help="directory for logs and registry snapshots")
    parser.add_argument("--skip-pip-packages", default="",
                        help="comma-separated names passed to hass --skip-pip-packages")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument("scenarios", nargs="*",
                        help="names of the scenarios to run (default: all)")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    if args.list:
        for name, function in SCENARIOS.items():
            print(f"{name:16} {function.__doc__.strip().splitlines()[0]}")
        return 0
    unknown = [n for n in args.scenarios if n not in SCENARIOS]
    if unknown:
        print(f"unknown scenario(s): {', '.join(unknown)}; known: {', '.join(SCENARIOS)}",
              file=sys.stderr)
        return 2

    env = Environment(chroot=args.chroot, binary=args.binary.resolve(),
                      repo=Path(__file__).resolve().parents[2], out=args.out.resolve(),
                      skip_pip_packages=args.skip_pip_packages)
    env.out.mkdir(parents=True, exist_ok=True)
    selected = args.scenarios or list(SCENARIOS)
    results: list[tuple[str, str, float, str]] = []

    for name in selected:
        log(f"=== scenario {name}: {SCENARIOS[name].__doc__.strip().splitlines()[0]}")
        checks = Checks(name)
        started = time.monotonic()
        try:
            SCENARIOS[name](env, checks)
            outcome = "passed" if checks.ok else "failed"
            detail = f"{checks.passed} checks passed" if checks.ok else "; ".join(checks.failures)
        except ScenarioSkipped as skipped:
            outcome, detail = "skipped", str(skipped)
        except Exception as err:
            traceback.print_exc(file=sys.stdout)
            outcome, detail = "failed", f"{type(err).__name__}: {err}"
        if (name in KNOWN_GAPS and outcome == "failed" and checks.failures
                and all(f.startswith(KNOWN_GAPS[name][1]) for f in checks.failures)):
            outcome, detail = "known-gap", f"{KNOWN_GAPS[name][0]} ({detail})"
        elif name in KNOWN_GAPS and outcome == "passed":
            outcome = "failed"
            detail = "passed but is listed in KNOWN_GAPS: remove it from that list"
        seconds = time.monotonic() - started
        results.append((name, outcome, seconds, detail))
        log(f"=== scenario {name} {outcome.upper()} in {seconds:.0f} s: {detail[:2000]}")

    print()
    for name, outcome, seconds, detail in results:
        print(f"{outcome.upper():8} {name:16} {seconds:6.0f} s  {detail[:300]}")
    counts = {o: sum(1 for r in results if r[1] == o)
              for o in ("passed", "failed", "skipped", "known-gap")}
    if counts["known-gap"]:
        print(f"e2e: {counts['known-gap']} scenario(s) failed as known gaps (KNOWN_GAPS)")
    print(f"e2e: {counts['passed']} passed, {counts['failed']} failed, "
          f"{counts['skipped']} skipped")
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
