#!/usr/bin/env python3
"""mcp-fleet test MCP server (stdio), built on the `mcp` Python SDK 2.x (MCPServer).

Tools:
  echo {text: str}       -> text
  add  {a: int, b: int}  -> a + b
  grow {}                -> adds the tool `late` and sends notifications/tools/list_changed
  storm {n: int}         -> sends n tools/list_changed (the last after adding `storm_done`)
  list_calls_so_far {}   -> how many tools/list requests it has answered
Prompt: greet {name}; resource: test://info (text).
Relay tools (tests/relay_protocol.rs), in their own block below: progress, sampling,
elicitation, roots, logging, resource subscriptions (test://info), completion, a call that
never ends.

  --http PORT                                    serve streamable HTTP on 127.0.0.1:PORT instead of stdio
  --handwritten                                  answer over stdio without the SDK (revision 2025-11-25 at
                                                 most): every tool result carries a member (`x-vendor`)
                                                 that no SDK models (tests/relay_stream.rs)

Fault switches (a command-line flag wins over its environment variable):
  --exit-after SECS   / TESTSERVER_EXIT_AFTER    exit with --exit-code SECS seconds after process start
  --exit-code N       / TESTSERVER_EXIT_CODE     exit code for --exit-after (default 1)
  --start-delay SECS  / TESTSERVER_START_DELAY   sleep SECS before reading stdin
  --never-answer      / TESTSERVER_NEVER_ANSWER=1  read stdin, never reply (exit 0 at stdin EOF)

SIGTERM exits promptly (code 143) even when the process is PID 1 without --init.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time

# At module level: `from __future__ import annotations` makes the tools'
# annotations strings, resolved against this module's globals.
from mcp.server.mcpserver import Context

START = time.monotonic()


def log(msg: str) -> None:
    print(f"testserver[{os.getpid()}]: {msg}", file=sys.stderr, flush=True)


def env_float(name: str) -> float | None:
    val = os.environ.get(name, "").strip()
    return float(val) if val else None


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="testserver", description="mcp-fleet stdio test server")
    p.add_argument("--exit-after", type=float, default=env_float("TESTSERVER_EXIT_AFTER"), metavar="SECS")
    p.add_argument("--exit-code", type=int, default=int(os.environ.get("TESTSERVER_EXIT_CODE") or 1), metavar="N")
    p.add_argument("--start-delay", type=float, default=env_float("TESTSERVER_START_DELAY"), metavar="SECS")
    p.add_argument("--never-answer", action="store_true", default=env_flag("TESTSERVER_NEVER_ANSWER"))
    p.add_argument("--http", type=int, metavar="PORT")
    p.add_argument("--handwritten", action="store_true")
    return p.parse_args(argv)


# What --handwritten adds to every tool result, and says it adds.
VENDOR = {"kept": [1, "two", {"three": None}], "note": "a member no SDK models"}


def serve_handwritten() -> None:
    """A stdio MCP server of a few lines of JSON-RPC, no SDK: `vendor_echo` (with `progress`
    true and a progress token, one progress notification before the result), and
    `raw_request` (the request's line as it arrived)."""
    tools = [{"name": "vendor_echo", "description": "Return the text, and a result member no SDK models",
              "inputSchema": {"type": "object", "properties": {"text": {"type": "string"},
                                                              "progress": {"type": "boolean"}}}},
             {"name": "raw_request", "description": "Return this request's line as this server read it",
              "inputSchema": {"type": "object"}}]
    for line in sys.stdin:
        msg = json.loads(line)
        method, rid = msg.get("method"), msg.get("id")
        if rid is None:
            continue
        if method == "initialize":
            asked = msg["params"]["protocolVersion"]
            result = {"protocolVersion": min(asked, "2025-11-25"), "capabilities": {"tools": {}},
                      "serverInfo": {"name": "handwritten", "version": "0"}}
        elif method == "tools/list":
            result = {"tools": tools}
        elif method == "tools/call":
            arguments = msg["params"].get("arguments", {})
            if msg["params"]["name"] == "raw_request":
                text = line.rstrip("\n")
            else:
                text = arguments.get("text", "")
            token = (msg["params"].get("_meta") or {}).get("progressToken")
            if arguments.get("progress") and token is not None:
                print(json.dumps({"jsonrpc": "2.0", "method": "notifications/progress",
                                  "params": {"progressToken": token, "progress": 1, "total": 1}}), flush=True)
            result = {"content": [{"type": "text", "text": text}], "x-vendor": VENDOR}
        elif method == "ping":
            result = {}
        else:
            print(json.dumps({"jsonrpc": "2.0", "id": rid,
                              "error": {"code": -32601, "message": f"no method {method}"}}), flush=True)
            continue
        print(json.dumps({"jsonrpc": "2.0", "id": rid, "result": result}), flush=True)


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: (log("SIGTERM, exiting"), os._exit(143)))
    try:
        from importlib.metadata import version

        sdk = version("mcp")
    except Exception:  # pragma: no cover
        sdk = "?"
    log(
        f"starting (mcp {sdk}) exit_after={args.exit_after} exit_code={args.exit_code} "
        f"start_delay={args.start_delay} never_answer={args.never_answer}"
    )

    if args.exit_after is not None:
        def die() -> None:
            log(f"--exit-after {args.exit_after}: exiting with code {args.exit_code}")
            os._exit(args.exit_code)

        t = threading.Timer(max(0.0, args.exit_after - (time.monotonic() - START)), die)
        t.daemon = True
        t.start()

    if args.start_delay:
        log(f"--start-delay: sleeping {args.start_delay}s before reading stdin")
        time.sleep(args.start_delay)

    if args.handwritten:
        log("--handwritten: serving without the SDK")
        serve_handwritten()
        return

    if args.never_answer:
        log("--never-answer: reading stdin, never replying")
        for _ in sys.stdin.buffer:
            pass
        log("stdin closed")
        return

    from mcp.server.mcpserver import MCPServer

    server = MCPServer("mcp-fleet-testserver", version="0.1.0")

    @server.tool(description="Return the given text unchanged")
    def echo(text: str) -> str:
        return text

    @server.tool(description="Return the sum of two integers")
    def add(a: int, b: int) -> int:
        return a + b

    def late() -> str:
        return "I was added later"

    @server.tool(description="Add a tool named `late` and announce it with tools/list_changed")
    async def grow(ctx: Context) -> str:
        if "late" not in {t.name for t in await server.list_tools()}:
            server.add_tool(late, name="late", description="Added at run time by grow")
        await ctx.session.send_tool_list_changed()
        return "grown"

    # --- bounds tests (tests/gateway_bounds.rs) -------------------------------
    # `storm` floods the client with list_changed; `list_calls` says how many
    # tools/list requests this server has answered, to count the relists.
    list_calls = 0
    plain_list_tools = server.list_tools

    async def counted_list_tools():  # MCPServer answers tools/list with this
        nonlocal list_calls
        list_calls += 1
        return await plain_list_tools()

    server.list_tools = counted_list_tools

    def storm_done() -> str:
        return "the storm is over"

    @server.tool(description="Send n notifications/tools/list_changed; the last one announces the tool `storm_done`")
    async def storm(n: int, ctx: Context) -> str:
        for _ in range(n - 1):
            await ctx.session.send_tool_list_changed()
        server.add_tool(storm_done, name="storm_done", description="Added by storm before its last notification")
        await ctx.session.send_tool_list_changed()
        return f"sent {n}"

    @server.tool(description="How many tools/list requests this server has answered")
    def list_calls_so_far() -> int:
        return list_calls
    # --- end of bounds tests ---------------------------------------------------

    @server.prompt(description="Greet someone by name")
    def greet(name: str) -> str:
        return f"Hello, {name}!"

    @server.resource("test://info", description="What this server is")
    def info() -> str:
        return "mcp-fleet test server"

    add_relay_tools(server)

    if args.http:
        log(f"ready on http://127.0.0.1:{args.http}/mcp")
        server.run("streamable-http", host="127.0.0.1", port=args.http)
        return
    log("ready on stdio")
    server.run("stdio")
    log("stdin closed, exiting")


