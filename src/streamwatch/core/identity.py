"""Stable identities of alert series: the same rule, model and series always hash alike."""

from __future__ import annotations

import hashlib


def fingerprint(
    rule: str, model_id: str, model_version: str, size_ms: int, series: str = ""
) -> str:
    """Return the stable identity of an alert series (``series``: a detector's feature)."""
    key = f"{rule}\x1f{model_id}\x1f{model_version}\x1f{size_ms}".encode()
    if series:
        key += f"\x1f{series}".encode()
    return hashlib.sha256(key).hexdigest()[:16]
