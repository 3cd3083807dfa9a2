"""Benchmark of the bridge against mosquitto_sub and victron-mqtt, run by scripts/bench.

Phases, in this order: sizes, throughput ceiling, realistic load with growth and idle
wake-ups, latency. Every broker is a Mosquitto started here on a free 127.0.0.1 port,
and nothing is sent anywhere else. Prints Markdown tables and writes every figure as
JSON.
"""

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import captures
import report
from latency import run_latency
from procs import mosquitto_binary
from steady import run_steady
from throughput import format_step, run_step

# "max" three times: the broker's own limit moves with the machine's load, so each
# consumer gets three tries at it, side by side with the others, and the median counts.
COMMON_RATES = [20000, 50000, 100000, "max", "max", "max"]
BISECTIONS = 2
CONSUMERS = ["mosquitto_sub", "bridge", "peer"]


STARTED = time.monotonic()


def log(text):
    print(f"[{time.monotonic() - STARTED:4.0f} s] {text}", flush=True)


def machine():
    model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mosquitto = subprocess.run([mosquitto_binary(), "-h"], capture_output=True, text=True).stdout.splitlines()
    return {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "kernel": platform.release(),
        "load_average_at_start": os.getloadavg(),
        "mosquitto": mosquitto[0] if mosquitto else "unknown",
        "victron_mqtt": importlib.metadata.version("victron-mqtt"),
        "paho_mqtt": importlib.metadata.version("paho-mqtt"),
        "python": platform.python_version(),
    }


def peer_install_bytes():
    """Bytes of every package installed in this virtualenv except the packaging tools."""
    total = 0
    for dist in importlib.metadata.distributions():
        if dist.metadata["Name"].lower() in ("pip", "setuptools", "wheel"):
            continue
        for file in dist.files or []:
            path = Path(dist.locate_file(file))
            if path.is_file():
                total += path.stat().st_size
    return total


def run_throughput(ctx, window, warmup, rates):
    """Run the common rates side by side, each rate for every consumer in turn, and retry
    a failed step once. Then narrow each failed consumer's ceiling by bisection."""
    ladders = {kind: [] for kind in CONSUMERS}
    stopped = set()
    for rate in rates:
        for kind in CONSUMERS:
            if kind in stopped:
                continue
            result = run_step(ctx, kind, rate, window, warmup)
            log(format_step(result))
            if not result["kept_up"]:
                ladders[kind].append(result)
                result = run_step(ctx, kind, rate, window, warmup)
                log(format_step(result) + " (retry)")
            ladders[kind].append(result)
            if not result["kept_up"]:
                stopped.add(kind)

    for kind in CONSUMERS:
        if kind not in stopped:
            continue
        results = ladders[kind]
        good = max((float(r["rate"]) for r in results if r["kept_up"] and r["rate"] != "max"), default=0.0)
        failed = results[-1]
        bad = failed["stream_rate"] if failed["rate"] == "max" else float(failed["rate"])
        for _ in range(BISECTIONS):
            middle = round((good + bad) / 2, -3)
            if middle <= good or middle >= bad:
                break
            result = run_step(ctx, kind, int(middle), window, warmup)
            log(format_step(result) + " (bisection)")
            results.append(result)
            if result["kept_up"]:
                good = middle
            else:
                bad = middle
    return ladders


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", required=True, help="release build of roamcore-victron")
    parser.add_argument("--repo", default=str(Path(__file__).resolve().parent.parent), help="repository root")
    parser.add_argument("--json", help="write every figure to this file")
    parser.add_argument("--quick", action="store_true",
                        help="short windows and fewer steps: checks the harness, figures are rough")
    args = parser.parse_args()

    ctx = types.SimpleNamespace(binary=Path(args.binary).resolve(), python=sys.executable)
    if args.quick:
        rates, window, warmup = [20000, "max"], 3.0, 1.0
        duration, window_start, idle_seconds, markers = 45, 15, 25, 100
    else:
        rates, window, warmup = COMMON_RATES, 4.0, 1.0
        duration, window_start, idle_seconds, markers = 90, 25, 60, 300

    started = time.monotonic()
    results = {"machine": machine(), "command": " ".join(["scripts/bench", *sys.argv[1:]])}
    log(f"machine: {results['machine']}")
    load = results["machine"]["load_average_at_start"][0]
    if load > results["machine"]["nproc"] / 2:
        log(f"warning: load average {load:.1f} on {results['machine']['nproc']} CPUs; other processes "
            "compete for the CPUs, so rates near the limits and the kept-up verdicts are noisy")

    results["sizes"] = {"binary": ctx.binary.stat().st_size, "peer_install": peer_install_bytes()}

    log("throughput: rate steps, each consumer alone on a fresh broker")
    results["throughput"] = run_throughput(ctx, window, warmup, rates)

    log("realistic load, growth and idle wake-ups")
    with tempfile.TemporaryDirectory(prefix="roamcore-bench-captures-") as directory:
        scaled = {"1x": "boat"}
        for factor in (4, 16):
            scaled[f"{factor}x"] = str(captures.write_scaled(args.repo, factor, directory))
        results["steady"] = run_steady(ctx, duration, window_start, idle_seconds, scaled, log)

    log("latency: marker values through the bridge with --no-throttle")
    results["latency"] = run_latency(ctx, markers, 0.025, log)
    results["elapsed_s"] = time.monotonic() - started

    tables = [
        report.throughput_table(results["throughput"]),
        report.steps_table(results["throughput"]),
        report.steady_table(results["steady"]),
        report.growth_table(results["steady"]),
        report.latency_table(results["latency"]),
        report.sizes_table(results["sizes"]),
    ]
    print("")
    print(f"{results['machine']['date_utc']}, {results['machine']['nproc']} CPUs "
        f"({results['machine']['cpu_model']}), {results['machine']['mosquitto']}, "
        f"victron-mqtt {results['machine']['victron_mqtt']}; run took {results['elapsed_s']:.0f} s")
    for text in tables:
        print("")
        print(text)

    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2, default=str) + "\n")
        print(f"\nall figures: {args.json}")


if __name__ == "__main__":
    main()
