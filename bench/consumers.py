"""The simulated GX, the three consumers of its stream, and a $SYS monitor per broker.

Consumers: `mosquitto_sub` (the broker's own client, output to /dev/null), the bridge
(`roamcore-victron run`) and the peer (`victron-mqtt` driven by peer.py as Home
Assistant's `victron_gx` integration drives it).
"""

import itertools
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from procs import Child, child_env

BOAT_PORTAL = "c0619ab0d0e1"
FIELD = re.compile(r"(\w+)=(\S+)")
CLIENT_NUMBERS = itertools.count(1)


def fields(line):
    """Parse the `key=value` fields of a log line into a dict of strings."""
    return dict(FIELD.findall(line))


class Monitor:
    """An MQTT client that reads a broker's publish counters from $SYS and can publish.

    Mosquitto counts every PUBLISH it sends, including the $SYS messages sent to this
    monitor, so `delivered_to_others` subtracts what the monitor received itself.
    """

    COUNTERS = ("sent", "received", "dropped")

    def __init__(self, port, extra_topics=(), counters=True):
        self.port = port
        self.lock = threading.Lock()
        self.values = {name: 0 for name in self.COUNTERS}
        self.updated_at = 0.0
        self.received = 0
        self.received_before_update = 0
        self.handlers = []
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-monitor-{next(CLIENT_NUMBERS)}")
        self.client.on_message = self._on_message
        connected = threading.Event()
        self.client.on_connect = lambda *args: connected.set()
        self.client.connect("127.0.0.1", port, keepalive=60)
        self.client.loop_start()
        if not connected.wait(5):
            raise TimeoutError(f"monitor could not connect to 127.0.0.1:{port}")
        topics = [(f"$SYS/broker/publish/messages/{name}", 0) for name in self.COUNTERS] if counters else []
        topics += [(topic, 0) for topic in extra_topics]
        if topics:
            subscribed = threading.Event()
            self.client.on_subscribe = lambda *args: subscribed.set()
            self.client.subscribe(topics)
            if not subscribed.wait(5):
                raise TimeoutError(f"monitor subscription on 127.0.0.1:{port} was not acknowledged")

    def _on_message(self, _client, _userdata, message):
        now = time.monotonic()
        if message.topic.startswith("$SYS/"):
            name = message.topic.rsplit("/", 1)[1]
            with self.lock:
                if name == "sent":
                    # The value was computed before this batch went out.
                    self.received_before_update = self.received
                    self.updated_at = now
                self.values[name] = int(message.payload)
                self.received += 1
            return
        with self.lock:
            self.received += 1
        for handler in self.handlers:
            handler(now, message)

    def counters(self):
        with self.lock:
            return dict(self.values), self.updated_at, self.received_before_update

    def wait_for_update(self, after, timeout=5.0):
        """Wait for a $SYS update that arrived after `after` and return the counters, with
        `delivered_to_others` = messages sent to clients other than this monitor and
        `updated_at` = when the update arrived."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            values, updated_at, own = self.counters()
            if updated_at > after:
                # Mosquitto publishes the dropped counter only when it changes, so wait a
                # moment for it.
                time.sleep(0.05)
                values, _, own = self.counters()
                values["delivered_to_others"] = values["sent"] - own
                values["updated_at"] = updated_at
                return values
            time.sleep(0.05)
        raise TimeoutError(f"no $SYS update from the broker on port {self.port} within {timeout} s")

    def wait_until_settled(self, after, timeout=4.0):
        """Return the counters once two $SYS updates in a row, both after `after`, show
        nothing more sent to other clients, or the latest ones after `timeout`. An empty
        socket does not prove that the broker is done, because a broker that the kernel
        did not schedule may still have messages queued for the consumer."""
        deadline = time.monotonic() + timeout
        previous = self.wait_for_update(after)
        while time.monotonic() < deadline:
            current = self.wait_for_update(previous["updated_at"])
            if current["delivered_to_others"] == previous["delivered_to_others"]:
                return current
            previous = current
        return previous

    def publish(self, topic, payload, qos=0):
        self.client.publish(topic, payload, qos=qos)

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()


class Simulator(Child):
    """`roamcore-victron simulate`, controlled through standard input."""

    def __init__(self, binary, broker, rate="natural", capture="boat", seed=1, vary=True):
        argv = [str(binary), "simulate", "--broker", broker.address, "--capture", str(capture),
                "--rate", str(rate), "--seed", str(seed)]
        if not vary:
            argv.append("--no-vary")
        super().__init__(f"simulate-{broker.name}", argv, stdin=True)
        line = self.output.wait_for(lambda l: "simulated GX connected" in l, 10)
        if line is None:
            raise RuntimeError(f"the simulated GX did not connect: {self.output.snapshot()[-5:]}")

    def published(self, timeout=10.0):
        """Return the simulator's count of published messages, requested now."""
        asked = time.monotonic()
        self.send("status")
        line = self.output.wait_for(lambda l: " status " in l and "published=" in l, timeout, after=asked)
        if line is None:
            raise TimeoutError(f"the simulated GX did not respond to 'status' within {timeout} s")
        return int(fields(line)["published"])

    def freeze(self):
        self.send("freeze")


