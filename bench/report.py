"""The tables printed at the end of a run, as Markdown."""

from throughput import ceiling

MIB = 2**20
COMMON_RATE = 20000
HIGH_RATE = 100000


def fmt(value, digits=2, unit=""):
    if value is None:
        return "-"
    return f"{value:,.{digits}f}{unit}"


def ratio(a, b, digits=2):
    if a is None or b is None or b == 0:
        return "-"
    return f"{a / b:.{digits}f}x"


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def step_at(results, rate):
    for result in results:
        if str(result["rate"]) == str(rate) and result["kept_up"]:
            return result
    return None


def throughput_table(ladders):
    sub, bridge, peer = (ladders.get(k, []) for k in ("mosquitto_sub", "bridge", "peer"))
    best = {name: ceiling(results) for name, results in ladders.items()}
    common = {name: step_at(results, COMMON_RATE) for name, results in ladders.items()}

    def get(mapping, name, key):
        step = mapping.get(name)
        return step[key] if step else None

    def first_failure(results):
        for result in results:
            if not result["kept_up"]:
                return f"{result['rate']}/s: {result['why_not']}"
        return "none"

    rows = []
    kept = {n: get(best, n, "handled_rate") for n in ladders}
    rows.append(["ceiling: rate kept up, msg/s handled", fmt(kept.get("mosquitto_sub"), 0), fmt(kept.get("bridge"), 0),
                 fmt(kept.get("peer"), 0), ratio(kept.get("bridge"), kept.get("mosquitto_sub")),
                 ratio(kept.get("bridge"), kept.get("peer")), ">= 0.8x sub"])
    top = {n: max((r["handled_rate"] for r in results if r["kept_up"]), default=None) for n, results in ladders.items()}
    rows.append(["highest rate kept up in any step, msg/s", fmt(top.get("mosquitto_sub"), 0), fmt(top.get("bridge"), 0),
                 fmt(top.get("peer"), 0), ratio(top.get("bridge"), top.get("mosquitto_sub")),
                 ratio(top.get("bridge"), top.get("peer")), ""])
    stream = {n: get(best, n, "stream_rate") for n in ladders}
    rows.append(["stream rate at the ceiling step, msg/s", fmt(stream.get("mosquitto_sub"), 0),
                 fmt(stream.get("bridge"), 0), fmt(stream.get("peer"), 0), "", "", ""])
    cpu = {n: get(common, n, "cpu_s_per_100k") for n in ladders}
    rows.append([f"CPU s per 100k msgs at {COMMON_RATE:,}/s", fmt(cpu.get("mosquitto_sub")), fmt(cpu.get("bridge")),
                 fmt(cpu.get("peer")), ratio(cpu.get("bridge"), cpu.get("mosquitto_sub")),
                 ratio(cpu.get("bridge"), cpu.get("peer")), "<= 1.5x sub, <= 0.25x peer"])
    high = {name: step_at(results, HIGH_RATE) for name, results in ladders.items()}
    cpu_high = {n: get(high, n, "cpu_s_per_100k") for n in ladders}
    rows.append([f"CPU s per 100k msgs at {HIGH_RATE:,}/s", fmt(cpu_high.get("mosquitto_sub")),
                 fmt(cpu_high.get("bridge")), fmt(cpu_high.get("peer")),
                 ratio(cpu_high.get("bridge"), cpu_high.get("mosquitto_sub")), "", "<= 1.5x sub"])
    cpu_best = {n: get(best, n, "cpu_s_per_100k") for n in ladders}
    rows.append(["CPU s per 100k msgs at the ceiling step", fmt(cpu_best.get("mosquitto_sub")),
                 fmt(cpu_best.get("bridge")), fmt(cpu_best.get("peer")),
                 ratio(cpu_best.get("bridge"), cpu_best.get("mosquitto_sub")), "", ""])
    rss = {n: max((r["rss_max"] for r in results), default=None) for n, results in ladders.items()}
    rows.append(["RSS max over all steps, MiB", fmt(_mib(rss.get("mosquitto_sub"))), fmt(_mib(rss.get("bridge"))),
                 fmt(_mib(rss.get("peer"))), ratio(rss.get("bridge"), rss.get("mosquitto_sub")),
                 ratio(rss.get("bridge"), rss.get("peer")), "<= 0.25x peer"])
    growth = {n: (get(best, n, "rss_end") or 0) - (get(best, n, "rss_start") or 0) if best.get(n) else None
              for n in ladders}
    rows.append(["RSS change over the ceiling step, KiB", fmt(_kib(growth.get("mosquitto_sub")), 0),
                 fmt(_kib(growth.get("bridge")), 0), fmt(_kib(growth.get("peer")), 0), "", "", "flat"])
    rows.append(["first step not kept up", first_failure(sub), first_failure(bridge), first_failure(peer),
                 "", "", ""])
    header = ["Throughput", "mosquitto_sub", "bridge", "victron-mqtt", "bridge/sub", "bridge/peer", "target"]
    return table(header, rows)


def steps_table(ladders):
    rows = []
    for name, results in ladders.items():
        for r in results:
            rows.append([name, r["rate"], fmt(r["stream_rate"], 0), fmt(r["handled_rate"], 0),
                         fmt(r["cpu_share"] * 100, 1), fmt(r["cpu_s_per_100k"]) if r["kept_up"] else "-",
                         fmt(_mib(r["rss_max"]), 1), fmt(r["lag_bytes_max"] / 1024, 0),
                         fmt(r.get("broker_backlog_s"), 2), fmt(r["drain_s"], 2),
                         r["dropped"], _verdict(r)])
    header = ["consumer", "rate", "stream/s", "offered to it/s", "CPU %", "CPU s/100k", "RSS MiB",
              "max lag KiB", "broker backlog s", "drain s", "dropped", "kept up"]
    return table(header, rows)


