"""`lfm-colbert mcp` as a real subprocess, driven by the MCP SDK's own clients: over stdio (what agents
start) and over streamable HTTP on a free loopback port."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import socket
import subprocess
import sys
import time

import pytest
from mcp import Client, StdioServerParameters

from lfm_colbert.cli import main

TIMEOUT = 120  # seconds for a whole session: startup (torch, the model) and every call


def _server_env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "LFM_COLBERT_MODEL": ""}  # no default model to fall back on


def _hits(result) -> list[dict]:
    assert not result.is_error, result.content
    return result.structured_content["hits"]


async def _search(client, query, **args):
    return _hits(await client.call_tool("search", {"query": query, **args}))


def _check_search(hits, index, query, k, filter=None):
    want = index.search(query, k=k, filter=filter)
    assert [h["id"] for h in hits] == [h.id for h in want]
    assert [h["score"] for h in hits] == pytest.approx([h.score for h in want], rel=1e-5)
    assert [(h["text"], h["metadata"]) for h in hits] == [(h.text, h.metadata) for h in want]


def test_stdio_session(sample_index, sample_queries, tmp_path):
    # The server's stdout passes through `tee` into a file, so the test can check afterwards that it
    # carried nothing but JSON-RPC messages; its stderr goes to another file, checked for tracebacks.
    out, err = tmp_path / "stdout.jsonl", tmp_path / "stderr.txt"
    server = f"{shlex.quote(sys.executable)} -m lfm_colbert mcp {shlex.quote(str(sample_index.path))} 2>{shlex.quote(str(err))}"
    params = StdioServerParameters(command="bash", args=["-c", f"set -o pipefail; {server} | tee {shlex.quote(str(out))}"],
                                   env=_server_env())

    async def session():
        async with Client(params, read_timeout_seconds=TIMEOUT) as client:
            tools = {t.name: t for t in (await client.list_tools()).tools}
            assert set(tools) == {"search", "fetch", "list_metadata_keys"}  # read-only: no write tools
            assert set(tools["search"].input_schema["properties"]) == {"query", "k", "filter"}
            assert tools["search"].annotations.read_only_hint is True

            english, spanish = sample_queries[0], sample_queries[1]  # two languages
            _check_search(await _search(client, english, k=5), sample_index, english, 5)
            spanish_hits = await _search(client, spanish, k=3, filter={"lang": ["de", "fr"]})
            _check_search(spanish_hits, sample_index, spanish, 3, {"lang": ["de", "fr"]})

            doc = await client.call_tool("fetch", {"id": spanish_hits[0]["id"]})
            stored = sample_index.get(spanish_hits[0]["id"])
            assert not doc.is_error and doc.structured_content == {
                "id": stored.id, "text": stored.text, "metadata": stored.metadata, "parent": stored.parent}

            keys = await client.call_tool("list_metadata_keys", {})
            assert not keys.is_error and keys.structured_content == sample_index.metadata_keys()

            bad = [("search", {"query": english, "k": 0}, "k"),
                   ("search", {"query": english, "k": "many"}, "k"),
                   ("search", {"k": 3}, "query"),
                   ("search", {"query": english, "filter": {"no such key!": 1}}, "bad filter key"),
                   ("search", {"query": english, "filter": {"lang": {"nested": 1}}}, "unknown operator"),
                   ("fetch", {"id": "no-such-document"}, "no document with id"),
                   ("add_documents", {"documents": [{"id": "x", "text": "y"}]}, "add_documents")]
            for tool, args, words in bad:
                result = await client.call_tool(tool, args)
                assert result.is_error, (tool, args)
                text = result.content[0].text
                assert words in text and "Traceback" not in text, text
            # After the errors the server still answers.
            _check_search(await _search(client, english, k=2), sample_index, english, 2)

    asyncio.run(asyncio.wait_for(session(), TIMEOUT))
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) >= 10
    assert all(json.loads(line)["jsonrpc"] == "2.0" for line in lines)  # protocol only on stdout
    assert "Traceback" not in err.read_text(encoding="utf-8")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_streamable_http_with_writes(sample_index, tmp_path, tiny_model):
    from lfm_colbert.index import Index

    # A copy to write to: the session-wide sample index stays as it is.
    index = Index(tmp_path / "idx", tiny_model)
    index.add(["Emperor penguins keep their eggs warm.", "El café se cultiva en Colombia."], ids=["pen", "cafe"],
              metadata=[{"lang": "en"}, {"lang": "es"}])
    port = _free_port()
    cmd = [sys.executable, "-m", "lfm_colbert", "mcp", str(index.path), "--transport", "http", "--port", str(port),
           "--allow-writes"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_server_env(), text=True)
    try:
        deadline = time.monotonic() + TIMEOUT
        while True:  # bounded wait for the port to open
            assert proc.poll() is None, proc.stderr.read()
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert time.monotonic() < deadline, "the MCP server did not start listening"
            time.sleep(0.2)

        async def session():
            async with Client(f"http://127.0.0.1:{port}/mcp", read_timeout_seconds=TIMEOUT) as client:
                names = {t.name for t in (await client.list_tools()).tools}
                assert {"add_documents", "delete_documents"} <= names
                added = await client.call_tool("add_documents", {"documents": [
                    {"id": "fuji", "text": "富士山は活火山です。", "metadata": {"lang": "ja"}}]})
                assert not added.is_error and added.structured_content == {"ids": ["fuji"]}
                again = await client.call_tool("add_documents", {"documents": [{"id": "fuji", "text": "x"}]})
                assert again.is_error and "replace=true" in again.content[0].text
                hits = await _search(client, "火山", k=3)
                assert "fuji" in [h["id"] for h in hits]
                gone = await client.call_tool("delete_documents", {"ids": ["pen", "nope"]})
                assert gone.is_error and "nothing was deleted" in gone.content[0].text
                gone = await client.call_tool("delete_documents", {"ids": ["pen"]})
                assert not gone.is_error and gone.structured_content == {"ids": ["pen"]}

        asyncio.run(asyncio.wait_for(session(), TIMEOUT))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert [d.id for d in Index(index.path).list()] == ["cafe", "fuji"]


def test_remote_mode_tools(fake_remote, sample_index, sample_queries):
    """create_server(URL): the tools answer through lfm_colbert.client.RemoteIndex (here its stand-in)."""
    from lfm_colbert.integrations.mcp import create_server

    async def session():
        async with Client(create_server("http://127.0.0.1:9", allow_writes=True)) as client:
            hits = await _search(client, sample_queries[2], k=3)
            keys = await client.call_tool("list_metadata_keys", {})
            bad = await client.call_tool("search", {"query": "x", "filter": {"bad key!": 1}})
            gone = await client.call_tool("delete_documents", {"ids": ["no-such-id"]})
            return hits, keys, bad, gone

    hits, keys, bad, gone = asyncio.run(session())
    _check_search(hits, sample_index, sample_queries[2], 3)
    assert keys.structured_content == sample_index.metadata_keys()
    assert bad.is_error and "bad filter key" in bad.content[0].text
    assert gone.is_error and "nothing was deleted" in gone.content[0].text
    assert [c[0] for c in fake_remote[0].calls] == ["search", "info", "search", "get"]


def test_cli_errors_are_one_line(tmp_path, capsys, monkeypatch):
    assert main(["mcp", str(tmp_path / "missing")]) == 2
    assert "no index at" in capsys.readouterr().err
    assert main(["mcp", str(tmp_path), "--transport", "http", "--host", "0.0.0.0"]) == 2
    assert "--allow-public" in capsys.readouterr().err
    # Without the mcp package: the extra to install, not a traceback.
    for name in [n for n in sys.modules if n == "mcp" or n.startswith("mcp.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delitem(sys.modules, "lfm_colbert.integrations.mcp", raising=False)
    assert main(["mcp", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: this needs the optional package 'mcp': pip install 'lfm-colbert[mcp]'"
