"""MCP: start `lfm-colbert mcp` as an agent would (over stdio) and call its tools.

    pip install 'lfm-colbert[torch,mcp]'
    lfm-colbert index examples/corpus --index .demo-index
    python examples/mcp_client.py [INDEX_DIR]                 # default: .demo-index

For an agent, register the same command instead, e.g. `claude mcp add docs -- lfm-colbert mcp /abs/path/.demo-index`.
"""

import asyncio
import sys

from mcp import Client, StdioServerParameters

index_dir = sys.argv[1] if len(sys.argv) > 1 else ".demo-index"
server = StdioServerParameters(command=sys.executable, args=["-m", "lfm_colbert", "mcp", index_dir])


async def main() -> None:
    async with Client(server) as client:
        print("tools:", [tool.name for tool in (await client.list_tools()).tools])
        keys = await client.call_tool("list_metadata_keys", {})
        print("metadata keys:", keys.structured_content)
        found = await client.call_tool("search", {"query": "커피는 어디에서 재배되나요?", "k": 3, "filter": {"topic": "coffee"}})
        for hit in found.structured_content["hits"]:
            print(f"  {hit['score']:7.2f}  {hit['id']}")
        doc = await client.call_tool("fetch", {"id": found.structured_content["hits"][0]["id"]})
        print("fetched:", doc.structured_content["text"][:80])
        bad = await client.call_tool("search", {"query": "coffee", "k": 0})
        print("a bad argument is a tool error:", bad.is_error, bad.content[0].text.splitlines()[0])


asyncio.run(main())
