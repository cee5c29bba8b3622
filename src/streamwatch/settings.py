"""Worker configuration: one frozen :class:`Settings`, read from ``STREAMWATCH_*`` env vars.

Built once at start-up by :func:`load_settings` and passed down; nothing else reads the
environment. Every invalid value fails start-up with one line naming the variable to fix.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from streamwatch.core.durations import parse_duration_ms
from streamwatch.exceptions import ConfigError

ENV_PREFIX = "STREAMWATCH_"


def _duration(value: Any) -> Any:
    if isinstance(value, str):
        return parse_duration_ms(value)
    return value


class Settings(BaseSettings):
    """Everything a worker, the generator and the CLI need to know about their surroundings.

    Durations accept ``ms``/``s``/``m``/``h``/``d`` suffixes (``"10s"``) or integer milliseconds.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        frozen=True,
        extra="forbid",
        case_sensitive=False,
        populate_by_name=True,
    )

    kafka_bootstrap: str = Field(
        "127.0.0.1:9092", description="Kafka bootstrap servers, comma-separated host:port."
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None
    redis_url: SecretStr = Field(
        SecretStr("redis://127.0.0.1:6379/0"),
        description="redis:// or rediss:// URL; may carry a password (never logged).",
    )
    topic_prefix: str = Field("streamwatch", pattern=r"^[A-Za-z0-9._-]+$")
    partitions: int = Field(8, ge=1, le=10_000, description="Partitions per input topic.")
    replication_factor: int = Field(1, ge=1, le=16)
    group_id: str = Field("streamwatch", pattern=r"^[A-Za-z0-9._-]+$")
    windows_ms: Annotated[tuple[int, ...], NoDecode] = Field(
        (10_000, 60_000, 3_600_000),
        validation_alias="STREAMWATCH_WINDOWS",
        description="Tumbling window sizes, e.g. '10s,1m,1h'.",
    )
    allowed_lateness_ms: Annotated[int, NoDecode] = Field(
        5_000, ge=0, validation_alias="STREAMWATCH_ALLOWED_LATENESS"
    )
    idle_timeout_ms: Annotated[int, NoDecode] = Field(
        15_000, ge=100, validation_alias="STREAMWATCH_IDLE_TIMEOUT"
    )
    max_future_skew_ms: Annotated[int, NoDecode] = Field(
        300_000, ge=0, validation_alias="STREAMWATCH_MAX_FUTURE_SKEW"
    )
    window_retention_ms: Annotated[int, NoDecode] = Field(
        8 * 86_400_000, ge=60_000, validation_alias="STREAMWATCH_WINDOW_RETENTION"
    )
    rules: Path | None = Field(
        None, description="Rules YAML file; unset means the shipped default rules."
    )
    batch_max_messages: int = Field(1_000, ge=1, le=1_000_000)
    batch_max_wait_ms: Annotated[int, NoDecode] = Field(
        200, ge=1, validation_alias="STREAMWATCH_BATCH_MAX_WAIT"
    )
    session_timeout_s: float = Field(6.0, gt=0)
    heartbeat_interval_s: float = Field(1.0, gt=0)
    web_port: int = Field(6066, ge=1, le=65535)
    data_dir: Path = Field(Path(".streamwatch"), description="Faust's local data directory.")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    max_categories: int = Field(
        64, ge=1, description="Distinct values tracked per categorical feature per window."
    )
    max_features: int = Field(64, ge=1, description="Distinct features tracked per model.")
    label_horizon_ms: Annotated[int, NoDecode] = Field(
        3_600_000,
        ge=1_000,
        validation_alias="STREAMWATCH_LABEL_HORIZON",
        description="How long (event time) a prediction waits for its label, e.g. '1h'.",
    )
    label_min_coverage: float = Field(
        0.8,
        gt=0,
        le=1,
        description="Share of a window's predictions labelled before accuracy rules judge it"
        " (otherwise it is judged when the label horizon has passed).",
    )
    label_wait_ms: Annotated[int, NoDecode] = Field(
        60_000,
        ge=0,
        validation_alias="STREAMWATCH_LABEL_WAIT",
        description="How long after a window closes accuracy rules judge it with the labels"
        " that have arrived, if label_min_coverage was not reached earlier.",
    )
    max_pending_labels: int = Field(
        200_000, ge=1, description="Predictions remembered per partition while awaiting labels."
    )
    baseline_auto_windows: int = Field(
        30,
        ge=0,
        description="A model without a stored baseline adopts its first N closed windows of"
        " the smallest size as one; 0 disables.",
    )
    drift_min_samples: int = Field(
        200, ge=1, description="Values a window needs before a feature's drift is judged."
    )
    drift_fdr: float = Field(
        0.01, gt=0, lt=1, description="False discovery rate across a window's features."
    )
    drift_min_psi: float = Field(
        0.2, ge=0, description="Smallest PSI (effect size) that counts as drift."
    )

    webhook_url: SecretStr | None = Field(
        None,
        description="POST alert notifications here ('streamwatch notify'); may embed a token.",
    )
    webhook_format: Literal["json", "slack"] = Field(
        "json", description="'json': streamwatch's payload; 'slack': Slack-compatible text."
    )
    webhook_group_wait_ms: Annotated[int, NoDecode] = Field(
        10_000,
        ge=0,
        validation_alias="STREAMWATCH_WEBHOOK_GROUP_WAIT",
        description="How long the first alert of a model's burst waits for the rest of it.",
    )
    webhook_group_interval_ms: Annotated[int, NoDecode] = Field(
        60_000,
        ge=0,
        validation_alias="STREAMWATCH_WEBHOOK_GROUP_INTERVAL",
        description="Least time between two notifications about the same model.",
    )
    webhook_timeout_ms: Annotated[int, NoDecode] = Field(
        5_000, gt=0, validation_alias="STREAMWATCH_WEBHOOK_TIMEOUT"
    )
    webhook_max_attempts: int = Field(
        6, ge=1, description="Delivery attempts before a notification is dead-lettered."
    )
    webhook_backoff_initial_ms: Annotated[int, NoDecode] = Field(
        1_000, gt=0, validation_alias="STREAMWATCH_WEBHOOK_BACKOFF_INITIAL"
    )
    webhook_backoff_max_ms: Annotated[int, NoDecode] = Field(
        60_000, gt=0, validation_alias="STREAMWATCH_WEBHOOK_BACKOFF_MAX"
    )

    @field_validator("windows_ms", mode="before")
    @classmethod
    def _parse_windows(cls, value: Any) -> Any:
        if isinstance(value, str):
            parts = [p for p in value.split(",") if p.strip()]
            if not parts:
                raise ValueError("give at least one window size, e.g. '10s,1m,1h'")
            return tuple(parse_duration_ms(p) for p in parts)
        return value

    @field_validator(
        "allowed_lateness_ms",
        "idle_timeout_ms",
        "max_future_skew_ms",
        "window_retention_ms",
        "batch_max_wait_ms",
        "label_horizon_ms",
        "label_wait_ms",
        "webhook_group_wait_ms",
        "webhook_group_interval_ms",
        "webhook_timeout_ms",
        "webhook_backoff_initial_ms",
        "webhook_backoff_max_ms",
        mode="before",
    )
    @classmethod
    def _parse_duration(cls, value: Any) -> Any:
        return _duration(value)

    @model_validator(mode="after")
    def _check_windows(self) -> Settings:
        if any(w <= 0 for w in self.windows_ms):
            raise ValueError("STREAMWATCH_WINDOWS: window sizes must be positive")
        if len(set(self.windows_ms)) != len(self.windows_ms):
            raise ValueError("STREAMWATCH_WINDOWS: window sizes must be distinct")
        if self.heartbeat_interval_s * 3 > self.session_timeout_s:
            raise ValueError(
                "STREAMWATCH_HEARTBEAT_INTERVAL_S must be at most a third of"
                " STREAMWATCH_SESSION_TIMEOUT_S"
            )
        return self

    def topic(self, kind: str) -> str:
        """Return the full topic name for ``inference``, ``feedback``, ``business``, ..."""
        return f"{self.topic_prefix}.{kind}"

    def librdkafka_security(self) -> dict[str, str]:
        """Return the security part of a confluent-kafka (librdkafka) config."""
        conf: dict[str, str] = {"security.protocol": self.kafka_security_protocol.lower()}
        if self.kafka_sasl_mechanism:
            conf["sasl.mechanism"] = self.kafka_sasl_mechanism
        if self.kafka_sasl_username:
            conf["sasl.username"] = self.kafka_sasl_username
        if self.kafka_sasl_password:
            conf["sasl.password"] = self.kafka_sasl_password.get_secret_value()
        if self.kafka_ssl_cafile:
            conf["ssl.ca.location"] = str(self.kafka_ssl_cafile)
        return conf


def _env_name(loc: tuple[int | str, ...]) -> str:
    field = str(loc[0]) if loc else ""
    if field.upper().startswith(ENV_PREFIX):
        return field.upper()
    info = Settings.model_fields.get(field)
    if info is not None and isinstance(info.validation_alias, str):
        return info.validation_alias
    return f"{ENV_PREFIX}{field.upper()}" if field else "settings"


#: ``STREAMWATCH_*`` variables read by tools other than the worker settings.
OTHER_ENV_NAMES = frozenset({"STREAMWATCH_TANSU_BIN", "STREAMWATCH_REDIS_SERVER_BIN"})


def known_env_names() -> frozenset[str]:
    """Return every ``STREAMWATCH_*`` variable name streamwatch reads."""
    names = set(OTHER_ENV_NAMES)
    for name, info in Settings.model_fields.items():
        alias = info.validation_alias
        names.add(alias if isinstance(alias, str) else f"{ENV_PREFIX}{name.upper()}")
    return frozenset(names)


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Build the settings from the environment (and explicit overrides, for tests and the CLI).

    Args:
        environ: The environment to check for misspelt ``STREAMWATCH_*`` names (default:
            ``os.environ``). pydantic-settings would silently ignore them; a typo such as
            ``STREAMWATCH_WINDOW`` must fail loudly instead.
        **overrides: Field values that take precedence over the environment.

    Raises:
        ConfigError: With one line per problem, each naming the ``STREAMWATCH_*`` variable.
    """
    env = os.environ if environ is None else environ
    unknown = sorted(
        k for k in env if k.upper().startswith(ENV_PREFIX) and k.upper() not in known_env_names()
    )
    if unknown:
        raise ConfigError(
            f"unknown setting(s) {unknown}; valid names are {sorted(known_env_names())}"
        )
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            message = str(error["msg"]).removeprefix("Value error, ")
            if error["loc"]:
                lines.append(f"{_env_name(error['loc'])}: {message}")
            else:
                lines.append(message)
        raise ConfigError("invalid configuration: " + "; ".join(lines)) from None
