"""Realistic load, growth and idle wake-ups, all in one stretch of time.

Every consumer gets its own GX broker and simulated GX publishing at the capture's
natural rate (the boat: about 28 value messages per second), so no consumer's keepalive
changes what another receives. The bridges also get their own Home Assistant broker.
The sets are the bridge, the peer and mosquitto_sub on the boat, the bridge and the peer
on the boat scaled 4x and 16x (see captures.py), and one bridge whose GX address has
nothing listening, for idle wake-ups. Figures are taken over a window that starts after
the first full publish.
"""

import time

from consumers import BOAT_PORTAL, Bridge, Monitor, Peer, Simulator, Sub, keepalive
from procs import Broker, free_port

STATE_TOPIC = "roamcore/victron/+/state"


class ConsumerSet:
    """One consumer with its own brokers and simulated GX."""

    def __init__(self, ctx, kind, scale, capture):
        self.kind = kind
        self.scale = scale
        self.brokers = []
        self.monitors = []
        self.simulator = None
        self.ha_states = 0
        self.gx = self._broker("gx")
        self.gx_monitor = self._monitor(self.gx.port)
        self.simulator = Simulator(ctx.binary, self.gx, rate="natural", capture=capture)
        if kind == "bridge":
            ha = self._broker("ha")
            self.ha_monitor = self._monitor(ha.port, extra_topics=[STATE_TOPIC])
            self.ha_monitor.handlers.append(self._count_state)
            self.consumer = Bridge(ctx.binary, self.gx.port, ha)
        elif kind == "peer":
            self.consumer = Peer(ctx.python, self.gx.port)
        else:
            self.consumer = Sub(self.gx.port)
            time.sleep(0.3)
            keepalive(self.gx_monitor)

    def _broker(self, name):
        broker = Broker(name)
        self.brokers.append(broker)
        return broker

    def _monitor(self, port, extra_topics=()):
        monitor = Monitor(port, extra_topics)
        self.monitors.append(monitor)
        return monitor

    def _count_state(self, _at, _message):
        self.ha_states += 1

    @property
    def label(self):
        return f"{self.kind} {self.scale}"

    def wait_ready(self):
        if self.kind in ("bridge", "peer"):
            self.consumer.wait_connected(timeout=60)

    def refresh_keepalive(self):
        """Keep values flowing to mosquitto_sub, which sends no keepalive of its own."""
        if self.kind == "mosquitto_sub":
            keepalive(self.gx_monitor, BOAT_PORTAL, full=False)

    def sample(self):
        process = self.consumer
        values = {
            "cpu_s": process.cpu_seconds(),
            "thread_cpu": process.thread_cpu_seconds(),
            "rss": process.rss_bytes(),
            "switches": process.context_switches(),
            "ha_states": self.ha_states,
        }
        if self.kind in ("bridge", "peer"):
            values.update(process.counters())
        else:
            counters, _, own = self.gx_monitor.counters()
            values["delivered"] = counters["sent"] - own
        return values

    def stop(self):
        self.consumer.stop()
        self.simulator.stop()
        for monitor in self.monitors:
            monitor.close()
        for broker in self.brokers:
            broker.stop()


class IdleBridge:
    """A bridge whose GX address has nothing listening, next to a live HA broker."""

    def __init__(self, ctx):
        self.kind = "bridge"
        self.label = "bridge, no GX"
        self.ha = Broker("ha-idle")
        self.consumer = Bridge(ctx.binary, free_port(), self.ha, name="bridge-idle")

    def sample(self):
        return {
            "cpu_s": self.consumer.cpu_seconds(),
            "thread_cpu": self.consumer.thread_cpu_seconds(),
            "rss": self.consumer.rss_bytes(),
            "switches": self.consumer.context_switches(),
            **self.consumer.counters(),
        }

    def stop(self):
        self.consumer.stop()
        self.ha.stop()


def per_minute(start, end, key, minutes):
    if key not in start or key not in end:
        return None
    return (end[key] - start[key]) / minutes


def summarise(name, samples, window_start, window_end):
    """Reduce one set's samples to the figures reported for the window."""
    inside = [(at, s) for at, s in samples if window_start <= at <= window_end]
    (t0, first), (t1, last) = inside[0], inside[-1]
    seconds = t1 - t0
    minutes = seconds / 60
    rss = [s["rss"] for _, s in inside]
    (precise_first, threads_first), (precise_last, threads_last) = first["thread_cpu"], last["thread_cpu"]
    if threads_first == threads_last:
        cpu, source = precise_last - precise_first, "schedstat"
    else:
        cpu, source = last["cpu_s"] - first["cpu_s"], "stat"
    summary = {
        "set": name,
        "window_s": seconds,
        "cpu_percent": cpu / seconds * 100,
        "cpu_s": cpu,
        "cpu_source": source,
        "cpu_s_from_stat": last["cpu_s"] - first["cpu_s"],
        "rss_first": first["rss"],
        "rss_last": last["rss"],
        "rss_max": max(rss),
        "switches_per_s": (last["switches"] - first["switches"]) / seconds,
    }
    for key, out in [("gx_messages", "in_per_min"), ("handled", "in_per_min"), ("delivered", "in_per_min"),
                     ("ha_published", "out_per_min"), ("updates", "out_per_min"),
                     ("ha_states", "states_per_min")]:
        value = per_minute(first, last, key, minutes)
        if value is not None:
            summary[out] = value
    return summary


def run_steady(ctx, duration, window_start, idle_seconds, captures, log):
    """Run every set for `duration` seconds and summarise the window from `window_start`
    to the end. The idle bridge's window is `idle_seconds` long from `window_start`."""
    plan = [("bridge", "1x"), ("peer", "1x"), ("mosquitto_sub", "1x"),
            ("bridge", "4x"), ("peer", "4x"), ("bridge", "16x"), ("peer", "16x")]
    sets = []
    idle = None
    try:
        for kind, scale in plan:
            sets.append(ConsumerSet(ctx, kind, scale, captures[scale]))
        idle = IdleBridge(ctx)
        for each in sets:
            each.wait_ready()
        started = time.monotonic()
        log(f"  {len(sets)} consumers and an idle bridge running for {duration} s")

        samples = {each.label: [] for each in sets}
        samples[idle.label] = []
        next_keepalive = started + 25
        while True:
            now = time.monotonic()
            at = now - started
            for each in sets:
                samples[each.label].append((at, each.sample()))
            samples[idle.label].append((at, idle.sample()))
            if now >= next_keepalive:
                for each in sets:
                    each.refresh_keepalive()
                next_keepalive += 25
            if at >= duration:
                break
            time.sleep(min(1.0, duration - at + 0.01))
    finally:
        for each in sets:
            each.stop()
        if idle is not None:
            idle.stop()

    results = {}
    for label, rows in samples.items():
        end = window_start + idle_seconds if label == idle.label else duration
        results[label] = summarise(label, rows, window_start, end + 0.5)
    return results
