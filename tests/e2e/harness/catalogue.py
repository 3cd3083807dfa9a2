"""The bridge's entity catalogue, as `roamcore-victron entities --format json` prints it,
reduced to what Home Assistant should show for each entity."""

import json
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class CatalogueEntity:
    """One catalogue row. Per-device rows have placeholders in their entity id, such as
    `sensor.vt_tank_{fluid}{slot}_level`."""

    entity_id: str
    unique_id: str
    unit: str | None
    device_class: str | None
    state_class: str | None
    entity_category: str | None
    options: list[str] | None
    precision: int | None
    presence: str
    per_device: str | None
    source: str
    raw: dict[str, Any] = field(default_factory=dict)

    def id_pattern(self) -> re.Pattern:
        """A regular expression for the entity ids this row can produce: the id itself,
        or for per-device rows every fluid, type and slot."""
        pattern = re.escape(self.entity_id)
        pattern = pattern.replace(re.escape("{fluid}"), "[a-z_]+?")
        pattern = pattern.replace(re.escape("{type}"), "[a-z_]+?")
        pattern = pattern.replace(re.escape("{slot}"), "(?:_?[0-9]+)?")
        return re.compile(f"^{pattern}$")


def parse_catalogue(data: Any) -> list[CatalogueEntity]:
    rows = data.get("entities", []) if isinstance(data, dict) else data
    return [
        CatalogueEntity(
            entity_id=row["entity_id"],
            unique_id=row["unique_id"],
            unit=row.get("unit"),
            device_class=row.get("device_class"),
            state_class=row.get("state_class"),
            entity_category=row.get("entity_category"),
            options=row.get("options"),
            precision=row.get("precision"),
            presence=str(row.get("presence", "")).lower(),
            per_device=row.get("per_device"),
            source=row.get("source", ""),
            raw=row,
        )
        for row in rows
    ]


def load_catalogue(binary: Path) -> list[CatalogueEntity]:
    """Runs `roamcore-victron entities --format json`."""
    result = subprocess.run([str(binary), "entities", "--format", "json"],
                            capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise RuntimeError(f"`roamcore-victron entities --format json` failed with exit "
                           f"status {result.returncode}: {result.stderr.strip()[:500]}")
    return parse_catalogue(json.loads(result.stdout))


def row_for(catalogue: list[CatalogueEntity], entity_id: str) -> CatalogueEntity | None:
    """The row that produces `entity_id`: the fixed row with that id, else the first
    per-device row whose pattern matches."""
    for row in catalogue:
        if row.per_device is None and row.entity_id == entity_id:
            return row
    for row in catalogue:
        if row.per_device is not None and row.id_pattern().match(entity_id):
            return row
    return None
