"""Makes the demo: screenshots of Home Assistant's UI with the bridge's entities, taken by
headless Chromium, and log excerpts of the bridge. Started by scripts/demo-screenshots
inside a fresh network and PID namespace."""

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness.catalogue import load_catalogue  # noqa: E402
from harness.procs import log, wait_until  # noqa: E402
from harness.registry import DEVICE_NAME  # noqa: E402
from harness.stack import Environment  # noqa: E402
from scenarios.common import our_entities, running_stack, wait_settled  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chroot", type=Path, required=True)
    parser.add_argument("--binary", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True,
                        help="work directory for logs, page texts and the browser profile")
    parser.add_argument("--docs", type=Path, required=True,
                        help="directory that receives the PNGs and log excerpts")
    parser.add_argument("--node-modules", type=Path, required=True,
                        help="node_modules directory that holds playwright-core")
    parser.add_argument("--skip-pip-packages", default="")
    return parser.parse_args()


class Camera:
    """Runs tests/e2e/screenshot.cjs for a list of shots and raises when one fails."""

    def __init__(self, stack, args):
        self.stack = stack
        self.args = args
        self.profile = args.out / "chromium-profile"
        self.text_dir = args.out / "page-text"
        self.text_dir.mkdir(parents=True, exist_ok=True)

    def take(self, *shots: dict) -> None:
        spec = {
            "baseUrl": self.stack.ha.base_url,
            "tokens": self.stack.ha.login_tokens,
            "userDataDir": str(self.profile),
            "textDir": str(self.text_dir),
            "shots": [{**s, "file": str(self.args.docs / s["file"])} for s in shots],
        }
        spec_path = self.args.out / "screenshot-spec.json"
        spec_path.write_text(json.dumps(spec))
        result = subprocess.run(
            ["node", str(Path(__file__).with_name("screenshot.cjs")), str(spec_path)],
            env={**os.environ, "E2E_NODE_MODULES": str(self.args.node_modules)},
            timeout=300)
        if result.returncode != 0:
            raise RuntimeError(f"screenshot failed (page text in {self.text_dir})")


def device_id(stack) -> str:
    devices = [d for d in stack.ha.snapshot()["devices"] if d.get("name") == DEVICE_NAME]
    if len(devices) != 1:
        raise RuntimeError(f"expected one device named {DEVICE_NAME!r}, found {len(devices)}")
    return devices[0]["id"]


def log_excerpt(log_text: str, pattern: str, limit: int = 12) -> str:
    """Lines of the bridge's log that match `pattern` (a regular expression), at most
    `limit`, with the ANSI colour codes removed."""
    plain = re.sub(r"\x1b\[[0-9;]*m", "", log_text)
    lines = [line for line in plain.splitlines() if re.search(pattern, line)]
    return "\n".join(lines[:limit]) + "\n"


def main() -> int:
    args = parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    args.docs.mkdir(parents=True, exist_ok=True)
    env = Environment(chroot=args.chroot, binary=args.binary.resolve(),
                      repo=Path(__file__).resolve().parents[2], out=args.out.resolve(),
                      skip_pip_packages=args.skip_pip_packages)
    load_catalogue(env.binary)

    with running_stack(env, "demo") as stack:
        camera = Camera(stack, args)
        stack.start_home_assistant()
        stack.ha.finish_onboarding()
        stack.start_simulator("boat")
        stack.start_bridge()
        entities = wait_settled(stack)
        device_page = f"/config/devices/device/{device_id(stack)}"
        unavailable = sum(1 for e in entities.values() if not e.available)
        measured = [eid for eid, e in entities.items()
                    if e.entity_category != "diagnostic" and e.available]
        log(f"demo: {len(entities)} entities, {unavailable} unavailable")

        camera.take(
            {"path": device_page, "file": "01-device-page.png", "fullPage": True,
             "expect": [DEVICE_NAME], "expectMax": {"Unavailable": unavailable}},
            {"path": "/config/integrations/integration/mqtt", "file": "02-mqtt-integration.png",
             "expect": [DEVICE_NAME, "1 device", f"{len(entities)} entities"]},
        )

        stack.simulator.pause()
        stack.gx_broker.service.pause()
        wait_until(lambda: all(not our_entities(stack)[eid].available for eid in measured),
                   75, 1.0, "entities to become unavailable after the GX was frozen")
        camera.take({"path": device_page, "file": "03-gx-unplugged.png", "fullPage": True,
                     "expect": [DEVICE_NAME],
                     "expectMin": {"Unavailable": len(measured)}})

        stack.gx_broker.service.resume()
        stack.simulator.resume()
        wait_settled(stack, required=set(measured), timeout=120)
        camera.take({"path": device_page, "file": "04-gx-back.png", "fullPage": True,
                     "expect": [DEVICE_NAME], "expectMax": {"Unavailable": unavailable}})
        time.sleep(1)

        # TODO: add the picture of the bridge status for "MQTT is off on the GX" once
        # `simulate` has its MQTT-disabled switch.

        bridge_log = stack.bridge.log_text()
    (args.docs / "log-discovery.txt").write_text(log_excerpt(bridge_log, r"(?i)discovery"))
    (args.docs / "log-connection.txt").write_text(
        log_excerpt(bridge_log, r"(?i)connect(ed|ing)"))
    (args.docs / "log-reconnect.txt").write_text(
        log_excerpt(bridge_log, r"(?i)(stale|lost|reconnect|recovered)"))
    log(f"demo: pictures and log excerpts written to {args.docs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
