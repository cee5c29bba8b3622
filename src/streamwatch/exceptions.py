"""Errors raised by streamwatch.

Bad *input events* are never raised: they are data, dead-lettered with a reason and counted
(see :mod:`streamwatch.core.decode`). Exceptions are for the operator: a configuration that
cannot work, or state that cannot be read.

Hierarchy::

    StreamwatchError
    ├── ConfigError            bad settings or rules file; fix the named setting and restart
    │   └── RulesFileError     the rules YAML is invalid; the message names file, rule and field
    ├── StateFormatError       stored state was written by an incompatible version
    ├── StaleOwnerError        another worker has stored newer state for this partition
    └── EmbeddedServiceError   the embedded broker or Redis could not be started
"""

from __future__ import annotations

from typing import Any


class StreamwatchError(Exception):
    """Root of every error streamwatch raises on purpose. Catch it to handle them all."""


class ConfigError(StreamwatchError):
    """A setting is invalid. Raised at start-up, before anything connects.

    Catch it in entry points to print the one-line message and exit non-zero.
    """


class RulesFileError(ConfigError):
    """The rules YAML file cannot be loaded; the message names the file, rule and field."""


class StateFormatError(StreamwatchError):
    """Stored state has a format this version does not read.

    The key layout carries a version segment, so this only happens if a key was written by hand
    or by a future version under the same segment. Delete the key (or the whole ``sw:v1:*``
    prefix) and restart the worker.
    """

    @classmethod
    def require(cls, data: dict[str, Any], version: int, what: str, remedy: str) -> None:
        """Raise unless ``data["fmt"]`` is ``version``; the message names ``what`` and the fix."""
        if data.get("fmt") != version:
            raise cls(f"{what} format {data.get('fmt')!r} is not {version}; {remedy}")


class StaleOwnerError(StreamwatchError):
    """Another worker has stored state for this partition that is newer than ours.

    Raised instead of writing, so a worker that lost a partition without noticing (a long pause
    past the session timeout, a network partition) cannot overwrite its new owner's state. The
    worker drops the partition; nothing to do for the operator.
    """


class EmbeddedServiceError(StreamwatchError):
    """The embedded Kafka-protocol broker or Redis server did not start.

    Raised by :mod:`streamwatch.embedded` (used by ``streamwatch demo`` and the tests); the message
    includes the tail of the service's log.
    """
