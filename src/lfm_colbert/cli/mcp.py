"""`lfm-colbert mcp DIR`: serve an index to agents over the Model Context Protocol (stdio or HTTP)."""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import os
import sys
from typing import Any

from lfm_colbert.cli.options import add_placement
from lfm_colbert.errors import InputError

HELP = """\
Serve an index built by `lfm-colbert index` to AI agents (Claude Desktop, Claude Code, Cursor, ...)
as MCP tools:

  search(query, k=10, filter=None)   the k best documents, with id, score, text and metadata
  fetch(id)                          one document by id
  list_metadata_keys()               the metadata keys that filters can use, with counts
  add_documents, delete_documents    only with --allow-writes

By default it speaks MCP over stdin/stdout: the agent starts the command itself. With
--transport http it listens for streamable HTTP at http://HOST:PORT/mcp instead (127.0.0.1 by
default; MCP over HTTP has no authentication here, so another --host needs --allow-public).
DIR may also be the URL of a running `lfm-colbert serve` (remote mode; --api-key or
$LFM_COLBERT_API_KEY).

An agent's configuration (e.g. claude_desktop_config.json):
  {"mcpServers": {"docs": {"command": "lfm-colbert", "args": ["mcp", "/path/to/my-index"]}}}

examples:
  lfm-colbert mcp my-index
  lfm-colbert mcp my-index --allow-writes
  lfm-colbert mcp my-index --transport http --port 8765
  claude mcp add docs -- lfm-colbert mcp /path/to/my-index
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "mcp", help="serve an index to AI agents (MCP)", description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("index", metavar="DIR", help="index directory (or URL of `lfm-colbert serve`)")
    p.add_argument("--transport", choices=["stdio", "http"], default="stdio",
                   help="stdio (default: the agent starts this command) or http (streamable HTTP)")
    p.add_argument("--host", default="127.0.0.1", help="with --transport http: address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8765, help="with --transport http: port (default 8765)")
    p.add_argument("--allow-public", action="store_true", help="allow --host other than loopback (no authentication!)")
    p.add_argument("--allow-writes", action="store_true", help="also offer add_documents and delete_documents")
    p.add_argument("--model", "-m", default=None, help="hub id or local checkpoint (default: the index's model)")
    p.add_argument("--api-key", default=None, help="for a URL: the server's API key (default: $LFM_COLBERT_API_KEY)")
    add_placement(p)
    p.set_defaults(func=run)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run(args: argparse.Namespace) -> int:
    from lfm_colbert.integrations._common import IndexHandle, is_url
    from lfm_colbert.integrations.mcp import create_server

    http = args.transport == "http"
    if http and not (0 < args.port < 65536):
        raise InputError(f"--port must be between 1 and 65535, not {args.port}")
    if http and not _is_loopback(args.host) and not args.allow_public:
        raise InputError(f"--host {args.host} would let anyone on the network use the index without authentication; "
                         "keep 127.0.0.1, or add --allow-public")
    if is_url(args.index) and (args.model or args.backend != "auto" or args.device):
        raise InputError("--model, --backend and --device apply to a local index; the server runs its own model")
    # On stdio, stdout is the protocol: anything a library prints while the model loads goes to stderr.
    with contextlib.redirect_stdout(sys.stderr):
        if is_url(args.index):
            handle = IndexHandle(args.index, api_key=args.api_key or os.environ.get("LFM_COLBERT_API_KEY"))
        else:
            from lfm_colbert.index import Index

            if not os.path.isdir(args.index):
                raise InputError(f"no index at {args.index} (build one with `lfm-colbert index SOURCES --index DIR`)")
            local = Index(args.index, args.model, create=False, backend=args.backend, device=args.device)
            handle = IndexHandle(local)
        handle.call("model")  # load the model now: the first search answers quickly, a bad model fails here
        server = create_server(handle, allow_writes=args.allow_writes)
    if http:
        print(f"MCP (streamable HTTP) on http://{args.host}:{args.port}/mcp", file=sys.stderr)
        server.run("streamable-http", host=args.host, port=args.port)
    else:
        server.run("stdio")
    return 0
