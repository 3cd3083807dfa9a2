"""A stand-in GX for the end-to-end tests while `roamcore-victron simulate` is not built:
it replays the last value of every topic of a real capture with dbus-flashmq behaviour.

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


def main() -> None:
    host, port = sys.argv[1].rsplit(":", 1)
    values = read_capture(Path(sys.argv[2]))
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