class Bridge(Child):
    """`roamcore-victron run` between a GX broker and a Home Assistant broker."""

    def __init__(self, binary, gx_port, ha_broker, no_throttle=False, name="bridge"):
        self.data_dir = tempfile.mkdtemp(prefix="roamcore-bench-data-")
        # An explicit, empty options file, so no /data/options.json on this machine counts.
        options = Path(self.data_dir) / "options.json"
        options.write_text("{}\n")
        argv = [str(binary), "run", "--gx", f"127.0.0.1:{gx_port}", "--scan", "false",
                "--ha-broker", ha_broker.address, "--data-dir", self.data_dir,
                "--options", str(options)]
        if no_throttle:
            argv.append("--no-throttle")
        # Each bridge gets its own health file: the default path in /tmp is shared.
        env = child_env({"ROAMCORE_STATS_EVERY": "1",
                         "ROAMCORE_HEALTH_FILE": str(Path(self.data_dir) / "health.json")})
        super().__init__(name, argv, env=env)

    def wait_connected(self, timeout=10.0):
        line = self.output.wait_for(lambda l: "status=connected" in l, timeout)
        if line is None:
            raise RuntimeError(f"the bridge did not connect: {self.output.snapshot()[-5:]}")

    def counters(self):
        """Return the counters of the latest `stats` or shutdown line (gx_messages,
        ha_published) as integers."""
        for _, line in reversed(self.output.snapshot()):
            if "gx_messages=" in line:
                values = fields(line)
                return {key: int(values[key]) for key in ("gx_messages", "ha_published")}
        return {"gx_messages": 0, "ha_published": 0}

    def stop(self, timeout=5.0):
        super().stop(timeout)
        self.output.wait_for(lambda l: "shutting down" in l, 1.0)
        shutil.rmtree(self.data_dir, ignore_errors=True)


class Peer(Child):
    """victron-mqtt run by peer.py, which prints its counters every half second."""

    def __init__(self, python, gx_port, name="peer"):
        script = Path(__file__).with_name("peer.py")
        super().__init__(name, [str(python), str(script), "--port", str(gx_port)])

    def wait_connected(self, timeout=30.0):
        line = self.output.wait_for(lambda l: l.startswith("ready"), timeout)
        if line is None:
            raise RuntimeError(f"victron-mqtt did not connect: {self.output.snapshot()[-8:]}")

    def counters(self):
        for _, line in reversed(self.output.snapshot()):
            if line.startswith(("counters", "final")):
                values = fields(line)
                return {key: int(values[key]) for key in ("handled", "updates", "metrics")}
        return {"handled": 0, "updates": 0, "metrics": 0}

    def stop(self, timeout=5.0):
        super().stop(timeout)
        self.output.wait_for(lambda l: l.startswith("final"), 1.0)


class Sub(Child):
    """`mosquitto_sub -t 'N/#'` with its output thrown away, as the broker's own floor."""

    def __init__(self, gx_port, name="mosquitto_sub"):
        argv = ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(gx_port), "-t", "N/#", "-i", f"bench-sub-{gx_port}"]
        self.name = name
        self.argv = argv
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, env=child_env())
        self.pid = self.proc.pid
        self.output = None


def keepalive(monitor, portal=BOAT_PORTAL, full=True):
    """Send a keepalive for consumers that do not send their own (mosquitto_sub)."""
    payload = "" if full else '{"keepalive-options": ["suppress-republish"]}'
    monitor.publish(f"R/{portal}/keepalive", payload)


def python_executable():
    return sys.executable
