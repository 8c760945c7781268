"""What a server is configured with: its limits and its micro-batching. Plain dataclasses, so the
CLI, tests and other ASGI hosts build them without the web stack."""

from __future__ import annotations

import ipaddress
from dataclasses import asdict, dataclass
from typing import Any

from lfm_colbert.errors import InputError

API_KEY_ENV = "LFM_COLBERT_API_KEY"


@dataclass(frozen=True)
class Limits:
    """Bounds on what one request may ask. Each is answered with a JSON error when exceeded:
    413 for sizes (body, texts per request, text length), 422 for k, 503 when `max_concurrent`
    requests are already in the server, 429 when one client has `max_per_client` (0: no per-client
    bound). Retry-After comes with 429 and 503."""

    max_body_bytes: int = 4 << 20
    max_texts: int = 256
    max_text_chars: int = 16_384
    max_k: int = 1000
    max_concurrent: int = 64
    max_per_client: int = 32
    retry_after_s: int = 1

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            minimum = 0 if name == "max_per_client" else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise InputError(f"{name} must be an integer >= {minimum}, not {value!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Batching:
    """Query micro-batching: queries that arrive while the model is busy, or within `wait_ms` of
    each other when it is idle, are encoded in one forward pass of at most `max_batch` queries, and
    searches with the same k and filter share one scan. Results are the same as one at a time.
    `max_batch=1` turns it off (one query per forward pass, one scan per query)."""

    max_batch: int = 8
    wait_ms: float = 2.0

    def __post_init__(self) -> None:
        if isinstance(self.max_batch, bool) or not isinstance(self.max_batch, int) or self.max_batch < 1:
            raise InputError(f"max_batch must be a positive integer, not {self.max_batch!r}")
        if not isinstance(self.wait_ms, (int, float)) or not 0 <= self.wait_ms <= 1000:
            raise InputError(f"wait_ms must be between 0 and 1000, not {self.wait_ms!r}")

    @property
    def enabled(self) -> bool:
        return self.max_batch > 1

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "enabled": self.enabled}


def is_loopback(host: str) -> bool:
    """Whether binding to `host` keeps the server on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def check_bind(host: str, api_key: str | None) -> None:
    """Refuse to serve beyond loopback without an API key."""
    if api_key is not None and not api_key.strip():
        raise InputError("the API key is empty")
    if not is_loopback(host) and not api_key:
        raise InputError(
            f"binding to {host} exposes the server beyond this machine, so it needs an API key: "
            f"set {API_KEY_ENV} (or pass --api-key), or bind to 127.0.0.1"
        )