# --- relay tools (tests/relay_protocol.rs) -----------------------------------
# What an upstream sends a client through the gateway during a call. Failures
# of a server-to-client request are returned as text, so a test sees exactly
# what the upstream got.

CANCELLED: list[str] = []
STARTED: list[str] = []


def add_relay_tools(server) -> None:
    import anyio
    from mcp import types
    from pydantic import BaseModel

    @server.tool(description="Report progress `steps` times, `delay` seconds apart, as '<tag> <step>'")
    async def progress(steps: int, delay: float, tag: str, ctx: Context) -> str:
        for i in range(1, steps + 1):
            await anyio.sleep(delay)
            await ctx.report_progress(i, steps, f"{tag} {i}")
        return f"{tag}: {steps} steps"

    @server.tool(description="After `delay` s, ask the client's model (sampling/createMessage) and return its text")
    async def ask_model(prompt: str, ctx: Context, delay: float = 0.0, linger: float = 0.0) -> str:
        await anyio.sleep(delay)
        try:
            result = await ctx.session.create_message(
                messages=[types.SamplingMessage(role="user", content=types.TextContent(type="text", text=prompt))],
                max_tokens=64,
                related_request_id=ctx.request_id,
            )
            answer = f"model said: {getattr(result.content, 'text', result.content)}"
        except Exception as exc:  # the test reads what the server got
            answer = f"sampling failed: {exc}"
        await anyio.sleep(linger)
        return answer

    class Answer(BaseModel):
        answer: str

    @server.tool(description="Ask the user (elicitation/create) and return the action and answer")
    async def ask_user(question: str, ctx: Context) -> str:
        try:
            result = await ctx.elicit(question, Answer)
        except Exception as exc:
            return f"elicitation failed: {exc}"
        data = getattr(result, "data", None)
        return f"{result.action}: {data.answer if data else ''}"

    @server.tool(description="List the client's roots (roots/list)")
    async def ask_roots(ctx: Context) -> str:
        try:
            result = await ctx.session.list_roots()
        except Exception as exc:
            return f"roots failed: {exc}"
        return " ".join(str(r.uri) for r in result.roots)

    @server.tool(description="Never answer; record the cancellation when it comes")
    async def hang(tag: str) -> str:
        STARTED.append(tag)
        try:
            await anyio.sleep_forever()
        finally:
            CANCELLED.append(tag)
        return "unreachable"

    @server.tool(description="The JSON-RPC id this very request came with")
    def request_id(ctx: Context) -> str:
        return str(ctx.request_id)

    @server.tool(description="The tags of hang calls cancelled so far")
    def cancelled() -> str:
        return " ".join(CANCELLED)

    @server.tool(description="The tags of hang calls started so far")
    def started() -> str:
        return " ".join(STARTED)

    @server.tool(description="Send a debug and an error log message during the call")
    async def chatter(tag: str, ctx: Context) -> str:
        await ctx.log("debug", f"debug {tag}")
        await ctx.log("error", f"error {tag}")
        return f"logged {tag}"

    @server.tool(description="Send notifications/resources/updated for a URI")
    async def touch(uri: str, ctx: Context) -> str:
        await ctx.session.send_resource_updated(uri)
        return f"touched {uri}"

    async def subscribe(ctx, params) -> types.EmptyResult:
        return types.EmptyResult()

    server._lowlevel_server.add_request_handler("resources/subscribe", types.SubscribeRequestParams, subscribe)
    server._lowlevel_server.add_request_handler("resources/unsubscribe", types.UnsubscribeRequestParams, subscribe)

    @server.completion()
    async def complete(ref, argument, context):
        if isinstance(ref, types.PromptReference) and ref.name == "greet":
            names = ["Alice", "Albert", "Bob"]
            return types.Completion(values=[n for n in names if n.startswith(argument.value)])
        return None

# --- end of relay tools -------------------------------------------------------


if __name__ == "__main__":
    main(sys.argv[1:])
