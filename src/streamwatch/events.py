"""The event contract: what producers send and what streamwatch emits.

These pydantic models *are* the contract; ``schemas/*.json`` is generated from them
(``make schemas``) and a test fails when the files are stale. Every event carries
``schema_version``; a version this build does not know is rejected (dead-lettered), not guessed.

Unknown fields are rejected too: a misspelt ``latency`` instead of ``latency_ms`` must show up as
a dead-letter with a reason, not as silently missing data.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    WithJsonSchema,
)

EVENT_SCHEMA_VERSION: Literal[1] = 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)

#: Model ids and versions become Redis key segments, so ':' and whitespace are not allowed.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._\-/+@]{0,127}$"

ModelId = Annotated[str, Field(pattern=NAME_PATTERN, examples=["fraud-detector"])]
ModelVersion = Annotated[str, Field(pattern=NAME_PATTERN, examples=["1.4.0"])]
SchemaVersion = Annotated[
    Literal[1], Field(description="Contract version; this build reads version 1.")
]
EventTime = Annotated[
    AwareDatetime,
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "format": "date-time"},
                {"type": "number", "description": "Unix epoch seconds"},
            ],
            "description": "Event time: RFC 3339 with offset, or Unix epoch seconds.",
        }
    ),
]
Number = StrictInt | StrictFloat
FeatureValue = StrictBool | Number | str | None
Label = StrictBool | Number | str


def _event_config() -> ConfigDict:
    return ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, str_max_length=4096)


def epoch_ms(moment: datetime) -> int:
    """Return a timezone-aware datetime as integer Unix milliseconds (floored, exact)."""
    return (moment - _EPOCH) // _ONE_MS


class Resources(BaseModel):
    """Resource use reported by the model server with an event."""

    model_config = _event_config()

    cpu_pct: float | None = Field(None, ge=0, description="CPU use in percent of one host.")
    memory_mb: float | None = Field(None, ge=0)
    gpu_pct: float | None = Field(None, ge=0, le=100)


class InferenceEvent(BaseModel):
    """One prediction served by a model."""

    model_config = _event_config()

    schema_version: SchemaVersion = EVENT_SCHEMA_VERSION
    request_id: str = Field(min_length=1, max_length=256)
    model_id: ModelId
    model_version: ModelVersion
    timestamp: EventTime
    latency_ms: float = Field(ge=0, description="End-to-end serving latency in milliseconds.")
    status: Literal["ok", "error"] = "ok"
    error_type: str | None = Field(None, max_length=256)
    prediction: Label | list[Number] | None = Field(
        None, description="Class label, numeric output, or a vector of class probabilities."
    )
    score: float | None = Field(None, ge=0, le=1, description="Confidence in [0, 1].")
    features: dict[Annotated[str, Field(max_length=128)], FeatureValue] = Field(
        default_factory=dict
    )
    stages_ms: dict[Annotated[str, Field(max_length=64)], Annotated[float, Field(ge=0)]] = Field(
        default_factory=dict,
        description="Per-stage timings, e.g. preprocess, inference, postprocess, respond.",
    )
    resources: Resources | None = None
    traffic: str | None = Field(None, max_length=64, description="Arm label: control, canary.")
    segment: str | None = Field(None, max_length=128)
    tags: dict[str, str] = Field(default_factory=dict)

    @property
    def timestamp_ms(self) -> int:
        """Event time in integer Unix milliseconds."""
        return epoch_ms(self.timestamp)


class FeedbackEvent(BaseModel):
    """Ground truth for an earlier prediction, joined to it by ``request_id``."""

    model_config = _event_config()

    schema_version: SchemaVersion = EVENT_SCHEMA_VERSION
    request_id: str = Field(min_length=1, max_length=256)
    model_id: ModelId
    model_version: ModelVersion | None = None
    label: Label
    timestamp: EventTime

    @property
    def timestamp_ms(self) -> int:
        """Event time in integer Unix milliseconds."""
        return epoch_ms(self.timestamp)


class BusinessEvent(BaseModel):
    """A business outcome attributed to a model: impression, click, conversion, revenue, ..."""

    model_config = _event_config()

    schema_version: SchemaVersion = EVENT_SCHEMA_VERSION
    model_id: ModelId
    model_version: ModelVersion | None = None
    request_id: str | None = Field(None, max_length=256)
    kind: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$", examples=["click", "revenue"])
    value: float = 1.0
    timestamp: EventTime

    @property
    def timestamp_ms(self) -> int:
        """Event time in integer Unix milliseconds."""
        return epoch_ms(self.timestamp)


class WindowRef(BaseModel):
    """A tumbling window: size and half-open event-time range ``[start_ms, end_ms)``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    size_ms: int = Field(gt=0)
    start_ms: int
    end_ms: int


