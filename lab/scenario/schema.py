"""The scenario's JSON Schema, for editors (`# yaml-language-server: $schema=schema.json`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from lab.scenario.models import Scenario

SCHEMA_URI = "https://json-schema.org/draft/2020-12/schema"
DEFAULT_PATH = Path(__file__).resolve().parents[2] / "toxics" / "schema.json"


def scenario_schema() -> dict[str, Any]:
    schema = Scenario.model_json_schema(mode="validation")
    return {"$schema": SCHEMA_URI, "title": "lab scenario", **schema}


def schema_text() -> str:
    """The schema as committed: sorted keys, two-space indent, a final newline."""
    return orjson.dumps(scenario_schema(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode() + "\n"
