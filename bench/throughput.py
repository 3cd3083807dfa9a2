"""Throughput ceiling: each consumer alone on a fresh broker, fed the boat capture at a
fixed rate (measurements round-robin, each a new value) or as fast as the broker takes it.

A step, for one consumer and one rate:
1. start a Mosquitto, a $SYS monitor, the simulated GX at the rate, then the consumer.
   The stream starts when the consumer's keepalive reaches the simulator;
2. after a warm-up, measure a window: the simulator's published count, the consumer's
   CPU time, and every 0.2 s its RSS and the bytes queued in the kernel between the
   broker and the consumer (the lag);
3. freeze the simulator, wait until the broker has read what the simulator sent (the
   broker's backlog) and the queue to the consumer is empty (the consumer's drain
   time), wait until the broker's $SYS counters show it sent nothing more, and read
   what it sent and dropped;
4. stop the consumer and read what it handled.

The consumer kept up when the broker dropped nothing for it, it handled everything the
broker delivered, and its queue drained within 1 s of the broker's backlog. The bridge and the
peer count what they handle. For mosquitto_sub, reading its socket is handling. A stream below 95 %
of the requested rate is noted as stream-limited, not held against the consumer: on two
cores the simulator, the broker and the consumer share the machine, and the rate kept
up with is the rate actually streamed.
"""

import time

from consumers import Bridge, Monitor, Peer, Simulator, Sub, keepalive
from procs import Broker, queued_bytes

SAMPLE_EVERY = 0.2
DRAIN_LIMIT = 5.0
DRAIN_OK = 1.0
HANDLED_TOLERANCE = 20


def start_consumer(ctx, kind, gx, monitor, brokers):
    if kind == "bridge":
        ha = Broker("ha")
        brokers.append(ha)
        consumer = Bridge(ctx.binary, gx.port, ha)
        consumer.wait_connected()
    elif kind == "peer":
        consumer = Peer(ctx.python, gx.port)
        consumer.wait_connected()
    else:
        consumer = Sub(gx.port)
        # mosquitto_sub sends no keepalive, so request values on its behalf once it has
        # subscribed. Values then flow for 60 s, longer than any step.
        time.sleep(0.3)
        keepalive(monitor)
    return consumer


def wait_drained(consumer, simulator, broker_port):
    """Wait until nothing is queued from the simulator to the broker nor from the broker
    to the consumer for 0.3 s in a row. Return the seconds until the broker had read
    everything the simulator sent, and the seconds the consumer needed after that.

    The first figure is the broker's own backlog: a broker short of CPU time leaves the
    simulator's messages in its socket, and the consumer cannot receive them any sooner.
    Only the second figure is the consumer's lag."""
    started = time.monotonic()
    inbound_empty_at = None
    empty_since = None
    while time.monotonic() - started < DRAIN_LIMIT:
        now = time.monotonic()
        inbound = queued_bytes(simulator.pid, broker_port, towards_broker=True)
        outbound = queued_bytes(consumer.pid, broker_port)
        # The simulator may still flush messages it queued before the freeze.
        if inbound:
            inbound_empty_at = None
        elif inbound_empty_at is None:
            inbound_empty_at = now
        if inbound == 0 and outbound == 0:
            empty_since = empty_since or now
            if now - empty_since >= 0.3:
                broker_backlog = inbound_empty_at - started
                return broker_backlog, max(0.0, empty_since - inbound_empty_at)
        else:
            empty_since = None
        time.sleep(0.02)
    broker_backlog = (inbound_empty_at or time.monotonic()) - started
    return broker_backlog, DRAIN_LIMIT - broker_backlog


def handled_count(kind, consumer, delivered):
    if kind == "bridge":
        return consumer.counters()["gx_messages"]
    if kind == "peer":
        return consumer.counters()["handled"]
    # For mosquitto_sub, what left the kernel queue was read.
    return delivered


