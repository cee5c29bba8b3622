"""The embedded broker and Redis the Kafka benchmarks run against (bench/run.py, crash.py)."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from streamwatch.embedded import EmbeddedBroker, EmbeddedRedis


@contextlib.contextmanager
def servers(
    prefix: str, log: Callable[[str], None], *, keep: bool = False
) -> Iterator[tuple[EmbeddedBroker, EmbeddedRedis, Path]]:
    """Start a broker and a Redis logging into a new directory named ``prefix...``.

    The directory is removed afterwards unless something failed (then its path is logged) or
    ``keep`` is set.
    """
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    broker = EmbeddedBroker(log_dir=workdir)
    redis_server = EmbeddedRedis(log_dir=workdir)
    try:
        broker.start()
        redis_server.start()
        yield broker, redis_server, workdir
    except BaseException:
        log(f"failed; server and worker logs are in {workdir}")
        raise
    else:
        if keep:
            log(f"logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    finally:
        redis_server.stop()
        broker.stop()
