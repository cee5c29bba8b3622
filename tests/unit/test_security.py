"""Security settings, secret redaction, the metrics collector and the token-protected endpoints."""

from __future__ import annotations

import doctest
import os
import ssl
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import faust
import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from streamwatch import http_server, metrics
from streamwatch import settings as settings_module
from streamwatch.exceptions import ConfigError
from streamwatch.http_server import bearer_token_matches, build_http_app
from streamwatch.metrics import (
    METRIC_NAMES,
    PartitionSample,
    WorkerSample,
    register_worker_metrics,
)
from streamwatch.settings import ENV_PREFIX, Settings, load_settings, redacted
from tests.certs import make_tls_files

KAFKA_PASSWORD = "kafka-pw-Zq81"
REDIS_PASSWORD = "redis-pw-Xv42"
HTTP_TOKEN = "http-token-Lm93-0123456789"
WEBHOOK_TOKEN = "hook-token-Pw77"
SECRETS = (KAFKA_PASSWORD, REDIS_PASSWORD, HTTP_TOKEN, WEBHOOK_TOKEN)

SASL = {
    "kafka_security_protocol": "SASL_SSL",
    "kafka_sasl_mechanism": "SCRAM-SHA-512",
    "kafka_sasl_username": "streamwatch",
    "kafka_sasl_password": KAFKA_PASSWORD,
}


@pytest.fixture(autouse=True)
def _no_streamwatch_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith(ENV_PREFIX):
            monkeypatch.delenv(name)


def settings(**overrides: Any) -> Settings:
    return load_settings(environ={}, **overrides)


def config_error(**overrides: Any) -> str:
    with pytest.raises(ConfigError) as info:
        settings(**overrides)
    message = str(info.value)
    assert "\n" not in message
    return message


def all_secrets_set() -> Settings:
    return settings(
        **SASL,
        redis_url=f"rediss://:{REDIS_PASSWORD}@redis.internal:6380/0",
        http_token=HTTP_TOKEN,
        webhook_url=f"https://hooks.example.com/services/{WEBHOOK_TOKEN}",
    )


# --- secrets are never shown ------------------------------------------------------------------


def test_repr_str_and_json_of_settings_hide_every_secret() -> None:
    s = all_secrets_set()
    for shown in (repr(s), str(s), s.model_dump_json(), str(s.model_dump())):
        for secret in SECRETS:
            assert secret not in shown


def test_a_separate_redis_password_is_hidden_too() -> None:
    s = settings(redis_password=REDIS_PASSWORD)
    assert REDIS_PASSWORD not in repr(s)
    assert s.redis_options() == {"password": REDIS_PASSWORD}


@pytest.mark.parametrize(
    ("overrides", "names"),
    [
        ({"redis_url": f"http://:{REDIS_PASSWORD}@db:6379/0"}, "STREAMWATCH_REDIS_URL"),
        (
            {"redis_url": f"redis://:{REDIS_PASSWORD}@db/0", "redis_password": REDIS_PASSWORD},
            "STREAMWATCH_REDIS_PASSWORD",
        ),
        ({"http_token": "short"}, "STREAMWATCH_HTTP_TOKEN"),
        ({"http_token": HTTP_TOKEN + " with spaces"}, "STREAMWATCH_HTTP_TOKEN"),
        ({"kafka_sasl_password": KAFKA_PASSWORD}, "STREAMWATCH_KAFKA_SECURITY_PROTOCOL"),
    ],
)
def test_configuration_errors_name_the_variable_but_never_echo_a_secret(
    overrides: dict[str, str], names: str
) -> None:
    message = config_error(**overrides)
    assert names in message
    for secret in (*SECRETS, "short", "with spaces"):
        assert secret not in message


def test_a_validation_error_outside_load_settings_hides_its_input() -> None:
    with pytest.raises(ValueError, match="STREAMWATCH_REDIS_URL") as info:
        Settings(redis_url=f"http://:{REDIS_PASSWORD}@db:6379/0")
    assert REDIS_PASSWORD not in str(info.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379"),
        (f"redis://:{REDIS_PASSWORD}@db:6379/0", "redis://***@db:6379"),
        (
            f"rediss://user:{REDIS_PASSWORD}@[::1]:6380/2?ssl_cert_reqs=none",
            "rediss://***@[::1]:6380",
        ),
        (f"redis://{REDIS_PASSWORD}@db", "redis://***@db"),
        (f"https://hooks.example.com/services/{WEBHOOK_TOKEN}?t=1", "https://hooks.example.com"),
        (f"redis://:{REDIS_PASSWORD}@db:notaport/0", "(unparseable URL, not shown)"),
        ("unix:///run/redis.sock?db=0", "unix://"),
    ],
)
def test_redacted_keeps_scheme_host_and_port_only(url: str, shown: str) -> None:
    assert redacted(url) == shown