def run_step(ctx, kind, rate, window, warmup):
    brokers = []
    gx = Broker("gx")
    brokers.append(gx)
    monitor = Monitor(gx.port)
    simulator = Simulator(ctx.binary, gx, rate=rate)
    consumer = None
    try:
        consumer = start_consumer(ctx, kind, gx, monitor, brokers)
        time.sleep(warmup)

        published_start = simulator.published()
        cpu_start = consumer.cpu_seconds()
        started = time.monotonic()
        samples = []
        while time.monotonic() - started < window:
            samples.append((time.monotonic() - started, queued_bytes(consumer.pid, gx.port), consumer.rss_bytes()))
            time.sleep(SAMPLE_EVERY)
        cpu_end = consumer.cpu_seconds()
        elapsed = time.monotonic() - started
        published_end = simulator.published()

        simulator.freeze()
        frozen_at = time.monotonic()
        broker_backlog, drain = wait_drained(consumer, simulator, gx.port)
        broker = monitor.wait_until_settled(after=frozen_at + broker_backlog + drain + 0.05)
        consumer.stop()
        # Everything the broker sent went to the consumer, except a few keepalive
        # requests that went to the simulator.
        delivered = broker["delivered_to_others"]
        handled = handled_count(kind, consumer, delivered)
        published_total = broker["received"]
    finally:
        if consumer is not None:
            consumer.stop()
        simulator.stop()
        monitor.close()
        for each in brokers:
            each.stop()

    stream_rate = (published_end - published_start) / elapsed
    # The share of the stream routed to this consumer (bridge and peer subscribe to fewer
    # topics than N/#), measured over the whole step.
    routed = min(1.0, delivered / published_total) if published_total else 0.0
    window_messages = (published_end - published_start) * routed
    cpu = cpu_end - cpu_start
    thirds = max(1, len(samples) // 3)
    first_lag = max(s[1] for s in samples[:thirds])
    last_lag = max(s[1] for s in samples[-thirds:])
    result = {
        "consumer": kind,
        "rate": rate,
        "stream_rate": stream_rate,
        "handled_rate": stream_rate * routed,
        "routed": routed,
        "window_s": elapsed,
        "cpu_s": cpu,
        "cpu_s_per_100k": cpu / window_messages * 1e5 if window_messages else None,
        "cpu_share": cpu / elapsed,
        "rss_start": samples[0][2],
        "rss_end": samples[-1][2],
        "rss_max": max(s[2] for s in samples),
        "lag_bytes_first_third": first_lag,
        "lag_bytes_last_third": last_lag,
        "lag_bytes_max": max(s[1] for s in samples),
        "drain_s": drain,
        "broker_backlog_s": broker_backlog,
        "dropped": broker["dropped"],
        "delivered": delivered,
        "handled": handled,
    }
    reasons = []
    if broker["dropped"]:
        reasons.append(f"broker dropped {broker['dropped']}")
    if handled < delivered - HANDLED_TOLERANCE:
        reasons.append(f"handled {handled} of {delivered}")
    if drain > DRAIN_OK:
        reasons.append(f"drain {drain:.1f} s")
    result["kept_up"] = not reasons
    result["why_not"] = ", ".join(reasons)
    result["stream_limited"] = rate != "max" and stream_rate < 0.95 * float(rate)
    return result


def format_step(result):
    verdict = "kept up" if result["kept_up"] else f"fell behind ({result['why_not']})"
    if result["stream_limited"]:
        verdict += ", stream-limited"
    per_100k = result["cpu_s_per_100k"]
    per_100k_text = f"{per_100k:.2f}" if per_100k is not None else "-"
    return (
        f"  {result['consumer']:<13} rate {str(result['rate']):>6}: stream {result['stream_rate']:>8.0f}/s, "
        f"handled {result['handled_rate']:>8.0f}/s, CPU {result['cpu_share'] * 100:5.1f} %, "
        f"{per_100k_text} CPU s/100k, RSS {result['rss_max'] / 2**20:.1f} MiB, {verdict}"
    )


def ceiling(results):
    """Return the step that stands for a consumer's ceiling. That is the median-rate
    step among the steps at the broker's maximum that kept up, because that maximum
    moves with the machine's load. Without such steps, it is the fixed-rate step with
    the highest rate that kept up."""
    at_max = sorted((r for r in results if r["rate"] == "max" and r["kept_up"]), key=lambda r: r["handled_rate"])
    if at_max:
        return at_max[(len(at_max) - 1) // 2]
    best = None
    for result in results:
        if result["kept_up"] and (best is None or result["handled_rate"] > best["handled_rate"]):
            best = result
    return best
