"""Generate ``schemas/*.json`` from the pydantic contract (``make schemas``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from streamwatch.events import (
    CONTRACT_MODELS,
    BusinessEvent,
    FeedbackEvent,
    InferenceEvent,
    batch_envelope_schema,
)

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def contract_schemas() -> dict[str, dict[str, Any]]:
    """Return ``{file name: JSON Schema}`` for every contract model and message form."""
    schemas: dict[str, dict[str, Any]] = {}
    for name, model in CONTRACT_MODELS.items():
        schemas[f"{name}.json"] = {"$schema": SCHEMA_DIALECT, **model.model_json_schema()}
    for name, model in (
        ("inference_message", InferenceEvent),
        ("feedback_message", FeedbackEvent),
        ("business_message", BusinessEvent),
    ):
        schemas[f"{name}.json"] = {"$schema": SCHEMA_DIALECT, **batch_envelope_schema(model)}
    return schemas


def render(schema: dict[str, Any]) -> bytes:
    """Serialise a schema the way the committed files are written."""
    return orjson.dumps(schema, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def write_schemas(out_dir: Path) -> list[Path]:
    """Write every schema file into ``out_dir``; return the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in contract_schemas().items():
        path = out_dir / name
        path.write_bytes(render(schema))
        written.append(path)
    return written
