"""Request and response bodies of the HTTP API: the contract clients rely on.

Types are strict (a number is not a string, a boolean is not a k) and unknown fields are errors,
so a typo in a field name is a 422 that names it rather than a silently ignored option. Bounds
that the operator configures (texts per request, text length, k) are checked by the routes
against the server's `Limits`, not here.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr, field_validator, model_validator

Text = Annotated[StrictStr, Field(min_length=1)]
Scalar = Union[StrictStr, StrictInt, StrictFloat, StrictBool, None]
FilterValue = Union[Scalar, list[Scalar]]
Span = tuple[int, int]


def check_finite(value: Any, where: str) -> None:
    """JSON parsers accept NaN and Infinity; stored metadata and filters must not hold them."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where} holds {value}, which is not a JSON number")
    if isinstance(value, dict):
        for k, v in value.items():
            check_finite(v, f"{where}.{k}")
    elif isinstance(value, list):
        for v in value:
            check_finite(v, where)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- search -----------------------------------------------------------------------------------
class SearchRequest(Strict):
    """One query (`query`) or a batch (`queries`); `filter` keeps documents whose metadata key equals
    the value (a list means any of them); `explain` adds each hit's token matches."""

    query: Text | None = None
    queries: list[Text] | None = Field(default=None, min_length=1)
    k: StrictInt = Field(10, ge=1)
    filter: dict[str, FilterValue] | None = None
    explain: StrictBool = False
    # "semantic" (MaxSim), "lexical" (BM25) or "hybrid" (both fused: reciprocal rank fusion, or with
    # `alpha` the blend alpha * semantic + (1 - alpha) * lexical of normalised scores); see Index.search.
    mode: Literal["semantic", "lexical", "hybrid"] = "semantic"
    alpha: Union[StrictFloat, StrictInt, None] = Field(None, ge=0, le=1)

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"query": "¿Dónde viven los pingüinos?", "k": 5, "filter": {"lang": ["en", "de"]}, "explain": True},
                     {"query": "penguins Antarctica", "k": 5, "mode": "hybrid", "alpha": 0.7}],
        "oneOf": [{"required": ["query"]}, {"required": ["queries"]}],  # what _one_of checks, for clients and fuzzers
    })

    @model_validator(mode="after")
    def _one_of(self) -> "SearchRequest":
        if (self.query is None) == (self.queries is None):
            raise ValueError("give exactly one of 'query' (a string) or 'queries' (a list of strings)")
        if self.filter is not None:
            check_finite(self.filter, "filter")
        if self.alpha is not None and self.mode != "hybrid":
            raise ValueError(f"'alpha' weights the two sides of mode 'hybrid', not of mode {self.mode!r}")
        return self

    @property
    def texts(self) -> list[str]:
        return [self.query] if self.query is not None else list(self.queries or [])


class TokenMatchOut(BaseModel):
    """One query token: the document token it matched (MaxSim's argmax) and what it added."""

    query_token: str
    kind: Literal["text", "special", "expansion"]
    query_span: Span | None = Field(description="[start, end) characters in the query (code points)")
    doc_token: int = Field(description="row of the matched vector among the document's vectors")
    doc_text: str | None
    doc_span: Span | None = Field(description="[start, end) characters in the document text (code points)")
    score: float = Field(description="this query token's share of the score")


class ExplanationOut(BaseModel):
    score: float = Field(description="sum of the matches' scores, on the stored vectors")
    matches: list[TokenMatchOut]


class HitOut(BaseModel):
    id: str
    score: float
    text: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    explanation: ExplanationOut | None = None


class SearchResponse(BaseModel):
    """`hits` is a list of hits for `query`, or one such list per query for `queries`."""

    hits: Union[list[HitOut], list[list[HitOut]]]


# -- rerank and encode ------------------------------------------------------------------------
class RerankRequest(Strict):
    query: Text
    documents: list[Text]
    k: StrictInt | None = Field(None, ge=1)
    explain: StrictBool = False

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"query": "where do penguins live?", "documents": ["Pinguine leben im Süden.", "Le café pousse en altitude."]}]})


class RankedOut(BaseModel):
    index: int = Field(description="position of the document in the request")
    score: float
    text: str
    explanation: ExplanationOut | None = None


class RerankResponse(BaseModel):
    results: list[RankedOut] = Field(description="best first")


class EncodeRequest(Strict):
    texts: list[Text] = Field(min_length=1)
    is_query: StrictBool = False
    format: Literal["json", "base64"] = Field(
        "json", description="json: nested lists of floats; base64: little-endian float32 bytes, row-major")


class EncodeResponse(BaseModel):
    dim: int
    shapes: list[tuple[int, int]]
    vectors: list[Union[list[list[float]], str]] = Field(description="per text: (tokens, dim) floats, or base64")


# -- documents --------------------------------------------------------------------------------
class DocumentIn(Strict):
    id: Annotated[StrictStr, Field(min_length=1)] | None = Field(None, description="generated when missing")
    text: Text
    metadata: dict[str, Any] | None = None

    @field_validator("metadata")
    @classmethod
    def _finite_metadata(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            check_finite(value, "metadata")
        return value


class AddRequest(Strict):
    documents: list[DocumentIn] = Field(min_length=1)
    upsert: StrictBool = Field(False, description="replace documents whose id exists (else that is a 409)")

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"documents": [{"id": "p1", "text": "Penguins live in the south.", "metadata": {"lang": "en"}}]}]})


class AddResponse(BaseModel):
    ids: list[str]
    truncated: list[str] = Field(description="ids of documents longer than the model's document length, "
                                             "encoded from their start only")


class DeleteRequest(Strict):
    ids: list[Annotated[StrictStr, Field(min_length=1)]] = Field(min_length=1)
    missing_ok: StrictBool = Field(False, description="without it, an unknown id is a 404 and nothing is deleted")


class DeleteResponse(BaseModel):
    deleted: int


class DocumentOut(BaseModel):
    id: str
    text: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    parent: str | None = None


class DocumentsResponse(BaseModel):
    documents: list[DocumentOut | None]


# -- service ----------------------------------------------------------------------------------
class HealthResponse(BaseModel):
    status: Literal["loading", "ready", "draining", "failed"]
    ready: bool
    error: str | None = None
    auth_required: bool
    read_only: bool
    has_index: bool
    version: str


class InfoResponse(BaseModel):
    version: str
    model: dict[str, Any]
    index: dict[str, Any] | None
    metadata_keys: dict[str, int]
    read_only: bool
    limits: dict[str, Any]
    batching: dict[str, Any]


class ErrorResponse(BaseModel):
    error: str = Field(description="a short code: invalid_json, invalid_request, unauthorized, not_found, ...")
    detail: str
