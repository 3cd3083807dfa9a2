"""A stand-in GX for the end-to-end tests while `roamcore-victron simulate` is not built:
it replays the last value of every topic of a real capture with dbus-flashmq behaviour.

Two capture formats are read: JSON lines of GX MQTT messages (`*.log`), and Victron's
dbus-recorder recordings of one D-Bus service (`*.csv`), whose initial state is published
with the system/0 aggregates that the GX's systemcalc would derive from one battery monitor.

Behaviour, as documented for dbus-flashmq (Venus OS 3.20 and later):
- `N/<portal>/system/0/Serial` is the only retained message.
- A keepalive on `R/<portal>/keepalive` marks the GX alive for 60 s. Unless its payload
  contains `suppress-republish`, every value is published again (not retained) and
  `N/<portal>/full_publish_completed` follows, echoing a `full-publish-completed-echo`
  token when one was requested.
- While alive, `N/<portal>/heartbeat` is published every 3 s.
Publishing `{"value": x}` to `e2e/gx/set/<path>` changes the value of `N/<portal>/<path>`
and publishes it, as a change on the GX would.

Usage: python3 gx_mock.py HOST:PORT CAPTURE_FILE
"""

import json
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness.mqtt import connect_with_retry  # noqa: E402

ALIVE_FOR_S = 60
HEARTBEAT_EVERY_S = 3
SET_PREFIX = "e2e/gx/set/"


def read_capture(path: Path) -> dict[str, object]:
    """The last value of each topic in a JSON-lines capture of GX MQTT messages."""
    values: dict[str, object] = {}
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        message = json.loads(line)["message"]
        values[message["topic"]] = message["value"]
    return values


# Portal id used for dbus-recorder recordings, which have none.
RECORDING_PORTAL_ID = "c0619ab00702"


def dbus_value(kind: str, text: str):
    if kind == "ARRAY" or text == "[]":
        return None  # an empty D-Bus array is Venus OS's invalid value, null over MQTT
    if kind == "STRING":
        return text
    if kind in ("DOUBLE", "FLOAT"):
        return float(text)
    return int(text)


def read_battery_recording(path: Path) -> dict[str, object]:
    """Topics of a dbus-recorder recording of one battery monitor, plus the system/0
    paths a GX computes from it and leaves null when nothing provides them."""
    lines = path.read_text().splitlines()
    service_type = lines[0].split(".")[2]

    state = {}
    for line in lines[1:]:
        if not line.strip():
            break  # the initial state ends at the first blank line
        fields = line.split("\t")
        state[fields[0].lstrip("/")] = dbus_value(fields[1], fields[2])
    instance = state["DeviceInstance"]
    prefix = f"N/{RECORDING_PORTAL_ID}"
    values = {f"{prefix}/{service_type}/{instance}/{p}": v for p, v in state.items()}

    # NOTE: systemcalc's own rule for Dc/Battery/State was not checked; this uses the sign
    # of the battery power with a 30 W dead band (0 idle, 1 charging, 2 discharging).
    power = state.get("Dc/0/Power")
    if power is None:
        battery_state = None
    elif power > 30:
        battery_state = 1
    elif power < -30:
        battery_state = 2
    else:
        battery_state = 0

    system = {
        "Serial": RECORDING_PORTAL_ID,
        "ActiveBatteryService": f"com.victronenergy.{service_type}/{instance}",
        "Dc/Battery/Soc": state.get("Soc"),
        "Dc/Battery/Voltage": state.get("Dc/0/Voltage"),
        "Dc/Battery/Current": state.get("Dc/0/Current"),
        "Dc/Battery/Power": power,
        "Dc/Battery/Temperature": state.get("Dc/0/Temperature"),
        "Dc/Battery/ConsumedAmphours": state.get("ConsumedAmphours"),
        "Dc/Battery/TimeToGo": state.get("TimeToGo"),
        "Dc/Battery/State": battery_state,
        "Dc/Pv/Power": None,
        "Dc/System/Power": None,
        "Dc/Alternator/Power": None,
        "Ac/ActiveIn/Source": None,
        "Ac/In/NumberOfAcInputs": 0,
    }

    for phase in ("L1", "L2", "L3"):
        system[f"Ac/ActiveIn/{phase}/Power"] = None
        system[f"Ac/ConsumptionOnOutput/{phase}/Power"] = None
    values.update({f"{prefix}/system/0/{p}": v for p, v in system.items()})
    return values


def main() -> None:
    host, port = sys.argv[1].rsplit(":", 1)
    capture = Path(sys.argv[2])
    if capture.suffix == ".csv":
        values = read_battery_recording(capture)
    else:
        values = read_capture(capture)
    serial_topic = next(t for t in values if t.endswith("/system/0/Serial"))
    portal = serial_topic.split("/")[1]
    state = {"alive_until": 0.0}
    lock = threading.Lock()

    def payload(value) -> bytes:
        return json.dumps({"value": value}).encode()

    def on_message(topic: str, body: bytes) -> None:
        if topic == f"R/{portal}/keepalive":
            text = body.decode(errors="replace")
            with lock:
                state["alive_until"] = time.monotonic() + ALIVE_FOR_S
            if "suppress-republish" in text:
                return
            echo = None
            if "full-publish-completed-echo" in text:
                try:
                    for option in json.loads(text).get("keepalive-options", []):
                        if isinstance(option, dict):
                            echo = option.get("full-publish-completed-echo", echo)
                except (ValueError, AttributeError):
                    pass
            with lock:
                snapshot = dict(values)
            for item_topic, value in snapshot.items():
                if item_topic != serial_topic:
                    client.publish(item_topic, payload(value))
            completed = {"value": int(time.time())}
            if echo is not None:
                completed["full-publish-completed-echo"] = echo
            client.publish(f"N/{portal}/full_publish_completed", json.dumps(completed).encode())
        elif topic.startswith(SET_PREFIX):
            item_topic = f"N/{portal}/{topic[len(SET_PREFIX):]}"
            value = json.loads(body)["value"]
            with lock:
                values[item_topic] = value
                alive = time.monotonic() < state["alive_until"]
            if alive:
                client.publish(item_topic, payload(value))

    client = connect_with_retry(host, int(port), f"gx-mock-{portal}", on_message)
    client.publish(serial_topic, payload(values[serial_topic]), retain=True)
    client.subscribe(f"R/{portal}/keepalive")
    client.subscribe(SET_PREFIX + "#")
    print(f"GX mock for portal {portal}: {len(values)} topics from {sys.argv[2]}", flush=True)

    while not client.closed.is_set():
        with lock:
            alive = time.monotonic() < state["alive_until"]
        if alive:
            client.publish(f"N/{portal}/heartbeat", payload(int(time.time())))
        time.sleep(HEARTBEAT_EVERY_S)
    sys.exit("GX mock: connection to the broker lost")


if __name__ == "__main__":
    main()
