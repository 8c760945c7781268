"""Server settings: which binds need an API key, and limits that refuse nonsense."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi", reason="needs the serve extra: pip install 'lfm-colbert[serve]'")

from lfm_colbert.errors import InputError  # noqa: E402
from lfm_colbert.server.settings import Batching, Limits, check_bind, is_loopback  # noqa: E402


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("127.0.0.2", True), ("localhost", True), ("::1", True), ("[::1]", True),
    ("0.0.0.0", False), ("::", False), ("192.168.1.10", False), ("example.org", False), ("", False),
])
def test_loopback(host, loopback):
    assert is_loopback(host) is loopback


def test_a_key_is_needed_beyond_loopback():
    check_bind("127.0.0.1", None)
    check_bind("0.0.0.0", "k")
    with pytest.raises(InputError, match="needs an API key"):
        check_bind("0.0.0.0", None)
    with pytest.raises(InputError, match="empty"):
        check_bind("127.0.0.1", "  ")


def test_limits_and_batching_are_checked():
    assert Limits(max_per_client=0).max_per_client == 0
    for bad in ({"max_texts": 0}, {"max_k": -1}, {"max_body_bytes": 1.5}, {"max_concurrent": True}):
        with pytest.raises(InputError):
            Limits(**bad)
    assert not Batching(max_batch=1).enabled and Batching().enabled
    for bad in ({"max_batch": 0}, {"wait_ms": -1}, {"wait_ms": 5000}):
        with pytest.raises(InputError):
            Batching(**bad)