def test_scrub_removes_every_secret_value_including_the_url_password() -> None:
    s = all_secrets_set()
    text = (
        f"sasl {KAFKA_PASSWORD} url {s.redis_url.get_secret_value()} auth {REDIS_PASSWORD}"
        f" token {HTTP_TOKEN} POST /services/{WEBHOOK_TOKEN} failed"
    )
    scrubbed = s.scrub(text)
    assert scrubbed == "sasl *** url *** auth *** token *** POST *** failed"


def test_a_percent_encoded_url_password_is_scrubbed_decoded_too() -> None:
    s = settings(redis_url="redis://:p%40ss-word-1@db/0")
    assert s.scrub("AUTH p@ss-word-1 failed") == "AUTH *** failed"


def test_the_docstring_examples_hold() -> None:
    for module in (settings_module, metrics, http_server):
        assert doctest.testmod(module).failed == 0


# --- Kafka SASL / TLS -------------------------------------------------------------------------


def test_sasl_needs_user_and_password_naming_both_variables() -> None:
    message = config_error(kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="PLAIN")
    assert "STREAMWATCH_KAFKA_SASL_USERNAME and STREAMWATCH_KAFKA_SASL_PASSWORD" in message


def test_sasl_without_a_password_names_the_password_variable() -> None:
    message = config_error(
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="PLAIN",
        kafka_sasl_username="u",
        kafka_sasl_password="",
    )
    assert message.endswith("needs STREAMWATCH_KAFKA_SASL_PASSWORD")


def test_sasl_needs_a_mechanism_and_lists_the_valid_ones() -> None:
    message = config_error(**{**SASL, "kafka_sasl_mechanism": None})
    assert "STREAMWATCH_KAFKA_SASL_MECHANISM" in message
    assert "PLAIN, SCRAM-SHA-256, SCRAM-SHA-512" in message


def test_an_unknown_mechanism_lists_the_valid_ones() -> None:
    message = config_error(**{**SASL, "kafka_sasl_mechanism": "GSSAPI"})
    assert message == (
        "invalid configuration: STREAMWATCH_KAFKA_SASL_MECHANISM: Input should be 'PLAIN',"
        " 'SCRAM-SHA-256' or 'SCRAM-SHA-512'"
    )


def test_protocol_and_mechanism_are_case_insensitive() -> None:
    s = settings(**{**SASL, "kafka_security_protocol": "sasl_ssl", "kafka_sasl_mechanism": "plain"})
    assert (s.kafka_security_protocol, s.kafka_sasl_mechanism) == ("SASL_SSL", "PLAIN")


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            {"kafka_sasl_username": "u"},
            "STREAMWATCH_KAFKA_SASL_USERNAME set but STREAMWATCH_KAFKA_SECURITY_PROTOCOL is"
            " PLAINTEXT",
        ),
        (
            {"kafka_ssl_cafile": "/ca.pem"},
            "STREAMWATCH_KAFKA_SSL_CAFILE set but STREAMWATCH_KAFKA_SECURITY_PROTOCOL is"
            " PLAINTEXT, which does not use TLS",
        ),
        (
            {**SASL, "kafka_security_protocol": "SASL_PLAINTEXT", "kafka_ssl_certfile": "/c.pem"},
            "STREAMWATCH_KAFKA_SSL_CERTFILE set but STREAMWATCH_KAFKA_SECURITY_PROTOCOL is"
            " SASL_PLAINTEXT",
        ),
        (
            {"kafka_security_protocol": "SSL", "kafka_ssl_keyfile": "/k.pem"},
            "STREAMWATCH_KAFKA_SSL_KEYFILE needs STREAMWATCH_KAFKA_SSL_CERTFILE",
        ),
    ],
)
def test_settings_that_would_be_ignored_are_rejected(
    overrides: dict[str, str], expected: str
) -> None:
    assert expected in config_error(**overrides)