class DriftCause(BaseModel):
    """One input feature's drift in the alert's window, against the model's baseline."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    feature: str
    drifted: bool = Field(description="Judged drifted: enough samples, significant, large.")
    psi: float | None = Field(None, description="Population stability index vs the baseline.")
    js: float | None = Field(None, description="Jensen-Shannon distance (base 2) vs baseline.")
    ks: float | None = Field(None, description="Kolmogorov-Smirnov statistic (numeric).")
    p_adjusted: float | None = Field(None, description="Benjamini-Hochberg adjusted p-value.")
    unseen_share: float | None = Field(None, description="Share of never-seen categories.")
    baseline_mean: float | None = None
    window_mean: float | None = None


class Detection(BaseModel):
    """What an online drift detector saw: a change in one series' mean."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    detector: str = Field(examples=["adwin", "page_hinkley"])
    signal: Literal["feature", "score", "latency", "error", "correctness"]
    series: str = Field(description="Feature name, or the signal for model-level series.")
    before_mean: float
    after_mean: float
    changed_at_ms: int = Field(description="Event time of the value that revealed the change.")


class PeriodSummary(BaseModel):
    """A model's day or week at a glance: the payload of ``daily_summary`` / ``weekly_summary``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    period: Literal["day", "week"]
    start_ms: int
    end_ms: int
    events: int
    errors: int
    error_rate: float | None = None
    throughput_eps: float | None = Field(None, description="Mean events/s over the period.")
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    latency_p99_ms: float | None = None
    labelled: int = 0
    accuracy: float | None = None
    mae: float | None = None
    windows: int = Field(0, description="Closed windows of the largest size in the period.")
    drifted_windows: int = Field(0, description="Of those, windows judged drifted.")
    drifted_features: dict[str, int] = Field(
        default_factory=dict, description="Feature -> windows in which it drifted (top 10)."
    )
    alerts_fired: dict[str, int] = Field(
        default_factory=dict, description="Severity -> alerts that fired in the period."
    )
    business: dict[str, float] = Field(
        default_factory=dict, description="Business event counts and sums, e.g. click_count."
    )


class AlertEvent(BaseModel):
    """An alert state change, emitted on the alerts topic.

    ``fingerprint`` identifies the alert series (rule, model, version, window size, labels);
    ``alert_id`` identifies one incident of it: the fingerprint plus the start of the window in
    which it first fired. Replays produce the same ids, so consumers can de-duplicate.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: SchemaVersion = EVENT_SCHEMA_VERSION
    alert_id: str
    fingerprint: str
    rule: str
    severity: Literal["critical", "warning", "info"]
    state: Literal["firing", "resolved"]
    model_id: str
    model_version: str
    metric: str
    value: float | None
    threshold: float | None
    window: WindowRef
    message: str
    labels: dict[str, str] = Field(default_factory=dict)
    root_cause: list[DriftCause] = Field(
        default_factory=list,
        description="Input features with the largest drift in the window, ranked.",
    )
    detection: Detection | None = Field(None, description="Set on online-detector alerts.")
    silenced_by: str | None = Field(
        None, description="Id of the silence muting this alert; notifying sinks skip it."
    )
    inhibited_by: str | None = Field(
        None,
        description="alert_id of the firing alert that inhibits this one (e.g. a critical on"
        " the same model muting its warnings); notifying sinks skip it.",
    )
    summary: PeriodSummary | None = Field(
        None, description="Set on info-level daily_summary / weekly_summary events."
    )
    emitted_at_ms: int = Field(description="Wall-clock time the worker emitted this event.")


class DeadLetterSource(BaseModel):
    """Where a dead-lettered message came from."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    topic: str
    partition: int
    offset: int
    batch_index: int | None = Field(
        None, description="Index of the rejected event inside a batch envelope."
    )


class DeadLetterEvent(BaseModel):
    """A rejected input message (or one event of a batch), with the reason and original bytes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: SchemaVersion = EVENT_SCHEMA_VERSION
    reason: str = Field(description="Machine-readable reason code, e.g. invalid_json.")
    detail: str = Field(description="Human-readable explanation of what is wrong.")
    source: DeadLetterSource
    original_b64: str = Field(description="The original bytes, base64 (possibly truncated).")
    original_truncated: bool = False
    received_at_ms: int


CONTRACT_MODELS: dict[str, type[BaseModel]] = {
    "inference_event": InferenceEvent,
    "feedback_event": FeedbackEvent,
    "business_event": BusinessEvent,
    "alert_event": AlertEvent,
    "deadletter_event": DeadLetterEvent,
}


