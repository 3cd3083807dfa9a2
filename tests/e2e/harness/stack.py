"""The system under test: Home Assistant and its broker, the simulated GX and its broker,
and the bridge, all on the loopback of the test's network namespace."""

import functools
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .homeassistant import HomeAssistant
from .mosquitto import Mosquitto
from .procs import Service, log, wait_until

HA_HTTP_PORT = 8123
HA_BROKER_PORT = 1883
GX_BROKER_PORT = 1884


@dataclass
class Environment:
    """What every scenario needs: paths given by scripts/e2e-ha."""

    chroot: Path
    binary: Path
    repo: Path
    out: Path
    skip_pip_packages: str = ""

    @property
    def captures(self) -> Path:
        """The real GX captures, in the shared folder beside the clone."""
        return Path(os.environ.get("ROAMCORE_CAPTURES",
                                   self.repo.parent / "shared" / "victron-captures"))

    @functools.cached_property
    def simulator_built(self) -> bool:
        """Whether `roamcore-victron simulate` is more than the placeholder that prints
        "not built yet"; without it the scenarios use tests/e2e/gx_mock.py."""
        try:
            result = subprocess.run([str(self.binary), "simulate"], capture_output=True,
                                    text=True, timeout=3)
        except subprocess.TimeoutExpired:
            return True  # it started replaying, so it is built
        return "not built yet" not in result.stderr


# Captures the simulated GX replays, by system name.
SYSTEMS = {
    "boat": "sbender9__signalk-venus-plugin__test_vrm-test.log",
    # A BMV-702 battery monitor alone (Victron's demo-mode recording).
    "bmv702": "victronenergy__dbus-recorder__battery.csv",
}

class Stack:
    def __init__(self, env: Environment, name: str, ha_extra_config: str = "", lan=None):
        """With `lan` (a started TestLan), the GX broker and the simulator run in the GX's
        namespace at the LAN address; without, on the test namespace's loopback."""
        self.env = env
        self.lan = lan
        self.dir = env.out / name
        if self.dir.exists():
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True)
        self.data_dir = self.dir / "bridge-data"
        self.data_dir.mkdir()
        hass_args = []
        if env.skip_pip_packages:
            hass_args = ["--skip-pip-packages", env.skip_pip_packages]
        self.ha = HomeAssistant(env.chroot, self.dir / "ha", HA_HTTP_PORT,
                                extra_config=ha_extra_config, hass_args=hass_args)
        self.ha_broker = Mosquitto("ha-broker", HA_BROKER_PORT, self.dir)
        if lan is None:
            self.gx_broker = Mosquitto("gx-broker", GX_BROKER_PORT, self.dir)
        else:
            self.gx_broker = Mosquitto("gx-broker", 1883, self.dir, bind=lan.gx_address,
                                       wrap=lan.in_gx)
        self.bridge: Service | None = None
        self.simulator: Service | None = None
        self.browser_tokens: dict | None = None

    # --- Home Assistant side -------------------------------------------------------------

    def start_home_assistant(self) -> None:
        """Starts the broker (when stopped) and Home Assistant, logs in and makes sure the
        MQTT integration is connected and subscribed."""
        if not self.ha_broker.running():
            self.ha_broker.start()
        self.ha.start()
        self.browser_tokens = self.ha.authenticate()
        self.ha.setup_mqtt("127.0.0.1", HA_BROKER_PORT)

    def restart_home_assistant(self) -> None:
        self.ha.stop()
        self.ha.start()
        self.ha.authenticate()
        # Home Assistant starts a new log file on every start, so any birth line in it
        # belongs to this start.
        self.ha.wait_mqtt_ready(0)

    def restart_ha_broker(self, timeout: float = 120) -> None:
        """Restarts Home Assistant's broker (retained messages are lost) and waits until
        Home Assistant has reconnected and sent its birth message again."""
        births = self.ha.birth_count()
        started = time.monotonic()
        self.ha_broker.restart()
        self.ha.wait_mqtt_ready(births, timeout)
        log(f"home-assistant: reconnected to its restarted broker after "
            f"{time.monotonic() - started:.1f} s")

    # --- GX side ---------------------------------------------------------------------------

    def start_simulator(self, system: str = "boat") -> None:
        """Starts the GX broker (when stopped) and the simulated GX publishing into it,
        replaying the capture of `system` (a key of SYSTEMS)."""
        if not self.gx_broker.running():
            self.gx_broker.start()
        capture = self.env.captures / SYSTEMS[system]
        if not capture.exists():
            raise FileNotFoundError(f"GX capture {capture} not found; set ROAMCORE_CAPTURES "
                                    f"to the folder that holds the captures")
        if self.env.simulator_built:
            # TODO: confirm these flags against `roamcore-victron simulate --help` once
            # the simulator is merged.
            argv = [str(self.env.binary), "simulate", "--broker", self.gx_broker.address,
                    "--capture", str(capture)]
        else:
            argv = ["python3", str(Path(__file__).resolve().parents[1] / "gx_mock.py"),
                    self.gx_broker.address, str(capture)]
        if self.lan is not None:
            argv = self.lan.in_gx(argv)
        self.simulator = Service("simulator", argv, self.dir / "simulator.log")
        self.simulator.start()
        if not self.env.simulator_built:
            # A real GX is up before the bridge asks it for values, so wait until the mock
            # has subscribed to its keepalive topic.
            wait_until(lambda: "GX mock for portal" in self.simulator.log_text(), 15, 0.1,
                       "the GX mock to subscribe")

    def stop_simulator(self) -> None:
        if self.simulator:
            self.simulator.stop()

    # --- the bridge ------------------------------------------------------------------------

    def bridge_argv(self, *extra: str) -> list[str]:
        return [
            str(self.env.binary), "run",
            "--gx", self.gx_broker.address,
            "--ha-broker", self.ha_broker.address,
            "--data-dir", str(self.data_dir),
            "--scan", "false",
            "--log-level", "debug",
            *extra,
        ]

    def start_bridge(self, *extra: str) -> None:
        self.bridge = Service("bridge", self.bridge_argv(*extra), self.dir / "bridge.log",
                              env={"PATH": "/usr/bin:/bin", "RUST_BACKTRACE": "1"})
        self.bridge.start()

    def stop_bridge(self) -> int | None:
        return self.bridge.stop(timeout=15) if self.bridge else None

    # --- everything ------------------------------------------------------------------------

    def stop_all(self) -> None:
        for stop in (self.stop_bridge, self.stop_simulator, self.ha.stop,
                     self.ha_broker.stop, self.gx_broker.stop):
            try:
                stop()
            except Exception as err:  # keep stopping the rest
                log(f"stopping failed: {err!r}")

    def snapshot_to_file(self, label: str) -> dict:
        snapshot = self.ha.snapshot()
        (self.dir / f"snapshot-{label}.json").write_text(json.dumps(snapshot, indent=1))
        return snapshot
