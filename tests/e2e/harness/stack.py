"""The system under test: Home Assistant and its broker, the simulated GX and its broker,
and the bridge, all on the loopback of the test's network namespace."""

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

    def capture_file(self, system: str) -> Path:
        """The capture file behind `system`, from which scenarios compute expected states."""
        return self.repo / "fixtures" / "captures" / SYSTEMS[system][1]


# The systems the simulated GX replays: name -> (`simulate --capture` name, the file in
# fixtures/captures/ that contains the same data).
SYSTEMS = {
    "boat": ("boat", "sbender9__signalk-venus-plugin__test_vrm-test.log"),
    # A BMV-702 battery monitor alone (Victron's demo-mode recording); the simulator adds
    # the system/0 aggregates a GX computes from it.
    "bmv702": ("bmv", "victronenergy__dbus-recorder__battery.csv"),
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
        self.bridge_env: dict[str, str] = {}
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
        """Starts the GX broker (when stopped) and the simulated GX replaying `system` (a
        key of SYSTEMS) into it, without value variation so that states can be compared
        with the capture. Returns once the GX's retained Serial is on the broker, as it is
        on a real GX before the bridge connects."""
        if not self.gx_broker.running():
            self.gx_broker.start()
        argv = [str(self.env.binary), "simulate", "--broker", self.gx_broker.address,
                "--capture", SYSTEMS[system][0], "--no-vary"]
        if self.lan is not None:
            argv = self.lan.in_gx(argv)
        self.simulator = Service("simulator", argv, self.dir / "simulator.log", stdin_pipe=True)
        self.simulator.start()
        host, port = self.gx_broker.address.rsplit(":", 1)

        def serial_retained() -> bool:
            result = subprocess.run(
                ["mosquitto_sub", "-h", host, "-p", port, "-t", "N/+/system/0/Serial",
                 "-C", "1", "-W", "1"], capture_output=True, timeout=5)
            return result.returncode == 0

        wait_until(serial_retained, 20, 0.2, "the simulated GX's retained Serial")

    def simulator_command(self, line: str) -> None:
        """Sends one control line to the simulator, such as `set battery/275/Soc 55.5`."""
        self.simulator.send_line(line)

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
        """Starts the bridge with `extra` flags and the variables in self.bridge_env."""
        self.bridge = Service("bridge", self.bridge_argv(*extra), self.dir / "bridge.log",
                              env={"PATH": "/usr/bin:/bin", "RUST_BACKTRACE": "1",
                                   **self.bridge_env})
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
