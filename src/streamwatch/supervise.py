"""Run ``streamwatch worker`` as a child process (for ``streamwatch demo`` and the tests).

The child gets its settings through ``STREAMWATCH_*`` variables, exactly as in production, and is
killed by the kernel if its parent dies (Linux), so a demo or test run never leaves one behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

from streamwatch.embedded import _pdeathsig_setter


class WorkerProcess:
    """One ``streamwatch worker`` child with its own environment and log file."""

    def __init__(
        self, env: Mapping[str, str], log_path: Path, argv: Sequence[str] | None = None
    ) -> None:
        """Prepare (not start) a worker; ``env`` is added to a copy of this environment.

        ``argv`` replaces ``python -m streamwatch worker`` (the crash bench runs a plain Faust
        app the same way).
        """
        self._env = {**os.environ, **env}
        self._argv = (
            list(argv) if argv is not None else [sys.executable, "-m", "streamwatch", "worker"]
        )
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs."""
        return self._process.pid if self._process and self._process.poll() is None else None

    def start(self) -> None:
        """Start the worker (does nothing when it already runs)."""
        if self.pid is not None:
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            self._argv,
            env=self._env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_pdeathsig_setter(),
        )

    def signal(self, signum: signal.Signals) -> None:
        """Send a signal (SIGKILL to simulate a crash, SIGTERM for a graceful stop)."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signum)

    def wait(self, timeout_s: float) -> int | None:
        """Wait for the child to exit; return its exit code, or None on timeout."""
        if self._process is None:
            return None
        try:
            return self._process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, grace_s: float = 15.0) -> None:
        """SIGTERM, then SIGKILL after ``grace_s``; idempotent."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            if self.wait(grace_s) is None:
                self._process.kill()
                self._process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 40) -> str:
        """Return the end of the worker's log, for error messages."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
