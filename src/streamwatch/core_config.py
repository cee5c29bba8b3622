"""The pure core's configuration, derived from the settings (no Kafka, Faust or Redis here).

One place for the worker, the benchmarks and the soak to build the same
:class:`~streamwatch.core.processor.ProcessorConfig`.
"""

from __future__ import annotations

from streamwatch.core.drift import DriftPolicy
from streamwatch.core.ledger import ledger_window_ms
from streamwatch.core.processor import ProcessorConfig
from streamwatch.core.rules import load_rule_set
from streamwatch.settings import Settings


def processor_config(settings: Settings) -> ProcessorConfig:
    """Derive the pure core's configuration (loads and validates the rules file)."""
    rule_set = load_rule_set(settings.rules, settings.windows_ms)
    return ProcessorConfig(
        window_sizes_ms=settings.windows_ms,
        allowed_lateness_ms=settings.allowed_lateness_ms,
        idle_timeout_ms=settings.idle_timeout_ms,
        max_future_skew_ms=settings.max_future_skew_ms,
        rules=rule_set.thresholds,
        detectors=rule_set.detectors,
        absence=rule_set.absence,
        inhibit=rule_set.inhibit,
        ledger_window_ms=ledger_window_ms(settings.windows_ms),
        max_categories=settings.max_categories,
        max_features=settings.max_features,
        max_models=settings.max_models,
        max_message_bytes=settings.max_message_bytes,
        max_batch_events=settings.max_batch_events,
        label_horizon_ms=settings.label_horizon_ms,
        label_min_coverage=settings.label_min_coverage,
        label_wait_ms=settings.label_wait_ms,
        max_pending_labels=settings.max_pending_labels,
        baseline_auto_windows=settings.baseline_auto_windows,
        drift_policy=DriftPolicy(
            min_samples=settings.drift_min_samples,
            fdr=settings.drift_fdr,
            min_psi=settings.drift_min_psi,
        ),
    )
