#!/usr/bin/env python3
"""A real MCP client session, driven over stdin/stdout by the Rust tests.

    mcp_session.py URL --transport http|sse [--token T] [--mode legacy|discover]

Opens one session with the official Python MCP SDK (`mcp` 2.x) and prints
`{"ready": true, "protocol_version": ...}` once it is initialized (or
`{"ready": false, "error": ...}` and exits 1). Then it reads one JSON command
per line on stdin and answers each with one JSON line on stdout:

    {"cmd": "list_tools"}                 -> {"ok": true, "tools": [names]}
    {"cmd": "list_prompts"}               -> {"ok": true, "prompts": [names]}
    {"cmd": "list_resources"}             -> {"ok": true, "resources": [uris]}
    {"cmd": "get_prompt", "name": N, "arguments": {...}}
                                          -> {"ok": true, "text": "..."} (the messages' text)
    {"cmd": "read_resource", "uri": U}    -> {"ok": true, "text": "..."}
    {"cmd": "call", "name": N, "arguments": {...}}
                                          -> {"ok": true, "is_error": bool, "text": "..."}
    {"cmd": "wait_list_changed", "timeout": secs, "kind": "tools"|"prompts"|"resources"}
    {"cmd": "take_list_changed", "kind": ...}  -> {"ok": true, "count": n} (consumes them)
                                          -> {"ok": true} once such a notification arrived
                                             since the last wait, else {"ok": false, "error": "timeout"}
    {"cmd": "ping"}                       -> {"ok": true}
    {"cmd": "close"}                      -> {"ok": true}, then the session is closed

Any failure answers {"ok": false, "error": "..."}. `--mode discover` (http
only) uses the 2026-07-28 `server/discover` lifecycle instead of `initialize`,
and takes list changes from a `subscriptions/listen` stream.
Diagnostics go to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from typing import Any

import anyio
from mcp.client.session import ClientSession
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.client.subscriptions import listen
from mcp.shared.exceptions import MCPError
from mcp.shared.subscriptions import PromptsListChanged, ResourcesListChanged, ToolsListChanged
from mcp.shared._httpx_utils import create_mcp_http_client

KINDS = ("tools", "prompts", "resources")


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


class ListChanged:
    """Counts list_changed notifications per kind; waits consume them."""

    def __init__(self) -> None:
        self.seen = {k: 0 for k in KINDS}
        self.consumed = {k: 0 for k in KINDS}
        self.arrived = anyio.Event()

    def note(self, method: str) -> None:
        for kind in KINDS:
            if method == f"notifications/{kind}/list_changed":
                self.seen[kind] += 1
                self.arrived.set()
                self.arrived = anyio.Event()

    def take(self, kind: str) -> int:
        """How many arrived since the last wait or take; consumes them."""
        n = self.seen[kind] - self.consumed[kind]
        self.consumed[kind] = self.seen[kind]
        return n

    async def wait(self, kind: str, timeout: float) -> bool:
        with anyio.move_on_after(timeout):
            while self.seen[kind] <= self.consumed[kind]:
                await self.arrived.wait()
            self.consumed[kind] = self.seen[kind]
            return True
        return False


def describe(exc: BaseException) -> str:
    """The leaf errors of a (nested) exception group, else the exception itself."""
    inner = getattr(exc, "exceptions", None)
    if inner:
        return "; ".join(describe(e) for e in inner)
    return f"{type(exc).__name__}: {exc}"


def text_of(result: Any) -> str:
    parts = []
    for block in result.content or []:
        text = getattr(block, "text", None)
        if text is not None:
            parts.append(text)
    return "".join(parts)


async def run_commands(session: ClientSession, changes: ListChanged) -> None:
    while True:
        line = await anyio.to_thread.run_sync(sys.stdin.readline)
        if not line:
            return  # stdin closed: the test is gone
        line = line.strip()
        if not line:
            continue
        try:
            command = json.loads(line)
            cmd = command.get("cmd")
            if cmd == "list_tools":
                result = await session.list_tools()
                emit({"ok": True, "tools": [t.name for t in result.tools]})
            elif cmd == "list_prompts":
                result = await session.list_prompts()
                emit({"ok": True, "prompts": [p.name for p in result.prompts]})
            elif cmd == "list_resources":
                result = await session.list_resources()
                emit({"ok": True, "resources": [str(r.uri) for r in result.resources]})
            elif cmd == "get_prompt":
                result = await session.get_prompt(command["name"], command.get("arguments") or {})
                texts = [getattr(m.content, "text", "") for m in result.messages]
                emit({"ok": True, "text": "\n".join(texts)})
            elif cmd == "read_resource":
                result = await session.read_resource(command["uri"])
                emit({"ok": True, "text": "\n".join(getattr(c, "text", "") for c in result.contents)})
            elif cmd == "call":
                result = await session.call_tool(command["name"], command.get("arguments") or {})
                emit({"ok": True, "is_error": bool(result.is_error), "text": text_of(result)})
            elif cmd == "wait_list_changed":
                kind = command.get("kind", "tools")
                if kind not in KINDS:
                    raise ValueError(f"unknown kind {kind!r}")
                if await changes.wait(kind, float(command.get("timeout", 10))):
                    emit({"ok": True})
                else:
                    emit({"ok": False, "error": "timeout"})
            elif cmd == "take_list_changed":
                emit({"ok": True, "count": changes.take(command.get("kind", "tools"))})
            elif cmd == "ping":
                await session.send_ping()
                emit({"ok": True})
            elif cmd == "close":
                emit({"ok": True})
                return
            else:
                emit({"ok": False, "error": f"unknown command {cmd!r}"})
        except Exception as exc:  # answer, keep the session
            traceback.print_exc(file=sys.stderr)
            emit({"ok": False, "error": describe(exc)})


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--transport", choices=["http", "sse"], required=True)
    parser.add_argument("--token")
    parser.add_argument("--mode", choices=["legacy", "discover"], default="legacy")
    args = parser.parse_args()

    headers = {"Authorization": f"Bearer {args.token}"} if args.token else None
    changes = ListChanged()

    async def on_message(message: Any) -> None:
        if isinstance(message, Exception):
            print(f"mcp_session: transport error: {message!r}", file=sys.stderr)
            return
        method = getattr(message, "method", None)
        if method:
            changes.note(method)

    ready = False
    try:
        if args.transport == "sse":
            transport = sse_client(args.url, headers=headers)
        else:
            transport = streamable_http_client(args.url, http_client=create_mcp_http_client(headers=headers))
        async with transport as (read, write):
            async with ClientSession(read, write, message_handler=on_message) as session:
                if args.mode == "discover":
                    result = await session.discover()
                else:
                    result = await session.initialize()
                version = session.protocol_version or getattr(result, "protocol_version", None)
                if args.mode == "discover":
                    # 2026-07-28 has no unsolicited notifications: changes
                    # arrive on a `subscriptions/listen` stream, where the
                    # server offers one.
                    try:
                        subscribing = listen(
                            session, tools_list_changed=True, prompts_list_changed=True,
                            resources_list_changed=True,
                        )
                        subscription = await subscribing.__aenter__()
                    except MCPError as exc:
                        print(f"mcp_session: no subscriptions/listen: {exc!r}", file=sys.stderr)
                        subscribing = None
                    async with anyio.create_task_group() as tg:
                        async def pump() -> None:
                            names = {ToolsListChanged: "tools", PromptsListChanged: "prompts",
                                     ResourcesListChanged: "resources"}
                            async for event in subscription:
                                kind = names.get(type(event))
                                if kind:
                                    changes.note(f"notifications/{kind}/list_changed")

                        if subscribing is not None:
                            tg.start_soon(pump)
                        emit({"ready": True, "protocol_version": version})
                        ready = True
                        await run_commands(session, changes)
                        tg.cancel_scope.cancel()
                    if subscribing is not None:
                        await subscribing.__aexit__(None, None, None)
                else:
                    emit({"ready": True, "protocol_version": version})
                    ready = True
                    await run_commands(session, changes)
    except BaseException as exc:  # noqa: BLE001 - report everything, incl. exception groups
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        traceback.print_exc(file=sys.stderr)
        message = describe(exc)
        if ready:
            emit({"ok": False, "error": message})
        else:
            emit({"ready": False, "error": message})
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(anyio.run(main))