def steady_table(steady):
    sub, bridge, peer = steady.get("mosquitto_sub 1x"), steady.get("bridge 1x"), steady.get("peer 1x")
    idle = steady.get("bridge, no GX")

    def g(summary, key):
        return summary.get(key) if summary else None

    rows = [
        ["CPU % of one core", fmt(g(sub, "cpu_percent"), 3), fmt(g(bridge, "cpu_percent"), 3),
         fmt(g(peer, "cpu_percent"), 3), ratio(g(bridge, "cpu_percent"), g(peer, "cpu_percent")), "< 0.5 %, ~0.25x peer"],
        ["RSS, MiB (max in window)", fmt(_mib(g(sub, "rss_max"))), fmt(_mib(g(bridge, "rss_max"))),
         fmt(_mib(g(peer, "rss_max"))), ratio(g(bridge, "rss_max"), g(peer, "rss_max")), "< 10 MB"],
        ["RSS change over the window, KiB", fmt(_kib(_delta(sub, "rss")), 0), fmt(_kib(_delta(bridge, "rss")), 0),
         fmt(_kib(_delta(peer, "rss")), 0), "", "flat"],
        ["context switches per s, GX live", fmt(g(sub, "switches_per_s"), 1), fmt(g(bridge, "switches_per_s"), 1),
         fmt(g(peer, "switches_per_s"), 1), ratio(g(bridge, "switches_per_s"), g(peer, "switches_per_s")), ""],
        ["wake-ups per s, no GX present", "", fmt(g(idle, "switches_per_s"), 2), "", "", "a few per s"],
        ["GX messages in per minute", fmt(g(sub, "in_per_min"), 0), fmt(g(bridge, "in_per_min"), 0),
         fmt(g(peer, "in_per_min"), 0), "", ""],
        ["publishes out per minute (bridge: to HA's broker; peer: state updates)", "",
         fmt(g(bridge, "out_per_min"), 0), fmt(g(peer, "out_per_min"), 0), "", ""],
        ["of which state messages per minute", "", fmt(g(bridge, "states_per_min"), 0), "", "", ""],
        ["in/out ratio", "", ratio(g(bridge, "in_per_min"), g(bridge, "out_per_min"), 1),
         ratio(g(peer, "in_per_min"), g(peer, "out_per_min"), 1), "", ""],
    ]
    header = ["Realistic load (boat, natural rate)", "mosquitto_sub", "bridge", "victron-mqtt", "bridge/peer", "target"]
    return table(header, rows)


def growth_table(steady):
    rows = []
    base = {kind: steady.get(f"{kind} 1x") for kind in ("bridge", "peer")}
    for scale in ("1x", "4x", "16x"):
        bridge, peer = steady.get(f"bridge {scale}"), steady.get(f"peer {scale}")
        if not bridge or not peer:
            continue
        rows.append([
            scale,
            fmt(bridge.get("in_per_min"), 0),
            fmt(bridge["cpu_percent"], 3),
            ratio(bridge["cpu_percent"], base["bridge"]["cpu_percent"], 1),
            fmt(_mib(bridge["rss_max"])),
            fmt(bridge.get("out_per_min"), 0),
            fmt(peer.get("in_per_min"), 0),
            fmt(peer["cpu_percent"], 3),
            ratio(peer["cpu_percent"], base["peer"]["cpu_percent"], 1),
            fmt(_mib(peer["rss_max"])),
            ratio(bridge["cpu_percent"], peer["cpu_percent"]),
        ])
    header = ["capture", "bridge msgs in/min", "bridge CPU %", "vs 1x", "bridge RSS MiB", "bridge out/min",
              "peer msgs in/min", "peer CPU %", "vs 1x", "peer RSS MiB", "bridge/peer CPU"]
    return table(header, rows)


def latency_table(latency):
    rows = [
        ["bridge, GX publish to HA-side state (--no-throttle)", fmt(latency["p50_ms"]), fmt(latency["p99_ms"]),
         fmt(latency["max_ms"]), f"{latency['arrived']}/{latency['markers']}"],
        ["one broker hop (GX publish to a GX-side subscriber)", fmt(latency["hop_p50_ms"]),
         fmt(latency["hop_p99_ms"]), "", ""],
    ]
    return table(["Latency", "p50 ms", "p99 ms", "max ms", "markers arrived"], rows)


def sizes_table(sizes):
    rows = [
        ["release binary (stripped)", fmt(sizes["binary"] / MIB), ""],
        ["victron-mqtt and its dependencies, installed (without Python)", fmt(sizes["peer_install"] / MIB),
         ratio(sizes["binary"], sizes["peer_install"])],
        ["container image", "not built: no Docker engine here", ""],
    ]
    return table(["Size", "MiB", "bridge/peer"], rows)


def _verdict(result):
    text = "yes" if result["kept_up"] else f"no: {result['why_not']}"
    return text + (" (stream-limited)" if result.get("stream_limited") else "")


def _mib(value):
    return value / MIB if value is not None else None


def _kib(value):
    return value / 1024 if value is not None else None


def _delta(summary, key):
    if not summary:
        return None
    return summary[f"{key}_last"] - summary[f"{key}_first"]
