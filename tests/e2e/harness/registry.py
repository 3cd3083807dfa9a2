"""Views of Home Assistant's registries and states for assertions."""

from dataclasses import dataclass, field
from typing import Any

DEVICE_NAME = "RoamCore Victron System"


@dataclass
class Entity:
    """One MQTT entity as Home Assistant sees it: registry entry joined with its state."""

    entity_id: str
    unique_id: str | None
    platform: str | None
    device_id: str | None
    device_name: str | None
    entity_category: str | None
    disabled_by: str | None
    created_at: Any
    state: str | None
    attributes: dict = field(default_factory=dict)

    @property
    def available(self) -> bool:
        return self.state is not None and self.state != "unavailable"


def mqtt_entities(snapshot: dict) -> dict[str, Entity]:
    """Every entity whose registry platform or state source is mqtt, by entity id."""
    registry = {e["entity_id"]: e for e in snapshot["entities"]}
    devices = {d["id"]: d for d in snapshot["devices"]}
    states = {s["entity_id"]: s for s in snapshot["states"]}
    ids = {eid for eid, source in snapshot["sources"].items() if source.get("domain") == "mqtt"}
    ids |= {eid for eid, entry in registry.items() if entry.get("platform") == "mqtt"}

    result = {}
    for entity_id in sorted(ids):
        entry = registry.get(entity_id, {})
        device = devices.get(entry.get("device_id") or "", {})
        state = states.get(entity_id)
        result[entity_id] = Entity(
            entity_id=entity_id,
            unique_id=entry.get("unique_id"),
            platform=entry.get("platform"),
            device_id=entry.get("device_id"),
            device_name=device.get("name_by_user") or device.get("name"),
            entity_category=entry.get("entity_category"),
            disabled_by=entry.get("disabled_by"),
            created_at=entry.get("created_at"),
            state=state["state"] if state else None,
            attributes=state.get("attributes", {}) if state else {},
        )
    return result


def devices_named(snapshot: dict, name: str) -> list[dict]:
    return [d for d in snapshot["devices"] if d.get("name") == name]
