"""A simulated message broker: publishing waits `confirm_ms` for the acknowledgement (stands for network I/O).

Like real brokers with producer idempotence, it acknowledges a repeated
idempotency key with the original ack id instead of delivering twice.
"""

from __future__ import annotations

import hashlib
import threading
import time

_delivered: dict[str, str] = {}
_lock = threading.Lock()


def publish(idempotency_key: str, payload: dict, *, confirm_ms: int) -> str:
    """Publish and wait for the broker's ack; return the ack id."""
    time.sleep(confirm_ms / 1000)
    with _lock:
        if idempotency_key not in _delivered:
            _delivered[idempotency_key] = "ack-" + hashlib.sha1(idempotency_key.encode()).hexdigest()[:16]
        return _delivered[idempotency_key]
