#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz targets into fuzz/seeds/<target>/.

The value messages come from the `boat` capture (a real GX running Venus v3.70,
fixtures/captures/sbender9__signalk-venus-plugin__test_vrm-test.log); the rest are
the edge cases the bridge must tolerate. Run it from anywhere; it replaces the seeds.
"""

import hashlib
import json
import pathlib
import shutil

ROOT = pathlib.Path(__file__).resolve().parent
CAPTURE = ROOT.parent / "fixtures/captures/sbender9__signalk-venus-plugin__test_vrm-test.log"
PORTAL = "c0619ab0d0e1"


def capture_messages():
    """Returns (topic, payload bytes) per capture line, as dbus-flashmq publishes them."""
    out = []
    for line in CAPTURE.read_text().splitlines():
        message = json.loads(line)["message"]
        payload = json.dumps({"value": message["value"]}, separators=(",", ":"))
        out.append((message["topic"], payload.encode()))
    return out


EDGE_PAYLOADS = [
    b"",
    b"1",
    b'{"value":null}',
    b'{"value":[]}',
    b'{"value":"12.9"}',
    b'{"value":{"a":1}}',
    b'{"value":NaN}',
    b'{"value":1e999}',
    b'{"value":-0.0}',
    b'{"value":true}',
    b'{"val":1}',
    b"\xff\xfe\xfd",
    b'{"value":77}',
    b'{"value":13.7,"min":0,"max":100}',
    b'{"full-publish-completed-echo":"roamcore-1","value":1700000000}',
]

EDGE_TOPICS = [
    f"N/{PORTAL}/heartbeat",
    f"N/{PORTAL}/full_publish_completed",
    f"N/{PORTAL}/keepalive",
    f"N/{PORTAL}/system/0/Serial",
    f"N/{PORTAL}/battery/vecan0/Dc/0/Voltage",
    f"N/{PORTAL}/tank/20/",
    f"N/{PORTAL}//0/Soc",
    "N/",
    f"R/{PORTAL}/keepalive",
    f"N/{PORTAL}/system/0/" + "x" * 600,
]


def write(target, data):
    folder = ROOT / "seeds" / target
    folder.mkdir(parents=True, exist_ok=True)
    (folder / hashlib.sha1(data).hexdigest()).write_bytes(data)


def main():
    shutil.rmtree(ROOT / "seeds", ignore_errors=True)
    messages = capture_messages()

    for topic in sorted({topic for topic, _ in messages})[::40] + EDGE_TOPICS:
        write("gx_topic", topic.encode())
    for payload in sorted({payload for _, payload in messages})[::25] + EDGE_PAYLOADS:
        write("gx_payload", payload)

    # One seed per device: its full publish, then a few edge values on its paths.
    by_device = {}
    for topic, payload in messages:
        parts = topic.split("/", 4)
        if len(parts) == 5:
            by_device.setdefault((parts[2], parts[3]), []).append((topic, payload))
    system = [m for m in messages if "/system/0/" in m[0]]
    for (service, instance), device in sorted(by_device.items()):
        lines = [b"!b"]
        lines += [t.encode() + b"\t" + p for t, p in device[:60]]
        lines += [t.encode() + b"\t" + p for t, p in system[:20]]
        lines.append(b"!e")
        for (topic, _), edge in zip(device, EDGE_PAYLOADS):
            lines.append(topic.encode() + b"\t" + edge)
        write("gx_messages", b"\n".join(lines))


if __name__ == "__main__":
    main()
