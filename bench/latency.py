"""Latency from a GX publish to the state on Home Assistant's broker, throttling off.

The simulated GX publishes the boat at its natural rate as background. The benchmark
then publishes marker values on the GX broker as the GX would
(`N/<portal>/system/0/Dc/Battery/ConsumedAmphours`, a path the simulator never varies)
and times each until `roamcore/victron/battery_consumed_ah/state` carries it on Home
Assistant's broker. A subscriber on the GX broker times the same markers there, which
is the cost of one broker hop for comparison. Both clocks are this process's.
"""

import json
import statistics
import threading
import time

from consumers import BOAT_PORTAL, Bridge, Monitor, Simulator
from procs import Broker

MARKER_TOPIC = f"N/{BOAT_PORTAL}/system/0/Dc/Battery/ConsumedAmphours"
STATE_TOPIC = "roamcore/victron/battery_consumed_ah/state"


def marker_value(index):
    """Distinct whole numbers, so the bridge's rounding to 0.1 Ah keeps them apart."""
    return -100.0 - index


def percentile(values, fraction):
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


class Arrivals:
    """Arrival times of marker values on one topic."""

    def __init__(self, topic):
        self.topic = topic
        self.times = {}
        self.lock = threading.Lock()

    def __call__(self, at, message):
        if message.topic != self.topic:
            return
        text = message.payload.decode("utf-8", "replace")
        try:
            value = json.loads(text)
            value = value["value"] if isinstance(value, dict) else value
            key = round(float(value), 1)
        except (ValueError, TypeError, KeyError):
            return
        with self.lock:
            self.times.setdefault(key, at)

    def get(self, key):
        with self.lock:
            return self.times.get(key)


def run_latency(ctx, markers, spacing, log):
    brokers = []
    monitors = []
    simulator = bridge = None
    try:
        gx = Broker("gx-latency")
        ha = Broker("ha-latency")
        brokers += [gx, ha]
        simulator = Simulator(ctx.binary, gx, rate="natural")
        bridge = Bridge(ctx.binary, gx.port, ha, no_throttle=True, name="bridge-latency")
        bridge.wait_connected()

        on_gx = Arrivals(MARKER_TOPIC)
        on_ha = Arrivals(STATE_TOPIC)
        # The publisher subscribes to nothing and each observer only receives. A client
        # that publishes and receives on one connection makes the broker's writes to it
        # wait for ACKs that ride on its next publish (Nagle's algorithm), which would
        # add up to the marker spacing to the hop time.
        publisher = Monitor(gx.port, counters=False)
        gx_observer = Monitor(gx.port, extra_topics=[MARKER_TOPIC], counters=False)
        ha_observer = Monitor(ha.port, extra_topics=[STATE_TOPIC], counters=False)
        monitors += [publisher, gx_observer, ha_observer]
        gx_observer.handlers.append(on_gx)
        ha_observer.handlers.append(on_ha)
        time.sleep(1.0)

        sent = {}
        for index in range(markers):
            value = marker_value(index)
            sent[value] = time.monotonic()
            publisher.publish(MARKER_TOPIC, json.dumps({"value": value}))
            time.sleep(spacing)
        time.sleep(1.0)
    finally:
        if bridge is not None:
            bridge.stop()
        if simulator is not None:
            simulator.stop()
        for monitor in monitors:
            monitor.close()
        for broker in brokers:
            broker.stop()

    bridge_ms = []
    hop_ms = []
    for value, at in sent.items():
        arrived = on_ha.get(value)
        if arrived is not None:
            bridge_ms.append((arrived - at) * 1000)
        seen = on_gx.get(value)
        if seen is not None:
            hop_ms.append((seen - at) * 1000)
    if not bridge_ms:
        raise RuntimeError("no marker reached Home Assistant's broker")
    result = {
        "markers": markers,
        "arrived": len(bridge_ms),
        "p50_ms": statistics.median(bridge_ms),
        "p99_ms": percentile(bridge_ms, 0.99),
        "max_ms": max(bridge_ms),
        "hop_p50_ms": statistics.median(hop_ms) if hop_ms else None,
        "hop_p99_ms": percentile(hop_ms, 0.99) if hop_ms else None,
    }
    log(f"  {result['arrived']}/{markers} markers arrived: p50 {result['p50_ms']:.2f} ms, "
        f"p99 {result['p99_ms']:.2f} ms (one broker hop: p50 {result['hop_p50_ms']:.2f} ms)")
    return result
