#!/usr/bin/env python3
"""mcp-fleet test MCP server (stdio), built on the `mcp` Python SDK 2.x (MCPServer).

Tools:
  echo {text: str}       -> text
  add  {a: int, b: int}  -> a + b
  grow {}                -> adds the tool `late` and sends notifications/tools/list_changed
  storm {n: int}         -> sends n tools/list_changed (the last after adding `storm_done`)
  list_calls_so_far {}   -> how many tools/list requests it has answered
Prompt: greet {name}; resource: test://info (text).

Fault switches (a command-line flag wins over its environment variable):
  --exit-after SECS   / TESTSERVER_EXIT_AFTER    exit with --exit-code SECS seconds after process start
  --exit-code N       / TESTSERVER_EXIT_CODE     exit code for --exit-after (default 1)
  --start-delay SECS  / TESTSERVER_START_DELAY   sleep SECS before reading stdin
  --never-answer      / TESTSERVER_NEVER_ANSWER=1  read stdin, never reply (exit 0 at stdin EOF)

SIGTERM exits promptly (code 143) even when the process is PID 1 without --init.
"""
from __future__ import annotations

import argparse
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
    return p.parse_args(argv)


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

    log("ready on stdio")
    server.run("stdio")
    log("stdin closed, exiting")


if __name__ == "__main__":
    main(sys.argv[1:])
