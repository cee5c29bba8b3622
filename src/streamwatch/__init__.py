"""streamwatch: real-time monitoring for ML models in production.

Model servers publish inference events to Kafka; streamwatch workers aggregate them into exact
event-time window metrics in Redis and publish alerts to a Kafka topic.
"""

from __future__ import annotations

from importlib.metadata import version as _version

from streamwatch.client import ModelSeries, StreamwatchClient, WindowState
from streamwatch.events import (
    AlertEvent,
    BusinessEvent,
    DeadLetterEvent,
    FeedbackEvent,
    InferenceEvent,
)
from streamwatch.exceptions import (
    ConfigError,
    EmbeddedServiceError,
    RulesFileError,
    StateFormatError,
    StreamwatchError,
)
from streamwatch.settings import Settings, load_settings

__version__ = _version("streamwatch")

__all__ = [
    "AlertEvent",
    "BusinessEvent",
    "ConfigError",
    "DeadLetterEvent",
    "EmbeddedServiceError",
    "FeedbackEvent",
    "InferenceEvent",
    "ModelSeries",
    "RulesFileError",
    "Settings",
    "StateFormatError",
    "StreamwatchClient",
    "StreamwatchError",
    "WindowState",
    "__version__",
    "load_settings",
]