def test_librdkafka_config_carries_sasl_and_mutual_tls() -> None:
    s = settings(
        **SASL,
        kafka_ssl_cafile="/etc/kafka/ca.pem",
        kafka_ssl_certfile="/etc/kafka/client.pem",
        kafka_ssl_keyfile="/etc/kafka/client.key",
    )
    assert s.librdkafka_security() == {
        "security.protocol": "sasl_ssl",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "streamwatch",
        "sasl.password": KAFKA_PASSWORD,
        "ssl.ca.location": "/etc/kafka/ca.pem",
        "ssl.certificate.location": "/etc/kafka/client.pem",
        "ssl.key.location": "/etc/kafka/client.key",
    }


def test_plaintext_librdkafka_config_has_only_the_protocol() -> None:
    assert settings().librdkafka_security() == {"security.protocol": "plaintext"}


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA and a client certificate signed by it, with its key (once per module)."""
    return make_tls_files(tmp_path_factory.mktemp("tls"), "streamwatch")


def test_faust_gets_the_same_sasl_and_tls_settings(tls_files: dict[str, Path]) -> None:
    from streamwatch.worker import _credentials

    s = settings(
        **SASL,
        kafka_ssl_cafile=str(tls_files["ca.pem"]),
        kafka_ssl_certfile=str(tls_files["client.pem"]),
        kafka_ssl_keyfile=str(tls_files["client.key"]),
    )
    credentials = _credentials(s)
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.protocol.value == "SASL_SSL"
    assert credentials.mechanism.value == "SCRAM-SHA-512"
    assert (credentials.username, credentials.password) == ("streamwatch", KAFKA_PASSWORD)
    assert isinstance(credentials.ssl_context, ssl.SSLContext)
    assert credentials.ssl_context.verify_mode == ssl.CERT_REQUIRED
    assert KAFKA_PASSWORD not in repr(credentials)


def test_faust_gets_tls_without_sasl(tls_files: dict[str, Path]) -> None:
    from streamwatch.worker import _credentials

    s = settings(kafka_security_protocol="SSL", kafka_ssl_cafile=str(tls_files["ca.pem"]))
    assert isinstance(_credentials(s), faust.SSLCredentials)
    assert _credentials(settings()) is None


def test_a_missing_tls_file_fails_naming_its_variable(tmp_path: Path) -> None:
    s = settings(kafka_security_protocol="SSL", kafka_ssl_cafile=str(tmp_path / "nope.pem"))
    with pytest.raises(ConfigError, match=r"^STREAMWATCH_KAFKA_SSL_CAFILE: cannot read .*nope"):
        s.check_files()


# --- Redis AUTH / TLS -------------------------------------------------------------------------


def test_redis_tls_files_and_separate_credentials_become_client_options() -> None:
    s = settings(
        redis_url="rediss://redis.internal:6380/0",
        redis_username="streamwatch",
        redis_password=REDIS_PASSWORD,
        redis_ssl_ca_file="/etc/redis/ca.pem",
        redis_ssl_cert_file="/etc/redis/client.pem",
        redis_ssl_key_file="/etc/redis/client.key",
    )
    assert s.redis_options() == {
        "username": "streamwatch",
        "password": REDIS_PASSWORD,
        "ssl_ca_certs": "/etc/redis/ca.pem",
        "ssl_certfile": "/etc/redis/client.pem",
        "ssl_keyfile": "/etc/redis/client.key",
    }


def test_a_password_only_in_the_url_needs_no_options() -> None:
    assert settings(redis_url=f"redis://:{REDIS_PASSWORD}@db:6379/0").redis_options() == {}


def test_the_client_of_the_cli_gets_the_redis_options() -> None:
    from streamwatch.client import redis_from_settings

    s = settings(
        redis_url="rediss://db:6380/0",
        redis_password=REDIS_PASSWORD,
        redis_ssl_ca_file="/etc/redis/ca.pem",
    )
    client = redis_from_settings(s, socket_connect_timeout=1.0)
    kwargs = client.connection_pool.connection_kwargs
    assert kwargs["password"] == REDIS_PASSWORD
    assert kwargs["ssl_ca_certs"] == "/etc/redis/ca.pem"
    assert (kwargs["socket_timeout"], kwargs["socket_connect_timeout"]) == (5.0, 1.0)
    assert REDIS_PASSWORD not in repr(client)
    client.close()


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            {"redis_url": "redis://db/0", "redis_ssl_ca_file": "/ca.pem"},
            "STREAMWATCH_REDIS_SSL_CA_FILE set but STREAMWATCH_REDIS_URL is not a rediss://",
        ),
        (
            {"redis_url": "rediss://db/0", "redis_ssl_key_file": "/k.pem"},
            "STREAMWATCH_REDIS_SSL_KEY_FILE needs STREAMWATCH_REDIS_SSL_CERT_FILE",
        ),
        (
            {"redis_url": "redis://me@db/0", "redis_username": "me"},
            "STREAMWATCH_REDIS_USERNAME is set and STREAMWATCH_REDIS_URL carries a user name",
        ),
        ({"redis_url": "db:6379"}, "STREAMWATCH_REDIS_URL must start with redis://"),
    ],
)
def test_inconsistent_redis_settings_are_rejected(overrides: dict[str, str], expected: str) -> None:
    assert expected in config_error(**overrides)


# --- HTTP endpoints and Faust's web server ----------------------------------------------------


def test_metrics_port_defaults_to_off_and_must_not_clash_with_faust() -> None:
    assert settings().metrics_port == 0
    assert "STREAMWATCH_METRICS_PORT must differ" in config_error(metrics_port=7000, web_port=7000)


def test_faust_web_server_listens_on_loopback_only() -> None:
    from streamwatch.worker import create_app

    app = create_app(settings(web_port=16066))
    assert app.conf.web_bind == "127.0.0.1"


@pytest.mark.parametrize(
    ("header", "matches"),
    [
        (f"Bearer {HTTP_TOKEN}", True),
        (f"bearer  {HTTP_TOKEN} ", True),
        (f"Bearer {HTTP_TOKEN}x", False),
        (f"Basic {HTTP_TOKEN}", False),
        ("Bearer", False),
        ("", False),
        (None, False),
    ],
)
def test_bearer_token_matching(header: str | None, matches: bool) -> None:
    assert bearer_token_matches(header, HTTP_TOKEN) is matches


class FakeRuntime:
    def __init__(self, sample: WorkerSample) -> None:
        self.sample = sample

    def metrics_sample(self) -> WorkerSample:
        return self.sample

    def health(self) -> Mapping[str, Any]:
        return {"partitions_owned": [p.partition for p in self.sample.partitions]}


SAMPLE = WorkerSample(
    partitions=(
        PartitionSample(
            partition=3,
            counters={
                "inference_messages": 10,
                "inference_events": 250,
                "business_messages": 2,
                "business_events": 4,
                "late_events_10000ms": 5,
                "late_events_60000ms": 1,
                "windows_closed": 7,
                "alerts_emitted": 2,
                "replayed_messages_skipped": 9,
                "feedback_matched": 4,  # not exported
            },
            deadletters={"invalid_json": 1, "schema_violation": 3},
            watermark_ms=1_000_000,
        ),
        PartitionSample(0, {}, {}, None),
    ),
    partitions_owned=2,
    redis_retries=4,
)


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_collector_exposes_the_processor_counts_at_scrape_time() -> None:
    runtime = FakeRuntime(SAMPLE)
    registry = CollectorRegistry()
    register_worker_metrics(registry, runtime, wall_ms=lambda: 1_012_500)
    got = samples(registry)
    p3 = (("partition", "3"),)

    def at(name: str, *labels: tuple[str, str]) -> float:
        return got[(name, tuple(sorted((*p3, *labels))))]

    assert at("streamwatch_messages_total", ("topic_kind", "inference")) == 10
    assert at("streamwatch_messages_total", ("topic_kind", "feedback")) == 0
    assert at("streamwatch_events_total", ("topic_kind", "inference")) == 250
    assert at("streamwatch_events_total", ("topic_kind", "business")) == 4
    assert at("streamwatch_deadletters_total", ("reason", "invalid_json")) == 1
    assert at("streamwatch_deadletters_total", ("reason", "schema_violation")) == 3
    assert at("streamwatch_late_events_total", ("window_size_ms", "10000")) == 5
    assert at("streamwatch_late_events_total", ("window_size_ms", "60000")) == 1
    assert at("streamwatch_windows_closed_total") == 7
    assert at("streamwatch_alerts_emitted_total") == 2
    assert at("streamwatch_replayed_messages_skipped_total") == 9
    assert at("streamwatch_watermark_lag_seconds") == 12.5
    assert got[("streamwatch_redis_retries_total", ())] == 4
    assert got[("streamwatch_partitions_owned", ())] == 2
    # Partition 0 has no watermark yet: no lag sample rather than a made-up one.
    assert ("streamwatch_watermark_lag_seconds", (("partition", "0"),)) not in got
    assert not any("feedback_matched" in name for name, _ in got)

    # Read again at the next scrape, not copied at registration.
    runtime.sample = WorkerSample((), partitions_owned=0, redis_retries=5)
    got = samples(registry)
    assert got[("streamwatch_redis_retries_total", ())] == 5
    assert not any(labels for _, labels in got)


def test_every_exported_name_follows_the_naming_rules() -> None:
    registry = CollectorRegistry()
    register_worker_metrics(registry, FakeRuntime(SAMPLE))
    exported = {name for name, _ in samples(registry)}
    assert exported == set(METRIC_NAMES)
    for name, (kind, _, _) in METRIC_NAMES.items():
        assert name.startswith("streamwatch_")
        assert name.endswith("_total") == (kind == "counter"), name


def test_the_registry_is_a_parameter_not_a_global() -> None:
    first, second = CollectorRegistry(), CollectorRegistry()
    register_worker_metrics(first, FakeRuntime(SAMPLE))
    register_worker_metrics(second, FakeRuntime(SAMPLE))  # no clash: separate registries
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        register_worker_metrics(first, FakeRuntime(SAMPLE))


@pytest.fixture
async def http_client() -> AsyncIterator[TestClient[Any, Any]]:
    registry = CollectorRegistry()
    runtime = FakeRuntime(SAMPLE)
    register_worker_metrics(registry, runtime)
    async with TestClient(TestServer(build_http_app(registry, runtime.health, HTTP_TOKEN))) as c:
        yield c


@pytest.mark.parametrize("path", ["/metrics", "/healthz", "/nowhere"])
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token-0123456789"},
        {"Authorization": f"Basic {HTTP_TOKEN}"},
        {"Authorization": HTTP_TOKEN},
    ],
)
async def test_requests_without_the_token_get_401(
    http_client: TestClient[Any, Any], path: str, headers: dict[str, str]
) -> None:
    response = await http_client.get(path, headers=headers)
    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="streamwatch"'
    assert HTTP_TOKEN not in await response.text()


async def test_requests_with_the_token_are_served(http_client: TestClient[Any, Any]) -> None:
    auth = {"Authorization": f"Bearer {HTTP_TOKEN}"}
    response = await http_client.get("/metrics", headers=auth)
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    assert 'streamwatch_deadletters_total{partition="3",reason="invalid_json"} 1.0' in (
        await response.text()
    )
    health = await http_client.get("/healthz", headers=auth)
    assert (health.status, await health.json()) == (
        200,
        {"status": "ok", "partitions_owned": [3, 0]},
    )


async def test_without_a_token_the_endpoints_are_open() -> None:
    registry = CollectorRegistry()
    runtime = FakeRuntime(SAMPLE)
    async with TestClient(TestServer(build_http_app(registry, runtime.health, None))) as client:
        assert (await client.get("/healthz")).status == 200


# --- logging --------------------------------------------------------------------------------


def test_the_log_filter_scrubs_messages_arguments_and_tracebacks() -> None:
    import io
    import logging

    from streamwatch.worker import ScrubSecrets

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(ScrubSecrets(all_secrets_set()))
    logger = logging.getLogger("test_security.scrub")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        # As aiokafka logs a SASL PLAIN request at debug level:
        logger.warning(
            "Request: %r", {"sasl_auth_bytes": f"\0streamwatch\0{KAFKA_PASSWORD}".encode()}
        )
        logger.warning("token %s and 100%% done", HTTP_TOKEN)
        try:
            raise ValueError(f"AUTH {REDIS_PASSWORD} failed")
        except ValueError:
            logger.exception("redis said")
        logger.warning("nothing secret %s", "here")
    finally:
        logger.removeHandler(handler)
    lines = stream.getvalue()
    for secret in SECRETS:
        assert secret not in lines
    assert "\\x00streamwatch\\x00***'" in lines
    assert "token *** and 100% done" in lines
    assert "ValueError: AUTH *** failed" in lines
    assert "nothing secret here" in lines
