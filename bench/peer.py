"""The peer: victron-mqtt configured as Home Assistant's `victron_gx` integration does.

Home Assistant core (`homeassistant/components/victron_gx/hub.py`) creates the hub with
`operation_mode=OperationMode.READ_ONLY` and `update_frequency_seconds=30`, sets
`on_new_metric`, and each entity sets the metric's `on_update`. Here `on_update` only
counts, so the figures cover the library and leave out Home Assistant's state machine.

Prints `ready` once connected, then `counters handled=N updates=N metrics=N` every half
second, and `final ...` on SIGTERM. `handled` counts MQTT messages whose processing has
finished (victron-mqtt processes them in paho's network thread, so a slow handler slows
the socket).
"""

import argparse
import asyncio
import logging
import signal

from victron_mqtt import Hub, OperationMode


class CountingHub(Hub):
    handled = 0

    def _on_message(self, client, userdata, message):
        super()._on_message(client, userdata, message)
        CountingHub.handled += 1


class Counters:
    def __init__(self):
        self.updates = 0
        self.metrics = 0

    def on_update(self, _metric, _value):
        self.updates += 1

    def on_new_metric(self, _hub, _device, metric):
        self.metrics += 1
        metric.on_update = self.on_update

    def line(self, prefix):
        return f"{prefix} handled={CountingHub.handled} updates={self.updates} metrics={self.metrics}"


async def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True, help="GX broker port on 127.0.0.1")
    args = parser.parse_args()

    # Home Assistant's log level is warning unless its logger integration sets another
    # (home-assistant.io/integrations/logger), so the library's debug lines cost little.
    logging.basicConfig(level=logging.WARNING)
    counters = Counters()
    hub = CountingHub(
        host="127.0.0.1",
        port=args.port,
        username=None,
        password=None,
        use_ssl=False,
        operation_mode=OperationMode.READ_ONLY,
        update_frequency_seconds=30,
    )
    hub.on_new_metric = counters.on_new_metric

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)

    await hub.connect()
    print("ready", flush=True)
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), 0.5)
        except TimeoutError:
            print(counters.line("counters"), flush=True)
    print(counters.line("final"), flush=True)
    await hub.disconnect()


if __name__ == "__main__":
    asyncio.run(main())
