"""Worker configuration: one frozen :class:`Settings`, read from ``STREAMWATCH_*`` env vars.

Built once at start-up by :func:`load_settings` and passed down; nothing else reads the
environment. Every invalid value fails start-up with one line naming the variable to fix.

Secrets (passwords, tokens, URLs that may carry them) are :class:`~pydantic.SecretStr`: their
``repr``/``str`` show ``**********``, and no error message here echoes a value. Log a URL only
through :func:`redacted`.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from streamwatch.core.durations import parse_duration_ms
from streamwatch.exceptions import ConfigError

ENV_PREFIX = "STREAMWATCH_"

KafkaSecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
KafkaSaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
REDIS_SCHEMES = ("redis", "rediss", "unix")
#: Shortest STREAMWATCH_HTTP_TOKEN accepted (``openssl rand -hex 32`` gives 64 characters).
MIN_HTTP_TOKEN_CHARS = 16
# RFC 6750 b64token: what may follow "Bearer " in an Authorization header.
_TOKEN_PATTERN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


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
        # A ValidationError must never carry a password or token it was given.
        hide_input_in_errors=True,
    )

    kafka_bootstrap: str = Field(
        "127.0.0.1:9092", description="Kafka bootstrap servers, comma-separated host:port."
    )
    kafka_security_protocol: KafkaSecurityProtocol = Field(
        "PLAINTEXT", description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL."
    )
    kafka_sasl_mechanism: KafkaSaslMechanism | None = Field(
        None, description="PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; required with SASL_*."
    )
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = Field(
        None, description="PEM CA bundle the broker certificates are checked against."
    )
    kafka_ssl_certfile: Path | None = Field(
        None, description="PEM client certificate for mutual TLS (may hold the key too)."
    )
    kafka_ssl_keyfile: Path | None = Field(
        None, description="PEM private key of kafka_ssl_certfile, if not in that file."
    )
    redis_url: SecretStr = Field(
        SecretStr("redis://127.0.0.1:6379/0"),
        description="redis://, rediss:// (TLS) or unix:// URL; may carry a password (never"
        " logged).",
    )
    redis_username: str | None = Field(
        None, description="Redis ACL user; an alternative to putting it in the URL."
    )
    redis_password: SecretStr | None = Field(
        None, description="Redis password; an alternative to putting it in the URL."
    )
    redis_ssl_ca_file: Path | None = Field(
        None, description="PEM CA bundle for a rediss:// server (default: the system's)."
    )
    redis_ssl_cert_file: Path | None = Field(
        None, description="PEM client certificate for a rediss:// server that asks for one."
    )
    redis_ssl_key_file: Path | None = Field(
        None, description="PEM private key of redis_ssl_cert_file, if not in that file."
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
    batch_max_messages: int = Field(
        10_000,
        ge=1,
        le=1_000_000,
        description="A step ends once it holds this many messages (or max bytes, or max wait).",
    )
    batch_max_bytes: int = Field(
        4 << 20,
        ge=1_024,
        description="A step ends once its messages hold this many bytes (or max messages).",
    )
    batch_max_wait_ms: Annotated[int, NoDecode] = Field(
        200, ge=1, validation_alias="STREAMWATCH_BATCH_MAX_WAIT"
    )
    fetch_max_wait_ms: Annotated[int, NoDecode] = Field(
        100,
        ge=1,
        le=60_000,
        validation_alias="STREAMWATCH_FETCH_MAX_WAIT",
        description="Longest a consumer fetch may wait at the broker for data.",
    )
    session_timeout_s: float = Field(6.0, gt=0)
    heartbeat_interval_s: float = Field(1.0, gt=0)
    web_port: int = Field(
        6066, ge=1, le=65535, description="Faust's own web server; bound to 127.0.0.1 only."
    )
    metrics_port: int = Field(
        0, ge=0, le=65535, description="Port of /metrics and /healthz; 0 disables them."
    )
    metrics_host: str = Field("0.0.0.0", description="Address /metrics and /healthz bind to.")
    http_token: SecretStr | None = Field(
        None,
        description="If set, /metrics and /healthz demand 'Authorization: Bearer <token>'.",
    )
    data_dir: Path = Field(Path(".streamwatch"), description="Faust's local data directory.")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    max_categories: int = Field(
        64, ge=1, description="Distinct values tracked per categorical feature per window."
    )
    max_features: int = Field(64, ge=1, description="Distinct features tracked per model.")
    max_models: int = Field(
        1_000,
        ge=1,
        description="(model, version) series holding state per partition; events of new ones"
        " beyond are dead-lettered as too_many_models.",
    )
    max_message_bytes: int = Field(
        8 << 20, ge=1_024, description="Larger messages are dead-lettered unparsed."
    )
    max_batch_events: int = Field(
        10_000, ge=1, description="Messages with more events are dead-lettered whole."
    )
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

    @field_validator("kafka_security_protocol", "kafka_sasl_mechanism", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

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
        "fetch_max_wait_ms",
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

    @model_validator(mode="after")
    def _check_kafka_security(self) -> Settings:
        protocol = self.kafka_security_protocol
        sasl = protocol.startswith("SASL_")
        tls = protocol.endswith("SSL")
        if sasl:
            if self.kafka_sasl_mechanism is None:
                raise ValueError(
                    f"STREAMWATCH_KAFKA_SASL_MECHANISM is required with {protocol}; valid values"
                    " are PLAIN, SCRAM-SHA-256, SCRAM-SHA-512"
                )
            missing = [
                f"STREAMWATCH_KAFKA_SASL_{name.upper()}"
                for name, value in (
                    ("username", self.kafka_sasl_username),
                    ("password", self.kafka_sasl_password),
                )
                if not _given(value)
            ]
            if missing:
                raise ValueError(
                    f"STREAMWATCH_KAFKA_SECURITY_PROTOCOL={protocol} needs {' and '.join(missing)}"
                )
        else:
            given = [
                name
                for name, value in (
                    ("STREAMWATCH_KAFKA_SASL_MECHANISM", self.kafka_sasl_mechanism),
                    ("STREAMWATCH_KAFKA_SASL_USERNAME", self.kafka_sasl_username),
                    ("STREAMWATCH_KAFKA_SASL_PASSWORD", self.kafka_sasl_password),
                )
                if _given(value)
            ]
            if given:
                raise ValueError(
                    f"{', '.join(given)} set but STREAMWATCH_KAFKA_SECURITY_PROTOCOL is"
                    f" {protocol}, so they would be ignored; set it to SASL_SSL (or"
                    " SASL_PLAINTEXT), or unset them"
                )
        files = [
            name
            for name, value in (
                ("STREAMWATCH_KAFKA_SSL_CAFILE", self.kafka_ssl_cafile),
                ("STREAMWATCH_KAFKA_SSL_CERTFILE", self.kafka_ssl_certfile),
                ("STREAMWATCH_KAFKA_SSL_KEYFILE", self.kafka_ssl_keyfile),
            )
            if value is not None
        ]
        if files and not tls:
            raise ValueError(
                f"{', '.join(files)} set but STREAMWATCH_KAFKA_SECURITY_PROTOCOL is {protocol},"
                " which does not use TLS; set it to SSL or SASL_SSL, or unset them"
            )
        if self.kafka_ssl_keyfile is not None and self.kafka_ssl_certfile is None:
            raise ValueError(
                "STREAMWATCH_KAFKA_SSL_KEYFILE needs STREAMWATCH_KAFKA_SSL_CERTFILE (the client"
                " certificate it belongs to)"
            )
        return self

    @model_validator(mode="after")
    def _check_redis(self) -> Settings:
        # Messages name the variable, never its value: the URL may carry a password.
        url = self.redis_url.get_secret_value()
        try:
            parts = urllib.parse.urlsplit(url)
        except ValueError:
            parts = None
        if parts is None or parts.scheme not in REDIS_SCHEMES:
            raise ValueError(
                "STREAMWATCH_REDIS_URL must start with redis://, rediss:// (TLS) or unix://"
                " (the value is not shown: it may carry a password)"
            )
        if _given(self.redis_password) and parts.password:
            raise ValueError(
                "STREAMWATCH_REDIS_PASSWORD is set and STREAMWATCH_REDIS_URL carries a password"
                " too; keep one of them"
            )
        if _given(self.redis_username) and parts.username:
            raise ValueError(
                "STREAMWATCH_REDIS_USERNAME is set and STREAMWATCH_REDIS_URL carries a user"
                " name too; keep one of them"
            )
        files = [
            name
            for name, value in (
                ("STREAMWATCH_REDIS_SSL_CA_FILE", self.redis_ssl_ca_file),
                ("STREAMWATCH_REDIS_SSL_CERT_FILE", self.redis_ssl_cert_file),
                ("STREAMWATCH_REDIS_SSL_KEY_FILE", self.redis_ssl_key_file),
            )
            if value is not None
        ]
        if files and parts.scheme != "rediss":
            raise ValueError(
                f"{', '.join(files)} set but STREAMWATCH_REDIS_URL is not a rediss:// (TLS) URL;"
                " use rediss://, or unset them"
            )
        if self.redis_ssl_key_file is not None and self.redis_ssl_cert_file is None:
            raise ValueError(
                "STREAMWATCH_REDIS_SSL_KEY_FILE needs STREAMWATCH_REDIS_SSL_CERT_FILE (the client"
                " certificate it belongs to)"
            )
        return self

    @model_validator(mode="after")
    def _check_http(self) -> Settings:
        if self.http_token is not None:
            token = self.http_token.get_secret_value()
            if len(token) < MIN_HTTP_TOKEN_CHARS or not _TOKEN_PATTERN.fullmatch(token):
                raise ValueError(
                    f"STREAMWATCH_HTTP_TOKEN must be at least {MIN_HTTP_TOKEN_CHARS} characters"
                    " of A-Z a-z 0-9 - . _ ~ + / (e.g. from 'openssl rand -hex 32'); the value"
                    " is not shown"
                )
        if self.metrics_port != 0 and self.metrics_port == self.web_port:
            raise ValueError(
                "STREAMWATCH_METRICS_PORT must differ from STREAMWATCH_WEB_PORT (Faust's own"
                " web server listens there)"
            )
        return self

    def topic(self, kind: str) -> str:
        """Return the full topic name for ``inference``, ``feedback``, ``business``, ..."""
        return f"{self.topic_prefix}.{kind}"

    def librdkafka_security(self) -> dict[str, str]:
        """Return the security part of a confluent-kafka (librdkafka) config.

        Every confluent-kafka client (admin, CLI, notifier, generator) merges this into its
        config; the Faust worker gets the same settings from ``worker._credentials``. The result
        holds the SASL password in clear: pass it to the client, never log it.
        """
        conf: dict[str, str] = {"security.protocol": self.kafka_security_protocol.lower()}
        if self.kafka_sasl_mechanism:
            conf["sasl.mechanism"] = self.kafka_sasl_mechanism
        if self.kafka_sasl_username:
            conf["sasl.username"] = self.kafka_sasl_username
        if self.kafka_sasl_password:
            conf["sasl.password"] = self.kafka_sasl_password.get_secret_value()
        if self.kafka_ssl_cafile:
            conf["ssl.ca.location"] = str(self.kafka_ssl_cafile)
        if self.kafka_ssl_certfile:
            conf["ssl.certificate.location"] = str(self.kafka_ssl_certfile)
        if self.kafka_ssl_keyfile:
            conf["ssl.key.location"] = str(self.kafka_ssl_keyfile)
        return conf

    def redis_options(self) -> dict[str, Any]:
        """Return the keyword arguments to pass with :attr:`redis_url` to ``Redis.from_url``.

        The same for ``redis.Redis`` and ``redis.asyncio.Redis``: the credentials given apart
        from the URL and the TLS files. Holds the password in clear: never log it.
        """
        options: dict[str, Any] = {}
        if _given(self.redis_username):
            options["username"] = self.redis_username
        if self.redis_password is not None and _given(self.redis_password):
            options["password"] = self.redis_password.get_secret_value()
        if self.redis_ssl_ca_file is not None:
            options["ssl_ca_certs"] = str(self.redis_ssl_ca_file)
        if self.redis_ssl_cert_file is not None:
            options["ssl_certfile"] = str(self.redis_ssl_cert_file)
        if self.redis_ssl_key_file is not None:
            options["ssl_keyfile"] = str(self.redis_ssl_key_file)
        return options

    def scrub(self, text: str) -> str:
        """Return ``text`` with every secret value of these settings replaced by ``***``.

        For messages that quote third-party errors, which might echo what they were given.
        """
        for secret in self._secret_values():
            text = text.replace(secret, "***")
        return text

    def _secret_values(self) -> list[str]:
        values = [
            secret.get_secret_value()
            for secret in (
                self.kafka_sasl_password,
                self.redis_password,
                self.http_token,
                self.webhook_url,
                self.redis_url,
            )
            if secret is not None
        ]
        for url in (self.redis_url, self.webhook_url):
            if url is None:
                continue
            try:
                parts = urllib.parse.urlsplit(url.get_secret_value())
            except ValueError:
                continue
            if parts.password:
                values += [parts.password, urllib.parse.unquote(parts.password)]
            if url is self.webhook_url:
                # A webhook's path and query hold its token (e.g. Slack's /services/T/B/X).
                values += [parts.path if len(parts.path) > 1 else "", parts.query]
        # Also as Python shows them inside a str or bytes repr (a logged request object).
        values += [repr(v)[1:-1] for v in values if v] + [
            repr(v.encode())[2:-1] for v in values if v
        ]
        # Longest first, so a URL goes before the password inside it.
        return sorted({v for v in values if v}, key=len, reverse=True)

    def check_files(self) -> None:
        """Check that every TLS file named by the settings can be read.

        Kept out of validation so settings can be built (and checked) where the files do not
        exist, e.g. from a deployment manifest; the worker calls it at start-up.

        Raises:
            ConfigError: Naming the first variable whose file cannot be read.
        """
        for field in _FILE_FIELDS:
            path: Path | None = getattr(self, field)
            if path is None:
                continue
            try:
                with path.open("rb"):
                    pass
            except OSError as exc:
                raise ConfigError(
                    f"{ENV_PREFIX}{field.upper()}: cannot read {path} ({exc.strerror or exc})"
                ) from None


_FILE_FIELDS = (
    "kafka_ssl_cafile",
    "kafka_ssl_certfile",
    "kafka_ssl_keyfile",
    "redis_ssl_ca_file",
    "redis_ssl_cert_file",
    "redis_ssl_key_file",
)


def _given(value: str | SecretStr | None) -> bool:
    """Whether a setting has a non-empty value (an empty env var counts as unset)."""
    if isinstance(value, SecretStr):
        return bool(value.get_secret_value())
    return bool(value)


def redacted(url: str) -> str:
    """Return what may be logged of a URL: scheme, host and port; never credentials or path.

    A path or query can hold a token (webhook URLs do) and the user part a password, so both
    go; ``***@`` shows that credentials were given.

    >>> redacted("redis://:s3cret@redis.internal:6380/0")
    'redis://***@redis.internal:6380'
    >>> redacted("https://hooks.example.com/services/team/channel/secret-part")
    'https://hooks.example.com'
    >>> redacted("unix:///run/redis.sock?db=0")
    'unix://'
    """
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "(unparseable URL, not shown)"
    if ":" in host:
        host = f"[{host}]"
    credentials = "***@" if "@" in parts.netloc else ""
    return f"{parts.scheme}://{credentials}{host}" + ("" if port is None else f":{port}")


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
