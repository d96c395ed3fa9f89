#!/usr/bin/env python3
"""A real MCP client session, driven over stdin/stdout by the Rust tests.

    mcp_session.py URL --transport http|sse [--token T] [--mode legacy|discover]
                   [--sampling TEXT] [--elicit TEXT] [--root URI]... [--header NAME:VALUE]...

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
    {"cmd": "call", ..., "progress": true} -> also "progress": [[progress, total, message]...]
    {"cmd": "call", ..., "read_timeout": secs} -> gives up (and cancels) after secs
    {"cmd": "set_level", "level": L}      -> {"ok": true}
    {"cmd": "wait_log", "contains": S, "timeout": secs}
                                          -> {"ok": true, "logs": [[level, data]...]} once a log
                                             message containing S arrived (all logs so far)
    {"cmd": "subscribe"|"unsubscribe", "uri": U} -> {"ok": true}
    {"cmd": "wait_updated", "uri": U, "timeout": secs}
                                          -> {"ok": true} once notifications/resources/updated
                                             for U arrived since the last wait, else "timeout"
    {"cmd": "updated", "uri": U}          -> {"ok": true, "count": N} updates for U so far
    {"cmd": "complete", "prompt": P, "argument": A, "value": V}
                                          -> {"ok": true, "values": [...]}
    {"cmd": "close"}                      -> {"ok": true}, then the session is closed

`--sampling TEXT` answers sampling/createMessage with "TEXT <- <the prompt>",
`--elicit TEXT` accepts elicitation/create with {"answer": TEXT}, `--root URI`
lists a root; without them the client does not declare the capability.
`--header NAME:VALUE` sends one more header with every HTTP request.
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


class Seen:
    """Log messages and resource updates the server sent, with waits."""

    def __init__(self) -> None:
        self.logs: list[list[Any]] = []
        self.updated: dict[str, int] = {}
        self.consumed: dict[str, int] = {}
        self.arrived = anyio.Event()

    def _wake(self) -> None:
        self.arrived.set()
        self.arrived = anyio.Event()

    async def log(self, params: Any) -> None:
        self.logs.append([str(params.level), params.data])
        self._wake()

    def note(self, message: Any) -> None:
        if getattr(message, "method", None) == "notifications/resources/updated":
            uri = str(message.params.uri)
            self.updated[uri] = self.updated.get(uri, 0) + 1
            self._wake()

    async def wait(self, ready: Any, timeout: float) -> bool:
        with anyio.move_on_after(timeout):
            while not ready():
                await self.arrived.wait()
            return True
        return False


seen = Seen()


def client_callbacks(args: argparse.Namespace) -> dict[str, Any]:
    from mcp import types

    callbacks: dict[str, Any] = {"logging_callback": seen.log}
    if args.sampling is not None:
        async def sampling(context: Any, params: Any) -> Any:
            prompt = " ".join(getattr(m.content, "text", "") for m in params.messages)
            return types.CreateMessageResult(
                role="assistant",
                content=types.TextContent(type="text", text=f"{args.sampling} <- {prompt}"),
                model="mcp-session-test-model",
            )
        callbacks["sampling_callback"] = sampling
    if args.elicit is not None:
        async def elicit(context: Any, params: Any) -> Any:
            return types.ElicitResult(action="accept", content={"answer": args.elicit})
        callbacks["elicitation_callback"] = elicit
    if args.root:
        async def roots(context: Any) -> Any:
            return types.ListRootsResult(roots=[types.Root(uri=u) for u in args.root])
        callbacks["list_roots_callback"] = roots
    return callbacks


async def relay_command(session: ClientSession, command: dict[str, Any]) -> bool:
    """The commands of the relay tests; False if `command` is not one."""
    from mcp import types

    cmd = command.get("cmd")
    timeout = float(command.get("timeout", 10))
    if cmd == "call" and command.get("progress"):
        progress: list[list[Any]] = []

        async def on_progress(value: float, total: float | None, message: str | None) -> None:
            progress.append([value, total, message])

        result = await session.call_tool(
            command["name"], command.get("arguments") or {}, progress_callback=on_progress
        )
        emit({"ok": True, "is_error": bool(result.is_error), "text": text_of(result), "progress": progress})
    elif cmd == "set_level":
        await session.set_logging_level(command["level"])
        emit({"ok": True})
    elif cmd == "wait_log":
        want = command["contains"]
        found = await seen.wait(lambda: any(want in str(d) for _, d in seen.logs), timeout)
        emit({"ok": found, "logs": seen.logs, **({} if found else {"error": "timeout"})})
    elif cmd in ("subscribe", "unsubscribe"):
        if cmd == "subscribe":
            await session.subscribe_resource(command["uri"])
        else:
            await session.unsubscribe_resource(command["uri"])
        emit({"ok": True})
    elif cmd == "wait_updated":
        uri = command["uri"]
        if await seen.wait(lambda: seen.updated.get(uri, 0) > seen.consumed.get(uri, 0), timeout):
            seen.consumed[uri] = seen.updated[uri]
            emit({"ok": True})
        else:
            emit({"ok": False, "error": "timeout"})
    elif cmd == "updated":
        emit({"ok": True, "count": seen.updated.get(command["uri"], 0)})
    elif cmd == "complete":
        result = await session.complete(
            types.PromptReference(type="ref/prompt", name=command["prompt"]),
            {"name": command["argument"], "value": command["value"]},
        )
        emit({"ok": True, "values": result.completion.values})
    else:
        return False
    return True


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
            if await relay_command(session, command):
                pass
            elif cmd == "list_tools":
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
                result = await session.call_tool(
                    command["name"], command.get("arguments") or {},
                    read_timeout_seconds=command.get("read_timeout"),
                )
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
    parser.add_argument("--sampling")
    parser.add_argument("--elicit")
    parser.add_argument("--root", action="append", default=[])
    parser.add_argument("--header", action="append", default=[])
    args = parser.parse_args()

    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    for header in args.header:
        name, _, value = header.partition(":")
        headers[name.strip()] = value.strip()
    headers = headers or None
    changes = ListChanged()

    async def on_message(message: Any) -> None:
        if isinstance(message, Exception):
            print(f"mcp_session: transport error: {message!r}", file=sys.stderr)
            return
        method = getattr(message, "method", None)
        if method:
            changes.note(method)
            seen.note(message)

    ready = False
    try:
        if args.transport == "sse":
            transport = sse_client(args.url, headers=headers)
        else:
            transport = streamable_http_client(args.url, http_client=create_mcp_http_client(headers=headers))
        async with transport as (read, write):
            async with ClientSession(
                read, write, message_handler=on_message, **client_callbacks(args)
            ) as session:
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