#: Events per Kafka message the SDK sends by default (``generator.produce``, ``streamwatch
#: produce``). A message also ends with its slice of time (100 ms in real time), and is split
#: before it passes :data:`MAX_MESSAGE_BYTES`.
DEFAULT_BATCH_SIZE = 1_000
#: The SDK keeps messages under this many bytes: librdkafka's ``message.max.bytes`` and the
#: broker's default limit are both about 1 MB.
MAX_MESSAGE_BYTES = 900_000

#: Columns of the columnar envelope that may hold one value for every row of the batch.
COLUMN_SCALAR_FIELDS: tuple[str, ...] = (
    "model_id",
    "model_version",
    "status",
    "error_type",
    "traffic",
    "segment",
)
#: Columns of the columnar envelope that are objects of columns (name -> one value per row).
COLUMN_OBJECT_FIELDS: tuple[str, ...] = ("features", "stages_ms", "resources", "tags")
#: Columns the columnar envelope requires.
COLUMN_REQUIRED_FIELDS: tuple[str, ...] = (
    "request_id",
    "model_id",
    "model_version",
    "timestamp",
    "latency_ms",
)


def batch_envelope_schema(event_model: type[BaseModel]) -> dict[str, Any]:
    """Return the JSON Schema of one message: an event, an array, or ``{"events": [...]}``.

    For :class:`InferenceEvent`, also the columnar envelope ``{"columns": {...}}``.
    """
    ref = {"$ref": f"#/$defs/{event_model.__name__}"}
    schema = event_model.model_json_schema(ref_template="#/$defs/{model}")
    defs = schema.pop("$defs", {})
    defs[event_model.__name__] = schema
    forms: list[dict[str, Any]] = [
        ref,
        {"type": "array", "items": ref},
        {
            "type": "object",
            "properties": {
                "schema_version": {"const": EVENT_SCHEMA_VERSION},
                "events": {"type": "array", "items": ref},
            },
            "required": ["events"],
            "additionalProperties": False,
        },
    ]
    description = (
        "One Kafka message: a single event, a JSON array of events, or an object"
        ' {"events": [...]} (optionally with schema_version).'
    )
    if event_model is InferenceEvent:
        forms.append(_columnar_envelope_schema(schema))
        description += (
            ' Inference events may also come as columns: {"columns": {...}}, the SDK\'s default'
            " and fastest form."
        )
    return {
        "title": f"{event_model.__name__}Message",
        "description": description,
        "anyOf": forms,
        "$defs": defs,
    }


def _columnar_envelope_schema(event_schema: dict[str, Any]) -> dict[str, Any]:
    """The columnar envelope: one array per field, each holding a value per row (or null)."""
    null = {"type": "null"}
    columns: dict[str, Any] = {}
    for name, field_schema in event_schema["properties"].items():
        if name == "schema_version":
            continue
        field_ref = {"$ref": f"#/$defs/{InferenceEvent.__name__}/properties/{name}"}
        if name in COLUMN_OBJECT_FIELDS:
            if name == "resources":
                values: dict[str, Any] = {"type": "number", "minimum": 0}
                members: dict[str, Any] = {
                    "properties": {
                        key: {"type": "array", "items": {"anyOf": [values, null]}}
                        for key in Resources.model_fields
                    },
                    "additionalProperties": False,
                }
            else:
                values = {"$ref": f"{field_ref['$ref']}/additionalProperties"}
                if "additionalProperties" not in field_schema:
                    values = {}
                members = {
                    "additionalProperties": {"type": "array", "items": {"anyOf": [values, null]}}
                }
            columns[name] = {
                "type": "object",
                **members,
                "description": f"{name}: name -> array of one value per row (null: absent).",
            }
            continue
        column: dict[str, Any] = {
            "type": "array",
            "items": {"anyOf": [field_ref, null]},
            "description": f"{name} of each row (null: absent).",
        }
        if name in COLUMN_SCALAR_FIELDS:
            column = {
                "anyOf": [column, field_ref],
                "description": f"{name} of each row (null: absent), or one value for all rows.",
            }
        columns[name] = column
    return {
        "type": "object",
        "description": (
            "A batch as columns: row i is the event made of the i-th entry of every column"
            " (a scalar applies to every row; a null entry means the field is absent in that"
            " row). request_id's length is the batch size; every array has that length."
            " Fastest to encode and decode, and the SDK's default."
        ),
        "properties": {
            "schema_version": {"const": EVENT_SCHEMA_VERSION},
            "columns": {
                "type": "object",
                "properties": columns,
                "required": list(COLUMN_REQUIRED_FIELDS),
                "additionalProperties": False,
            },
        },
        "required": ["columns"],
        "additionalProperties": False,
    }
