"""Larger installations made from the boat capture, for the growth measurement.

A capture scaled by N keeps the GX's own services once (system/0, settings/0 and the
other non-device services) and contains N copies of every device service (battery monitors,
solar charger, DC load, tanks, temperature sensors, switches, VE.Bus, GPS). Copy k gets
device instance `instance + 1000 * k` and its own D-Bus service name. All copies stay
under the boat's one portal id, so the bridge adopts them all, as it would a bigger van.
system/0 is taken from the capture as it is, so its totals describe the original boat.
"""

import json
from pathlib import Path

BOAT_LOG = "fixtures/captures/sbender9__signalk-venus-plugin__test_vrm-test.log"

# Services of the GX itself, published once per GX whatever is connected to it.
GX_SERVICES = {"system", "settings", "platform", "logger", "adc", "digitalinputs", "fronius",
               "modbusclient", "vecan"}


def scaled_copy(line, copy):
    """Return the JSON line of copy number `copy` of a device message, or None for a
    message of the GX's own services."""
    record = json.loads(line)
    message = record.get("message", record)
    parts = message.get("topic", "").split("/", 4)
    if len(parts) < 5 or parts[2] in GX_SERVICES:
        return None
    instance = str(int(parts[3]) + 1000 * copy)
    parts[3] = instance
    message["topic"] = "/".join(parts)
    message["instanceName"] = instance
    if "senderName" in message:
        message["senderName"] = f"{message['senderName']}_copy{copy}"
    if parts[4] == "DeviceInstance":
        message["value"] = int(instance)
    return json.dumps(record, separators=(",", ":"))


def write_scaled(repo, factor, directory):
    """Write the boat capture scaled by `factor` into `directory` and return its path."""
    source = Path(repo) / BOAT_LOG
    lines = [line for line in source.read_text().splitlines() if line.strip()]
    out = [*lines]
    for copy in range(1, factor):
        out += [scaled for scaled in (scaled_copy(line, copy) for line in lines) if scaled]
    path = Path(directory) / f"boat-x{factor}.log"
    path.write_text("\n".join(out) + "\n")
    return path
