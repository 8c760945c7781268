"""A bounded fuzz run of the API from its own OpenAPI schema (schemathesis): valid and invalid
requests for every operation; whatever it sends, the server answers without a 500, and every error
is a JSON body with an error code and a message."""

from __future__ import annotations

import collections
import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from serve_helpers import corpus_index  # noqa: F401

schemathesis = pytest.importorskip("schemathesis")

from lfm_colbert.server import Limits, create_app  # noqa: E402

# Per operation and mode: bounded, and derandomized so that a run is repeatable.
EXAMPLES = {schemathesis.GenerationMode.POSITIVE: 25, schemathesis.GenerationMode.NEGATIVE: 15}
# Small bounds keep each generated request cheap on the tiny model (the limits answer 413 / 422).
LIMITS = Limits(max_texts=4, max_text_chars=300, max_k=20, max_body_bytes=64 << 10)


@pytest.fixture(scope="module")
def fuzz_app(corpus_index, tiny_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz") / "index"
    shutil.copytree(corpus_index, path)
    app = create_app(path, tiny_model, limits=LIMITS)
    engine = app.state.engine
    engine.start()  # the schemathesis transport does not run the lifespan
    assert engine.worker.ready.wait(60) and engine.state == "ready", engine.error
    yield app
    engine.close()


def test_no_server_errors(fuzz_app):
    # schemathesis' pytest plugin (from_fixture) needs pytest < 9, so its strategies are driven here.
    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzz_app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {f"{op.method.upper()} {op.path}" for op in operations} >= {
        "POST /search", "POST /rerank", "POST /encode", "POST /documents", "DELETE /documents", "GET /documents",
        "GET /documents/{doc_id}", "GET /health", "GET /info"}
    statuses: collections.Counter = collections.Counter()
    for operation in operations:
        for mode, examples in EXAMPLES.items():

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                      suppress_health_check=list(HealthCheck))
            def check(case):
                response = case.call()
                statuses[response.status_code] += 1
                where = f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}"
                assert response.status_code < 500, where
                if response.status_code >= 400:
                    assert set(response.json()) >= {"error", "detail"}, where

            try:
                check()
            except Unsatisfiable:  # nothing to make invalid (GET /health, GET /info take no input)
                assert mode == schemathesis.GenerationMode.NEGATIVE
    # It did reach the engine, and the error paths.
    assert statuses[200] >= 50 and sum(n for s, n in statuses.items() if 400 <= s < 500) >= 50, statuses
