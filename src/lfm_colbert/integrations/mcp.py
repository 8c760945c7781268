"""MCP: an lfm-colbert index as tools for agents (the official `mcp` Python SDK).

    >>> from lfm_colbert.integrations.mcp import create_server
    >>> create_server("my-index").run()                  # stdio; or run("streamable-http", port=8000)

Tools: `search` (query, k, filter), `fetch` (a document by id), `list_metadata_keys`; with
`allow_writes`, also `add_documents` and `delete_documents`. Bad arguments and failures come back
as tool errors (isError, one line of text), never as a traceback. The command is `lfm-colbert mcp DIR`.
Needs `pip install 'lfm-colbert[mcp]'`.
"""

from __future__ import annotations

from typing import Annotated, Any

from lfm_colbert import __version__
from lfm_colbert.errors import LfmColbertError
from lfm_colbert.integrations._common import IndexHandle, open_index

try:
    from mcp.server import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError
    from mcp.types import ToolAnnotations
    from pydantic import BaseModel, Field
except ModuleNotFoundError as _exc:
    from lfm_colbert.integrations._common import missing_extra

    raise missing_extra(_exc, "mcp", "lfm_colbert.integrations.mcp") from None

__all__ = ["create_server", "MAX_K"]

MAX_K = 100  # results per search: more would flood an agent's context

INSTRUCTIONS = """\
Multilingual semantic search over a local document collection (late interaction, LFM2.5-ColBERT).
Queries can be in any of en, es, de, fr, it, pt, ar, sv, no, ja, ko, zh and find documents in the
others. Call `list_metadata_keys` to see which metadata fields `search` can filter on, then
`search`; `fetch` returns a whole document by the id a search gave."""


class SearchHit(BaseModel):
    id: str
    score: float = Field(description="MaxSim score: higher is more relevant; comparable within one query")
    text: str | None
    metadata: dict[str, Any]


class SearchResult(BaseModel):
    hits: list[SearchHit]


class StoredDocument(BaseModel):
    id: str
    text: str | None
    metadata: dict[str, Any]
    parent: str | None = Field(None, description="id of the source document this is a passage of")


class NewDocument(BaseModel):
    id: str = Field(min_length=1, description="your id for the document; used by fetch and delete_documents")
    text: str = Field(min_length=1)
    metadata: dict[str, Any] | None = None


class WriteResult(BaseModel):
    ids: list[str]


def _tool_error(exc: LfmColbertError) -> ToolError:
    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return ToolError(message.replace("use upsert to replace them", "pass replace=true to replace them"))


def create_server(index: Any, *, allow_writes: bool = False, model: Any = None, api_key: str | None = None,
                  name: str = "lfm-colbert") -> MCPServer:
    """An `MCPServer` whose tools search `index` (an `Index`, an index directory, or a `lfm-colbert serve`
    URL); read-only unless `allow_writes`. `model`: for a directory, the model to search it with."""
    handle = index if isinstance(index, IndexHandle) else open_index(index, model=model, api_key=api_key)
    server = MCPServer(name=name, instructions=INSTRUCTIONS, version=__version__)

    async def run(method: str, *args: Any) -> Any:
        try:
            return await handle.acall(method, *args)
        except LfmColbertError as exc:  # bad input (an unknown filter key, an empty text): the agent can fix it
            raise _tool_error(exc) from None

    @server.tool(annotations=ToolAnnotations(title="Search documents", read_only_hint=True, open_world_hint=False))
    async def search(
        query: Annotated[str, Field(min_length=1, description="what to look for, in any language")],
        k: Annotated[int, Field(ge=1, le=MAX_K, description="number of results")] = 10,
        # Checked by the index (one clear line per mistake), not by a union type (five lines of pydantic).
        filter: Annotated[
            dict[str, Any] | None,
            Field(description='metadata filter: {"key": value} or {"key": [any, of, these]} with string, number or '
                              'boolean values; keys are ANDed (list_metadata_keys shows the keys)'),
        ] = None,
    ) -> SearchResult:
        """Search the collection: the k most relevant documents (passages), best first, with id, score, text and metadata."""
        if not query.strip():
            raise ToolError("query must not be blank")
        hits = await run("search", query, k, filter)
        return SearchResult(hits=[SearchHit(id=h.id, score=h.score, text=h.text, metadata=h.metadata or {}) for h in hits])

    @server.tool(annotations=ToolAnnotations(title="Fetch a document", read_only_hint=True, open_world_hint=False))
    async def fetch(id: Annotated[str, Field(min_length=1, description="a document id, as search returned it")]) -> StoredDocument:
        """The stored document with this id: its full text and metadata."""
        (doc,) = await run("get", [id])
        if doc is None:
            raise ToolError(f"no document with id {id!r}")
        return StoredDocument(id=doc.id, text=doc.text, metadata=doc.metadata or {}, parent=getattr(doc, "parent", None))

    @server.tool(annotations=ToolAnnotations(title="List metadata keys", read_only_hint=True, open_world_hint=False))
    async def list_metadata_keys() -> dict[str, int]:
        """The metadata keys documents have, each with how many documents have it: what search's filter can use."""
        return await run("metadata_keys")

    if allow_writes:
        @server.tool(annotations=ToolAnnotations(title="Add documents", read_only_hint=False, destructive_hint=False,
                                                 idempotent_hint=True, open_world_hint=False))
        async def add_documents(
            documents: Annotated[list[NewDocument], Field(min_length=1, max_length=1000)],
            replace: Annotated[bool, Field(description="replace documents that have the same id")] = False,
        ) -> WriteResult:
            """Add documents to the collection (all or none). An id already there is an error unless replace is true."""
            args = ([d.text for d in documents], [d.id for d in documents], [d.metadata for d in documents])
            return WriteResult(ids=await run("upsert" if replace else "add", *args))

        @server.tool(annotations=ToolAnnotations(title="Delete documents", read_only_hint=False, destructive_hint=True,
                                                 idempotent_hint=True, open_world_hint=False))
        async def delete_documents(ids: Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)]) -> WriteResult:
            """Delete documents by id (all or none: an unknown id deletes nothing and is an error)."""
            return WriteResult(ids=await run("delete", ids, False))

    return server
