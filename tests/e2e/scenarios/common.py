"""Helpers shared by the scenarios."""

import contextlib
import subprocess

from harness.stack import Environment, Stack


@contextlib.contextmanager
def running_stack(env: Environment, name: str, **kwargs):
    """A fresh Stack named after the scenario, stopped whatever happens."""
    stack = Stack(env, name, **kwargs)
    try:
        yield stack
    finally:
        stack.stop_all()


def publish(broker_address: str, topic: str, payload: str, retain: bool = True) -> None:
    """Publishes one message with mosquitto_pub (QoS 1)."""
    host, port = broker_address.rsplit(":", 1)
    argv = ["mosquitto_pub", "-h", host, "-p", port, "-q", "1", "-t", topic, "-m", payload]
    if retain:
        argv.append("-r")
    subprocess.run(argv, check=True, timeout=10)


def mqtt_warnings(records: list[dict]) -> list[str]:
    """WARNING or worse records of Home Assistant's log that concern MQTT. The one
    warning every start in a loopback-only namespace logs is left out."""
    benign = ("does not have any enabled IPv4 addresses",)
    found = []
    for record in records:
        text = record["text"]
        if any(b in text for b in benign):
            continue
        if "mqtt" in record["logger"] or "mqtt" in text.lower():
            found.append(text[:1500])
    return found
