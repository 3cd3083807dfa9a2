"""Makes the demo: screenshots of Home Assistant's UI with the bridge's entities, taken by
headless Chromium, and log excerpts of the bridge. Started by scripts/demo-screenshots
inside a fresh network and PID namespace."""

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness.procs import log, wait_until  # noqa: E402
from harness.registry import DEVICE_NAME  # noqa: E402
from harness.stack import Environment  # noqa: E402
from harness.supervisor import SupervisorStandIn  # noqa: E402
from scenarios.common import our_entities, running_stack, wait_settled  # noqa: E402


# Tall enough for the device page to show every card of the boat's 48 entities.
DEVICE_PAGE_HEIGHT = 2800
SUPERVISOR_PORT = 8099


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


def log_excerpt(log_text: str, first: str, last: str, keep: str = ".") -> str:
    """The bridge's log from the first line matching `first` to the next line matching
    `last` (regular expressions), keeping the lines that match `keep`, without ANSI colour
    codes and debug lines. Raises when `first` or `last` is not found, because an empty
    excerpt would hide a change in the bridge's log."""
    plain = re.sub(r"\x1b\[[0-9;]*m", "", log_text)
    lines = [line for line in plain.splitlines()
             if "DEBUG" not in line and not line.startswith("=== ")]
    start = next((i for i, line in enumerate(lines) if re.search(first, line)), None)
    if start is None:
        raise RuntimeError(f"no line of the bridge's log matches {first!r}")
    end = next((i for i in range(start, len(lines)) if re.search(last, lines[i])), None)
    if end is None:
        raise RuntimeError(f"no line after {first!r} matches {last!r} in the bridge's log")
    return "\n".join(l for l in lines[start:end + 1] if re.search(keep, l)) + "\n"


def main() -> int:
    args = parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    args.docs.mkdir(parents=True, exist_ok=True)
    env = Environment(chroot=args.chroot, binary=args.binary.resolve(),
                      repo=Path(__file__).resolve().parents[2], out=args.out.resolve(),
                      skip_pip_packages=args.skip_pip_packages)

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

        def device_shot(file: str, status: str, **expectations) -> dict:
            """A shot of the device page that must show the device and the bridge status."""
            return {"path": device_page, "file": file, "height": DEVICE_PAGE_HEIGHT,
                    "expect": [DEVICE_NAME, "Bridge status", status], **expectations}

        camera.take(
            device_shot("01-device-page.png", "connected",
                        expectMax={"Unavailable": unavailable}),
            {"path": "/config/integrations/integration/mqtt", "file": "02-mqtt-integration.png",
             "expect": [DEVICE_NAME, "1 device", f"{len(entities)} entities"]},
        )

        stack.simulator.pause()
        stack.gx_broker.service.pause()
        wait_until(lambda: all(not our_entities(stack)[eid].available for eid in measured),
                   75, 1.0, "entities to become unavailable after the GX was frozen")
        status = our_entities(stack)["sensor.vt_bridge_status"].state
        log(f"demo: GX frozen, bridge status {status}")
        camera.take(device_shot("03-gx-unplugged.png", status,
                                expectMin={"Unavailable": len(measured)}))

        stack.gx_broker.service.resume()
        stack.simulator.resume()
        wait_settled(stack, required=set(measured), timeout=120)
        camera.take(device_shot("04-gx-back.png", "connected",
                                expectMax={"Unavailable": unavailable}))

        # MQTT switched off on the GX: nothing accepts connections on its port. A bridge
        # that has never seen this GX (a fresh data directory) then reports mqtt_disabled,
        # and as an add-on it also raises a notification through the Supervisor.
        stack.stop_bridge()
        stack.stop_simulator()
        stack.gx_broker.stop()
        supervisor = SupervisorStandIn(SUPERVISOR_PORT, stack.ha.http_port, stack.ha.token)
        supervisor.start()
        stack.bridge_env = supervisor.bridge_environment()
        stack.data_dir = stack.dir / "bridge-data-mqtt-off"
        stack.start_bridge()
        wait_until(lambda: our_entities(stack)["sensor.vt_bridge_status"].state
                   == "mqtt_disabled", 60, 1.0, "bridge status mqtt_disabled")
        camera.take(
            device_shot("05-mqtt-disabled.png", "mqtt_disabled"),
            {"path": device_page, "file": "06-mqtt-disabled-notification.png",
             "click": "Notifications",
             "expect": ["Victron GX: MQTT access is off", "MQTT Access"]},
        )
        supervisor.stop()

        bridge_log = stack.bridge.log_text()
    excerpts = {
        "log-discovery.txt": log_excerpt(bridge_log, "starting", "publishing discovery"),
        "log-connection.txt": log_excerpt(bridge_log, "connecting to the GX",
                                          "status=connected"),
        "log-reconnect.txt": log_excerpt(bridge_log, "status=stale", "status=connected"),
        "log-mqtt-disabled.txt": log_excerpt(bridge_log, "bridge-data-mqtt-off",
                                             "status=mqtt_disabled"),
    }
    for name, text in excerpts.items():
        # Paths relative to the clone, so the excerpts read the same on every machine.
        (args.docs / name).write_text(text.replace(f"{env.repo}/", ""))
    log(f"demo: pictures and log excerpts written to {args.docs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
