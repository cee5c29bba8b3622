"""A real worker behind SASL_SSL Kafka and TLS + AUTH Redis: secrets stay out of its log.

Tansu (0.6) cannot authenticate clients and the bundled Valkey has no TLS, so each gets a front
door here: an asyncio server that terminates TLS (demanding a client certificate) and, for Kafka,
answers SaslHandshake / SaslAuthenticate itself, checking one PLAIN user and password, before
relaying the connection byte for byte. Tansu advertises the front door's port, so every Kafka
connection (worker, admin, the test's clients) has to pass it. Redis itself runs with
``requirepass``, so the password is checked by the real server.
"""

from __future__ import annotations

import asyncio
import ssl
import struct
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import redis
from confluent_kafka import Producer
from prometheus_client.parser import text_string_to_metric_families

from streamwatch.adapters.kafka_admin import ensure_topics
from streamwatch.client import StreamwatchClient
from streamwatch.embedded import LOOPBACK, EmbeddedBroker, EmbeddedRedis, free_port
from streamwatch.exceptions import ConfigError
from streamwatch.settings import load_settings
from streamwatch.supervise import WorkerProcess
from streamwatch.worker import check_redis
from tests.certs import make_tls_files
from tests.integration.conftest import Pipeline, _as_fields
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

SASL_USER = "streamwatch"
KAFKA_PASSWORD = f"kafka-pw-{uuid.uuid4().hex[:12]}"
REDIS_PASSWORD = f"redis-pw-{uuid.uuid4().hex[:12]}"
HTTP_TOKEN = f"http-token-{uuid.uuid4().hex}"

# Kafka API keys and the error code the front door uses.
API_VERSIONS, SASL_HANDSHAKE, SASL_AUTHENTICATE = 18, 17, 36
SASL_AUTHENTICATION_FAILED = 58


# --- certificates -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, both signed by it."""
    return make_tls_files(tmp_path_factory.mktemp("tls"), SASL_USER)


def server_context(tls: dict[str, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(tls["ca.pem"]))
    context.load_cert_chain(str(tls["server.pem"]), str(tls["server.key"]))
    context.verify_mode = ssl.CERT_REQUIRED  # mutual TLS: a client without a certificate fails
    return context


# --- front doors ------------------------------------------------------------------------------


class FrontDoor:
    """TLS (and optionally SASL/PLAIN) in front of a plain server on 127.0.0.1."""

    def __init__(
        self, upstream_port: int, context: ssl.SSLContext, sasl: tuple[str, str] | None = None
    ) -> None:
        self.port = free_port()
        self.authenticated: list[str] = []
        self.refused: list[str] = []
        self._upstream_port = upstream_port
        self._context = context
        self._sasl = sasl
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    def start(self) -> None:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, LOOPBACK, self.port, ssl=self._context), self._loop
        )
        self._server = future.result(10)

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(LOOPBACK, self._upstream_port)
        except OSError:
            writer.close()
            return
        pump = asyncio.ensure_future(_relay(up_reader, writer))
        try:
            if self._sasl is None:
                await _relay(reader, up_writer)
            else:
                await self._kafka(reader, writer, up_writer)
        except (OSError, asyncio.IncompleteReadError, ssl.SSLError, asyncio.CancelledError):
            pass  # the client or server hung up, or the door is closing
        finally:
            pump.cancel()
            for w in (writer, up_writer):
                w.close()

    async def _kafka(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        upstream: asyncio.StreamWriter,
    ) -> None:
        """Answer the SASL requests; relay the rest only once the client has authenticated."""
        authenticated = False
        while True:
            size = await reader.readexactly(4)
            frame = await reader.readexactly(int.from_bytes(size, "big"))
            api_key, version, correlation_id = struct.unpack_from(">hhi", frame)
            if api_key == SASL_HANDSHAKE:
                _reply(writer, correlation_id, struct.pack(">hi", 0, 1) + _string(b"PLAIN"))
            elif api_key == SASL_AUTHENTICATE:
                _, user, password = _auth_bytes(frame, version).split(b"\0", 2)
                ok = (user.decode(), password.decode()) == self._sasl
                (self.authenticated if ok else self.refused).append(user.decode())
                _reply_authenticate(writer, correlation_id, version, ok)
                if not ok:
                    await writer.drain()
                    return
                authenticated = True
            elif authenticated or api_key == API_VERSIONS:
                upstream.write(size + frame)
                await upstream.drain()
            else:
                return  # anything else before authenticating: hang up, as a broker would
            await writer.drain()


