"""Harness probe: Home Assistant turns a hand-written discovery message into an entity."""

import json

from harness.procs import wait_until
from harness.registry import mqtt_entities

from .common import mqtt_warnings, publish, running_stack

PROBE_TOPIC = "homeassistant/device/e2e_probe/config"


def harness_probe(env, checks):
    """Harness self-check: fresh Home Assistant creates, updates and removes a probe entity.

    This needs nothing from the bridge, so a failure here points at the harness or at Home
    Assistant, never at the bridge.
    """
    with running_stack(env, "harness") as stack:
        stack.start_home_assistant()
        broker = stack.ha_broker.address

        config = {
            "device": {"identifiers": ["e2e_probe"], "name": "E2E Probe"},
            "origin": {"name": "e2e harness"},
            "state_topic": "e2e_probe/state",
            "components": {
                "level": {
                    "platform": "sensor", "name": "Level", "unique_id": "e2e_probe_level",
                    "default_entity_id": "sensor.e2e_probe_level",
                    "unit_of_measurement": "%", "device_class": "battery",
                    "state_class": "measurement", "value_template": "{{ value_json.level }}",
                },
            },
        }
        publish(broker, PROBE_TOPIC, json.dumps(config))
        publish(broker, "e2e_probe/state", json.dumps({"level": 42.5}))

        def probe_state():
            entity = mqtt_entities(stack.ha.snapshot()).get("sensor.e2e_probe_level")
            return entity if entity and entity.state == "42.5" else None

        entity = wait_until(probe_state, 30, 0.5, "sensor.e2e_probe_level = 42.5")
        checks.equal(entity.unique_id, "e2e_probe_level", "probe unique_id")
        checks.equal(entity.device_name, "E2E Probe", "probe device name")
        checks.equal(entity.attributes.get("unit_of_measurement"), "%", "probe unit")

        publish(broker, PROBE_TOPIC, "")
        wait_until(lambda: "sensor.e2e_probe_level" not in mqtt_entities(stack.ha.snapshot()),
                   30, 0.5, "sensor.e2e_probe_level to be removed")
        checks.empty(mqtt_warnings(stack.ha.log_records()), "MQTT warnings in Home Assistant's log")
