#!/usr/bin/env python3
"""mcp-fleet test MCP server over HTTP that records the headers it receives
(tests/upstream_identity.rs), on the `mcp` Python SDK 2.x (MCPServer).

Serves streamable HTTP at /mcp and the legacy HTTP+SSE transport at /sse
(messages at /messages/) on 127.0.0.1, and prints "listening on
http://127.0.0.1:PORT" once bound (PORT 0, the default, picks a free one).

Every HTTP request it receives is recorded: method, path and headers (names
lower-cased). Tools:
  whoami {}           -> the headers of the HTTP request that carried this call, as JSON
  seen {}             -> every request recorded so far, as a JSON list
  count {steps}       -> reports progress `steps` times, then the x-mcp-userid of the call
"""
from __future__ import annotations

import argparse
import json
import socket
import sys
from collections import deque

import anyio
import uvicorn
from mcp.server.mcpserver import Context, MCPServer
from starlette.applications import Starlette

# Bounded: a test makes a few hundred requests at most.
SEEN: deque[dict] = deque(maxlen=10_000)


def headers_of(scope) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in scope.get("headers", []):
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        out[key] = f"{out[key]}, {text}" if key in out else text
    return out


def recording(app):
    async def asgi(scope, receive, send):
        if scope["type"] == "http":
            SEEN.append({"method": scope["method"], "path": scope["path"], "headers": headers_of(scope)})
        await app(scope, receive, send)

    return asgi


def build() -> Starlette:
    server = MCPServer("mcp-fleet-headers", version="0.1.0")

    @server.tool(description="The headers of the HTTP request that carried this call")
    def whoami(ctx: Context) -> str:
        request = ctx.request_context.request
        if request is None:
            return json.dumps(None)
        return json.dumps({k.lower(): v for k, v in request.headers.items()})

    @server.tool(description="Report progress `steps` times; answer the caller's X-Mcp-UserId")
    async def count(steps: int, ctx: Context) -> str:
        for i in range(1, steps + 1):
            await ctx.report_progress(i, steps, f"step {i}")
        request = ctx.request_context.request
        return request.headers.get("x-mcp-userid", "") if request is not None else ""

    @server.tool(description="Every HTTP request this server received so far: method, path, headers")
    def seen() -> str:
        return json.dumps(list(SEEN))

    http = server.streamable_http_app()
    sse = server.sse_app()
    return Starlette(routes=[*http.routes, *sse.routes], lifespan=http.router.lifespan_context)


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="headers_server", description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=0)
    args = p.parse_args(argv)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    port = sock.getsockname()[1]
    config = uvicorn.Config(recording(build()), log_level="warning", lifespan="on")
    print(f"listening on http://127.0.0.1:{port}", flush=True)
    anyio.run(uvicorn.Server(config).serve, [sock])


if __name__ == "__main__":
    main(sys.argv[1:])