async def _relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()


def _string(value: bytes) -> bytes:
    return struct.pack(">h", len(value)) + value


def _uvarint(data: bytes, offset: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[offset]
        offset += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, offset
        shift += 7


def _auth_bytes(frame: bytes, version: int) -> bytes:
    (client_id_length,) = struct.unpack_from(">h", frame, 8)
    offset = 10 + max(client_id_length, 0)
    if version < 2:
        (length,) = struct.unpack_from(">i", frame, offset)
        return frame[offset + 4 : offset + 4 + length]
    tags, offset = _uvarint(frame, offset)  # flexible request header: tagged fields
    for _ in range(tags):
        _, offset = _uvarint(frame, offset)
        size, offset = _uvarint(frame, offset)
        offset += size
    length, offset = _uvarint(frame, offset)
    return frame[offset : offset + length - 1]


def _reply(writer: asyncio.StreamWriter, correlation_id: int, body: bytes) -> None:
    payload = struct.pack(">i", correlation_id) + body
    writer.write(struct.pack(">i", len(payload)) + payload)


def _reply_authenticate(
    writer: asyncio.StreamWriter, correlation_id: int, version: int, ok: bool
) -> None:
    error = 0 if ok else SASL_AUTHENTICATION_FAILED
    message = None if ok else b"Authentication failed: invalid username or password"
    if version < 2:
        body = struct.pack(">h", error)
        body += struct.pack(">h", -1) if message is None else _string(message)
        body += struct.pack(">i", 0)  # no auth bytes
        if version == 1:
            body += struct.pack(">q", 0)  # session lifetime
        _reply(writer, correlation_id, body)
        return
    body = b"\0" + struct.pack(">h", error)  # response header tagged fields, error code
    body += b"\0" if message is None else bytes([len(message) + 1]) + message
    body += b"\1" + struct.pack(">q", 0) + b"\0"  # empty auth bytes, lifetime, tagged fields
    _reply(writer, correlation_id, body)


class BrokerBehindDoor(EmbeddedBroker):
    """Tansu advertising the front door's port instead of its own."""

    def __init__(self, advertised_port: int, log_dir: Path) -> None:
        super().__init__(log_dir=log_dir)
        self.advertised_port = advertised_port

    def _arguments(self) -> list[str]:
        arguments = super()._arguments()
        index = arguments.index("--advertised-listener-url") + 1
        arguments[index] = f"tcp://{LOOPBACK}:{self.advertised_port}"
        return arguments


@pytest.fixture(scope="module")
def kafka_door(
    tls: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FrontDoor]:
    broker_port = free_port()
    door = FrontDoor(broker_port, server_context(tls), sasl=(SASL_USER, KAFKA_PASSWORD))
    door.start()
    broker = BrokerBehindDoor(door.port, tmp_path_factory.mktemp("tansu-sasl"))
    broker.port = broker_port
    try:
        with broker:
            yield door
    finally:
        door.stop()


@pytest.fixture(scope="module")
def redis_door(
    tls: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FrontDoor]:
    with EmbeddedRedis(log_dir=tmp_path_factory.mktemp("redis-auth")) as server:
        client = redis.Redis(host=LOOPBACK, port=server.port)
        client.config_set("requirepass", REDIS_PASSWORD)
        client.close()
        door = FrontDoor(server.port, server_context(tls))
        door.start()
        try:
            yield door
        finally:
            door.stop()


# --- the worker -------------------------------------------------------------------------------


class SecurePipeline(Pipeline):
    def logs(self) -> str:
        """The end of each worker's log without its (many) debug lines."""
        parts = []
        for worker in self.workers:
            lines = worker.log_path.read_text(errors="replace").splitlines()
            kept = [line for line in lines if "[DEBUG]" not in line][-60:]
            parts.append(f"--- {worker.log_path}\n" + "\n".join(kept))
        return "\n\n".join(parts)

    def producer(self) -> Producer:
        return Producer(
            {
                "bootstrap.servers": self.settings.kafka_bootstrap,
                "linger.ms": 5,
                **self.settings.librdkafka_security(),
            }
        )


def secure_env(
    kafka_door: FrontDoor, redis_door: FrontDoor, tls: dict[str, Path], redis_password: str
) -> dict[str, str]:
    name = f"t{uuid.uuid4().hex[:10]}"
    return {
        "STREAMWATCH_KAFKA_BOOTSTRAP": f"{LOOPBACK}:{kafka_door.port}",
        "STREAMWATCH_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "STREAMWATCH_KAFKA_SASL_MECHANISM": "PLAIN",
        "STREAMWATCH_KAFKA_SASL_USERNAME": SASL_USER,
        "STREAMWATCH_KAFKA_SASL_PASSWORD": KAFKA_PASSWORD,
        "STREAMWATCH_KAFKA_SSL_CAFILE": str(tls["ca.pem"]),
        "STREAMWATCH_KAFKA_SSL_CERTFILE": str(tls["client.pem"]),
        "STREAMWATCH_KAFKA_SSL_KEYFILE": str(tls["client.key"]),
        "STREAMWATCH_REDIS_URL": f"rediss://:{redis_password}@{LOOPBACK}:{redis_door.port}/0",
        "STREAMWATCH_REDIS_SSL_CA_FILE": str(tls["ca.pem"]),
        "STREAMWATCH_REDIS_SSL_CERT_FILE": str(tls["client.pem"]),
        "STREAMWATCH_REDIS_SSL_KEY_FILE": str(tls["client.key"]),
        "STREAMWATCH_HTTP_TOKEN": HTTP_TOKEN,
        "STREAMWATCH_METRICS_PORT": str(free_port()),
        "STREAMWATCH_METRICS_HOST": LOOPBACK,
        "STREAMWATCH_TOPIC_PREFIX": name,
        "STREAMWATCH_GROUP_ID": name,
        "STREAMWATCH_PARTITIONS": "2",
        "STREAMWATCH_WINDOWS": "1s,5s",
        "STREAMWATCH_ALLOWED_LATENESS": "200ms",
        "STREAMWATCH_IDLE_TIMEOUT": "1s",
        "STREAMWATCH_BATCH_MAX_WAIT": "50ms",
        # The most talkative level: whatever the libraries log must be clean too.
        "STREAMWATCH_LOG_LEVEL": "debug",
    }


@pytest.fixture
def secure_pipeline(
    kafka_door: FrontDoor, redis_door: FrontDoor, tls: dict[str, Path], tmp_path: Path
) -> Iterator[SecurePipeline]:
    env = secure_env(kafka_door, redis_door, tls, REDIS_PASSWORD)
    settings = load_settings(environ={}, **_as_fields(env))
    ensure_topics(settings)
    client = StreamwatchClient.from_settings(settings)
    pipeline = SecurePipeline(settings, env, tmp_path, client)
    yield pipeline
    for worker in pipeline.workers:
        worker.stop()
    client.close()


def get(url: str, token: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a listening TCP socket on ``port`` (Linux /proc/net)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:
                found.add(address)
    return found


def deadletters(text: str) -> dict[str, float]:
    return {
        sample.labels["reason"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "streamwatch_deadletters_total"
    }


def test_a_worker_behind_sasl_and_tls_serves_metrics_and_never_logs_a_secret(
    secure_pipeline: SecurePipeline, kafka_door: FrontDoor
) -> None:
    pipeline = secure_pipeline
    web_port = free_port()
    worker = pipeline.start_worker(STREAMWATCH_WEB_PORT=str(web_port))
    pipeline.wait_until_consuming()
    assert SASL_USER in kafka_door.authenticated and not kafka_door.refused

    now_ms = time.time_ns() // 1_000_000
    events = [
        {
            "request_id": f"r{i}",
            "model_id": "fraud",
            "model_version": "1",
            "timestamp": (now_ms - 10_000 + i) / 1000,
            "latency_ms": 12.5,
            "status": "ok",
        }
        for i in range(50)
    ]
    pipeline.produce("inference", [orjson.dumps(events), b"{not json"])
    wait_for(
        lambda: pipeline.counter("inference_events") >= 50,
        60,
        "the events to be applied",
        on_timeout=pipeline.logs,
    )

    metrics_url = f"http://{LOOPBACK}:{pipeline.env['STREAMWATCH_METRICS_PORT']}"
    assert get(f"{metrics_url}/metrics")[0] == 401
    assert get(f"{metrics_url}/metrics", "wrong-token-0123456789abcdef")[0] == 401
    assert get(f"{metrics_url}/healthz")[0] == 401
    status, body = get(f"{metrics_url}/healthz", HTTP_TOKEN)
    assert status == 200 and orjson.loads(body)["partitions_owned"] == [0, 1]

    def invalid_json_counted() -> float:
        status, body = get(f"{metrics_url}/metrics", HTTP_TOKEN)
        assert status == 200
        return deadletters(body.decode()).get("invalid_json", 0)

    assert wait_for(invalid_json_counted, 60, "the dead-letter counter", on_timeout=pipeline.logs)
    _, body = get(f"{metrics_url}/metrics", HTTP_TOKEN)
    text = body.decode()
    assert "streamwatch_partitions_owned 2.0" in text
    assert 'streamwatch_events_total{partition="' in text

    # Faust's own, unauthenticated web server is reachable from this host only.
    if Path("/proc/net/tcp").exists():
        assert listening_addresses(web_port) == {"0100007F"}  # 127.0.0.1

    worker.stop()
    log = worker.log_path.read_text(errors="replace")
    assert "Authenticated as streamwatch via PLAIN" in log  # aiokafka: SASL was used
    for secret in (KAFKA_PASSWORD, REDIS_PASSWORD, HTTP_TOKEN):
        assert secret not in log
    assert f"rediss://***@{LOOPBACK}:" in log  # where it connected, redacted


def test_a_wrong_redis_password_stops_the_worker_with_a_clear_error(
    kafka_door: FrontDoor, redis_door: FrontDoor, tls: dict[str, Path], tmp_path: Path
) -> None:
    wrong = f"wrong-pw-{uuid.uuid4().hex[:12]}"
    env = secure_env(kafka_door, redis_door, tls, wrong)
    env["STREAMWATCH_WEB_PORT"] = str(free_port())
    env["STREAMWATCH_DATA_DIR"] = str(tmp_path / "worker")
    worker = WorkerProcess(env, tmp_path / "worker.log")
    worker.start()
    try:
        assert worker.wait(60) == 2, worker.log_tail()
    finally:
        worker.stop()
    log = worker.log_path.read_text(errors="replace")
    assert f"Redis at rediss://***@{LOOPBACK}:{redis_door.port} refused the credentials" in log
    assert "STREAMWATCH_REDIS_URL" in log
    for secret in (wrong, REDIS_PASSWORD, KAFKA_PASSWORD, HTTP_TOKEN):
        assert secret not in log


def test_an_unreachable_redis_does_not_stop_start_up() -> None:
    # The worker waits for Redis as for any outage; only refused credentials are fatal.
    check_redis(
        load_settings(environ={}, redis_url=f"redis://:{REDIS_PASSWORD}@{LOOPBACK}:{free_port()}/0")
    )


def test_an_untrusted_redis_certificate_fails_start_up_naming_the_ca_setting(
    redis_door: FrontDoor, tls: dict[str, Path]
) -> None:
    settings = load_settings(
        environ={},
        redis_url=f"rediss://:{REDIS_PASSWORD}@{LOOPBACK}:{redis_door.port}/0",
        redis_ssl_ca_file=str(tls["client.pem"]),  # not the CA that signed the server
        redis_ssl_cert_file=str(tls["client.pem"]),
        redis_ssl_key_file=str(tls["client.key"]),
    )
    with pytest.raises(ConfigError, match="TLS certificate check failed") as info:
        check_redis(settings)
    assert "STREAMWATCH_REDIS_SSL_CA_FILE" in str(info.value)
    assert REDIS_PASSWORD not in str(info.value)


def test_the_cli_client_authenticates_with_the_settings(
    redis_door: FrontDoor, tls: dict[str, Path]
) -> None:
    # The password apart from the URL, as STREAMWATCH_REDIS_PASSWORD would give it.
    settings = load_settings(
        environ={},
        redis_url=f"rediss://{LOOPBACK}:{redis_door.port}/0",
        redis_password=REDIS_PASSWORD,
        redis_ssl_ca_file=str(tls["ca.pem"]),
        redis_ssl_cert_file=str(tls["client.pem"]),
        redis_ssl_key_file=str(tls["client.key"]),
    )
    check_redis(settings)
    client = StreamwatchClient.from_settings(settings)
    try:
        assert isinstance(client.models(), list)  # raises AuthenticationError without it
    finally:
        client.close()
