#!/usr/bin/env python3
"""mcp-fleet conformance fixture: the server that `@modelcontextprotocol/conformance@0.1.13`'s
server scenarios expect, on the official Python SDK (`mcp` 2.x, low-level `Server`, so every
result is the raw JSON the scenarios describe).

  server.py                       stdio (the container image's entrypoint)
  server.py --http 127.0.0.1:0    streamable HTTP at /mcp on a loopback address; prints
                                  "listening on http://HOST:PORT/mcp" to stdout once bound

Tools, prompts and resources: the names the suite calls (test_simple_text, test_sampling,
test_prompt_with_arguments, test://static-text, ...), plus these for mcp-fleet's relay tests:
  test_progress_tagged {tag, group, parties}  progress 1..3 carrying `tag` as the message; after
      the first one, waits until `parties` calls of the same `group` are in flight (so concurrent
      callers' progress interleaves), bounded by 20 s
  test_list_roots {}                          asks the client for roots/list and returns them
  test_wait_for_cancel {group}                waits until cancelled (at most 15 s)
  test_call_outcome {group, wait}             waits until that call has `started` or `ended`;
      on `ended`, says {"outcome": "cancelled" | "finished", "seconds": ...}
  test_update_resource {uri}                  sends notifications/resources/updated for `uri` to
      each connection subscribed to it (resources/subscribe), and says how many
HTTP mode checks Host/Origin (loopback names only), as the SDK does for loopback servers.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import json
import socket
import sys
import time
import warnings
import weakref
from collections import deque
from typing import Any

import mcp_types as types
from mcp.server.lowlevel import Server
from mcp.server.streamable_http import EventCallback, EventMessage, EventStore
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.message import ServerMessageMetadata

# logging/setLevel and roots are deprecated as of 2026-07-28; this server speaks the
# handshake revisions the suite uses, where they are current.
warnings.filterwarnings("ignore", message=".*deprecated as of 2026-07-28.*")

# 1x1 red PNG and a 1-sample silent WAV.
PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
)
WAV = base64.b64encode(
    b"RIFF" + (38).to_bytes(4, "little") + b"WAVEfmt " + (16).to_bytes(4, "little")
    + (1).to_bytes(2, "little") + (1).to_bytes(2, "little") + (8000).to_bytes(4, "little")
    + (16000).to_bytes(4, "little") + (2).to_bytes(2, "little") + (16).to_bytes(2, "little")
    + b"data" + (2).to_bytes(4, "little") + b"\x00\x00"
).decode()

LEVELS = ["debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"]
CANCELLABLE_WAIT = 15.0  # how long test_wait_for_cancel waits for its cancellation
OUTCOME_TIMEOUT = 25.0  # bounds test_call_outcome's waits; under the test client's 30 s
RENDEZVOUS_TIMEOUT = 20.0  # under the relay test client's 30 s call timeout, so the error arrives


def text(t: str) -> dict[str, Any]:
    return {"type": "text", "text": t}


def obj_schema(props: dict[str, Any] | None = None, required: list[str] | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": props or {}}
    if required:
        schema["required"] = required
    return schema


STR = {"type": "string"}
TOOLS: list[dict[str, Any]] = [
    {"name": "test_simple_text", "description": "Returns simple text", "inputSchema": obj_schema()},
    {"name": "test_image_content", "description": "Returns a PNG image", "inputSchema": obj_schema()},
    {"name": "test_audio_content", "description": "Returns WAV audio", "inputSchema": obj_schema()},
    {"name": "test_embedded_resource", "description": "Returns an embedded resource", "inputSchema": obj_schema()},
    {"name": "test_multiple_content_types", "description": "Returns text, image and resource",
     "inputSchema": obj_schema()},
    {"name": "test_tool_with_logging", "description": "Sends three log messages", "inputSchema": obj_schema()},
    {"name": "test_tool_with_progress", "description": "Reports progress 0, 50, 100 of 100",
     "inputSchema": obj_schema()},
    {"name": "test_error_handling", "description": "Always fails", "inputSchema": obj_schema()},
    {"name": "test_sampling", "description": "Asks the client to sample an LLM",
     "inputSchema": obj_schema({"prompt": STR}, ["prompt"])},
    {"name": "test_elicitation", "description": "Asks the user for a username and email",
     "inputSchema": obj_schema({"message": STR}, ["message"])},
    {"name": "test_elicitation_sep1034_defaults", "description": "Elicitation with defaults (SEP-1034)",
     "inputSchema": obj_schema()},
    {"name": "test_elicitation_sep1330_enums", "description": "Elicitation with enum schemas (SEP-1330)",
     "inputSchema": obj_schema()},
    {"name": "test_reconnection", "description": "Closes its SSE stream mid-call (SEP-1699)",
     "inputSchema": obj_schema()},
    {
        "name": "json_schema_2020_12_tool",
        "description": "Tool with JSON Schema 2020-12 features",
        "inputSchema": {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "$defs": {"address": {"type": "object", "properties": {"street": STR, "city": STR}}},
            "properties": {"name": STR, "address": {"$ref": "#/$defs/address"}},
            "additionalProperties": False,
        },
    },
    {"name": "test_progress_tagged", "description": "Progress tagged with `tag`, interleaved across `parties` calls",
     "inputSchema": obj_schema({"tag": STR, "group": STR, "parties": {"type": "integer", "minimum": 1}},
                               ["tag", "group", "parties"])},
    {"name": "test_list_roots", "description": "Asks the client for its roots", "inputSchema": obj_schema()},
    {"name": "test_wait_for_cancel", "description": "Waits until cancelled (at most 15 s); test_call_outcome tells",
     "inputSchema": obj_schema({"group": STR}, ["group"])},
    {"name": "test_call_outcome", "description": "Waits until the test_wait_for_cancel call of `group` has "
     "`started` or `ended`, and says how it ended", "inputSchema": obj_schema(
         {"group": STR, "wait": {"type": "string", "enum": ["started", "ended"]}}, ["group", "wait"])},
    {"name": "test_update_resource", "description": "Sends resources/updated for `uri` to the connections subscribed to it",
     "inputSchema": obj_schema({"uri": STR}, ["uri"])},
]

PROMPTS: list[dict[str, Any]] = [
    {"name": "test_simple_prompt", "description": "A simple prompt without arguments"},
    {"name": "test_prompt_with_arguments", "description": "A prompt with two arguments",
     "arguments": [{"name": "arg1", "description": "First test argument", "required": True},
                   {"name": "arg2", "description": "Second test argument", "required": True}]},
    {"name": "test_prompt_with_embedded_resource", "description": "A prompt embedding a resource",
     "arguments": [{"name": "resourceUri", "description": "URI of the resource to embed", "required": True}]},
    {"name": "test_prompt_with_image", "description": "A prompt with an image"},
]

STATIC = {
    "test://static-text": {"mimeType": "text/plain", "text": "This is the content of the static text resource."},
    "test://static-binary": {"mimeType": "image/png", "blob": PNG},
    "test://watched-resource": {"mimeType": "text/plain", "text": "Watched resource content."},
}
RESOURCES = [
    {"uri": "test://static-text", "name": "static-text", "description": "Static text resource", "mimeType": "text/plain"},
    {"uri": "test://static-binary", "name": "static-binary", "description": "Static PNG image", "mimeType": "image/png"},
    {"uri": "test://watched-resource", "name": "watched-resource", "description": "A resource to subscribe to",
     "mimeType": "text/plain"},
]
TEMPLATES = [
    {"uriTemplate": "test://template/{id}/data", "name": "template-data", "description": "Data for an id",
     "mimeType": "application/json"},
]
COMPLETIONS = {"arg1": ["paris", "park", "party", "test", "testValue1"], "arg2": ["testValue2", "world"],
               "id": ["123", "456"]}


class Waiter:
    """One test_wait_for_cancel call, as test_call_outcome sees it."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.ended = asyncio.Event()
        self.outcome = ""
        self.t0 = 0.0


class Fixture:
    """Per-connection state (log level, subscriptions) is keyed by the connection object and
    dropped with it; rendezvous groups are removed when they complete or time out, waiters of
    test_wait_for_cancel when test_call_outcome reports their end."""

    def __init__(self) -> None:
        self.levels: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
        self.subscriptions: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()
        self.groups: dict[str, tuple[int, asyncio.Event]] = {}
        self.waiters: dict[str, Waiter] = {}

    @staticmethod
    def conn(ctx: Any) -> Any:
        # The SDK keeps per-client state on the session's connection; there is no public handle.
        return ctx.session._connection

    async def log(self, ctx: Any, level: str, message: str) -> None:
        wanted = self.levels.get(self.conn(ctx), "debug")
        if LEVELS.index(level) >= LEVELS.index(wanted):
            await ctx.session.send_log_message(level, message, "conformance-fixture",
                                               related_request_id=ctx.request_id)

    async def set_level(self, ctx: Any, params: types.SetLevelRequestParams) -> dict[str, Any]:
        self.levels[self.conn(ctx)] = params.level
        return {}

    async def subscribe(self, ctx: Any, params: types.SubscribeRequestParams) -> dict[str, Any]:
        self.subscriptions.setdefault(self.conn(ctx), set()).add(str(params.uri))
        return {}

    async def unsubscribe(self, ctx: Any, params: types.UnsubscribeRequestParams) -> dict[str, Any]:
        self.subscriptions.get(self.conn(ctx), set()).discard(str(params.uri))
        return {}

    async def rendezvous(self, group: str, parties: int) -> None:
        arrived, done = self.groups.get(group, (0, asyncio.Event()))
        self.groups[group] = (arrived + 1, done)
        if arrived + 1 >= parties:
            done.set()
            self.groups.pop(group, None)
        try:
            await asyncio.wait_for(done.wait(), RENDEZVOUS_TIMEOUT)
        except TimeoutError:
            arrived, _ = self.groups.pop(group, (arrived + 1, done))
            raise RuntimeError(f"only {arrived} of {parties} calls of group {group!r} arrived "
                               f"within {RENDEZVOUS_TIMEOUT:.0f} s") from None

    async def call_tool(self, ctx: Any, params: types.CallToolRequestParams) -> dict[str, Any]:
        args = params.arguments or {}
        handler = getattr(self, "tool_" + params.name, None)
        if handler is None:
            return {"isError": True, "content": [text(f"unknown tool: {params.name}")]}
        try:
            content = await handler(ctx, args)
        except Exception as e:  # reported as a tool error, as the SDK's high-level server does
            return {"isError": True, "content": [text(str(e))]}
        return {"content": content}

    async def tool_test_simple_text(self, ctx: Any, args: dict) -> list:
        return [text("This is a simple text response for testing.")]

    async def tool_test_image_content(self, ctx: Any, args: dict) -> list:
        return [{"type": "image", "data": PNG, "mimeType": "image/png"}]

    async def tool_test_audio_content(self, ctx: Any, args: dict) -> list:
        return [{"type": "audio", "data": WAV, "mimeType": "audio/wav"}]

    async def tool_test_embedded_resource(self, ctx: Any, args: dict) -> list:
        return [{"type": "resource", "resource": {"uri": "test://embedded-resource", "mimeType": "text/plain",
                                                  "text": "This is an embedded resource content."}}]

    async def tool_test_multiple_content_types(self, ctx: Any, args: dict) -> list:
        return [
            text("Multiple content types test:"),
            {"type": "image", "data": PNG, "mimeType": "image/png"},
            {"type": "resource", "resource": {"uri": "test://mixed-content-resource", "mimeType": "application/json",
                                              "text": json.dumps({"test": "data", "value": 123})}},
        ]

    async def tool_test_tool_with_logging(self, ctx: Any, args: dict) -> list:
        await self.log(ctx, "info", "Tool execution started")
        await asyncio.sleep(0.05)
        await self.log(ctx, "info", "Tool processing data")
        await asyncio.sleep(0.05)
        await self.log(ctx, "info", "Tool execution completed")
        return [text("Tool with logging executed successfully")]

    async def tool_test_tool_with_progress(self, ctx: Any, args: dict) -> list:
        for step, progress in enumerate((0, 50, 100)):
            if step:
                await asyncio.sleep(0.05)
            await ctx.session.report_progress(progress, 100, f"step {step + 1} of 3")
        return [text("Tool with progress executed successfully")]

    async def tool_test_error_handling(self, ctx: Any, args: dict) -> list:
        raise RuntimeError("This tool intentionally returns an error for testing")

    async def tool_test_sampling(self, ctx: Any, args: dict) -> list:
        caps = ctx.session.client_capabilities
        if caps is None or caps.sampling is None:
            raise RuntimeError("the client does not support sampling")
        result = await ctx.session.create_message(
            [types.SamplingMessage(role="user", content=types.TextContent(type="text", text=str(args["prompt"])))],
            max_tokens=100, related_request_id=ctx.request_id)
        content = result.content
        answer = content.text if isinstance(content, types.TextContent) else json.dumps(
            result.model_dump(mode="json", by_alias=True, exclude_none=True)["content"])
        return [text(f"LLM response: {answer}")]

    async def elicit(self, ctx: Any, message: str, schema: dict[str, Any]) -> types.ElicitResult:
        caps = ctx.session.client_capabilities
        if caps is None or caps.elicitation is None:
            raise RuntimeError("the client does not support elicitation")
        return await ctx.session.elicit_form(message, schema, related_request_id=ctx.request_id)

    async def tool_test_elicitation(self, ctx: Any, args: dict) -> list:
        schema = obj_schema({"username": {"type": "string", "description": "User's response"},
                             "email": {"type": "string", "description": "User's email address"}},
                            ["username", "email"])
        r = await self.elicit(ctx, str(args["message"]), schema)
        return [text(f"User response: action={r.action}, content={json.dumps(r.content, sort_keys=True)}")]

    async def tool_test_elicitation_sep1034_defaults(self, ctx: Any, args: dict) -> list:
        schema = obj_schema({
            "name": {"type": "string", "description": "User name", "default": "John Doe"},
            "age": {"type": "integer", "description": "User age", "default": 30},
            "score": {"type": "number", "description": "User score", "default": 95.5},
            "status": {"type": "string", "description": "User status", "enum": ["active", "inactive", "pending"],
                       "default": "active"},
            "verified": {"type": "boolean", "description": "Verified user", "default": True},
        })
        r = await self.elicit(ctx, "Please review and update the form fields with defaults", schema)
        return [text(f"Elicitation completed: action={r.action}, content={json.dumps(r.content, sort_keys=True)}")]

    async def tool_test_elicitation_sep1330_enums(self, ctx: Any, args: dict) -> list:
        choices = [{"const": f"value{i}", "title": t} for i, t in ((1, "First Option"), (2, "Second Option"),
                                                                   (3, "Third Option"))]
        multi = [{"const": f"value{i}", "title": t} for i, t in ((1, "First Choice"), (2, "Second Choice"),
                                                                 (3, "Third Choice"))]
        schema = obj_schema({
            "untitledSingle": {"type": "string", "enum": ["option1", "option2", "option3"]},
            "titledSingle": {"type": "string", "oneOf": choices},
            "legacyEnum": {"type": "string", "enum": ["opt1", "opt2", "opt3"],
                           "enumNames": ["Option One", "Option Two", "Option Three"]},
            "untitledMulti": {"type": "array", "items": {"type": "string", "enum": ["option1", "option2", "option3"]}},
            "titledMulti": {"type": "array", "items": {"anyOf": multi}},
        })
        r = await self.elicit(ctx, "Please select options from the enum fields", schema)
        return [text(f"Elicitation completed: action={r.action}, content={json.dumps(r.content, sort_keys=True)}")]

    async def tool_test_reconnection(self, ctx: Any, args: dict) -> list:
        # A no-op on stdio and without an event store; the result is replayed after reconnecting.
        if ctx.close_sse_stream is not None:
            await ctx.close_sse_stream()
        return [text("Reconnection test completed")]

    async def tool_json_schema_2020_12_tool(self, ctx: Any, args: dict) -> list:
        return [text(f"JSON Schema 2020-12 tool called with {json.dumps(args, sort_keys=True)}")]

    async def tool_test_progress_tagged(self, ctx: Any, args: dict) -> list:
        tag, group, parties = str(args["tag"]), str(args["group"]), int(args["parties"])
        await ctx.session.report_progress(1, 3, tag)
        await self.rendezvous(group, parties)
        await ctx.session.report_progress(2, 3, tag)
        await ctx.session.report_progress(3, 3, tag)
        return [text(f"progress done: {tag}")]

    async def tool_test_wait_for_cancel(self, ctx: Any, args: dict) -> list:
        w = self.waiters.setdefault(str(args["group"]), Waiter())
        w.t0 = time.monotonic()
        w.started.set()
        try:
            await asyncio.sleep(CANCELLABLE_WAIT)
            w.outcome = "finished"
        except asyncio.CancelledError:  # notifications/cancelled interrupts the handler
            w.outcome = "cancelled"
            raise
        finally:
            w.outcome = w.outcome or "failed"
            w.ended.set()
        return [text(f"not cancelled within {CANCELLABLE_WAIT:.0f} s")]

    async def tool_test_call_outcome(self, ctx: Any, args: dict) -> list:
        group, wait = str(args["group"]), str(args["wait"])
        w = self.waiters.setdefault(group, Waiter())
        try:
            await asyncio.wait_for((w.started if wait == "started" else w.ended).wait(), OUTCOME_TIMEOUT)
        except TimeoutError:
            raise RuntimeError(f"the call of group {group!r} has not {wait} within {OUTCOME_TIMEOUT:.0f} s") from None
        if wait == "started":
            return [text("started")]
        self.waiters.pop(group, None)
        return [text(json.dumps({"outcome": w.outcome, "seconds": round(time.monotonic() - w.t0, 3)}))]

    async def tool_test_update_resource(self, ctx: Any, args: dict) -> list:
        uri = str(args["uri"])
        subscribed = [conn for conn, uris in list(self.subscriptions.items()) if uri in uris]
        for conn in subscribed:
            await conn.outbound.notify("notifications/resources/updated", {"uri": uri})
        return [text(f"notified {len(subscribed)} subscribed connection(s) of {uri}")]

    async def tool_test_list_roots(self, ctx: Any, args: dict) -> list:
        caps = ctx.session.client_capabilities
        if caps is None or caps.roots is None:
            raise RuntimeError("the client does not support roots")
        roots = await ctx.session.send_request(types.ListRootsRequest(), types.ListRootsResult,
                                               metadata=ServerMessageMetadata(related_request_id=ctx.request_id))
        return [text(json.dumps([r.model_dump(mode="json", exclude_none=True) for r in roots.roots]))]

    async def get_prompt(self, ctx: Any, params: types.GetPromptRequestParams) -> dict[str, Any]:
        a = params.arguments or {}
        if params.name == "test_simple_prompt":
            return {"messages": [{"role": "user", "content": text("This is a simple prompt for testing.")}]}
        if params.name == "test_prompt_with_arguments":
            return {"messages": [{"role": "user", "content": text(
                f"Prompt with arguments: arg1='{a.get('arg1', '')}', arg2='{a.get('arg2', '')}'")}]}
        if params.name == "test_prompt_with_embedded_resource":
            return {"messages": [
                {"role": "user", "content": {"type": "resource", "resource": {
                    "uri": a.get("resourceUri", ""), "mimeType": "text/plain",
                    "text": "Embedded resource content for testing."}}},
                {"role": "user", "content": text("Please process the embedded resource above.")},
            ]}
        if params.name == "test_prompt_with_image":
            return {"messages": [
                {"role": "user", "content": {"type": "image", "data": PNG, "mimeType": "image/png"}},
                {"role": "user", "content": text("Please analyze the image above.")},
            ]}
        raise ValueError(f"unknown prompt: {params.name}")

    async def read_resource(self, ctx: Any, params: types.ReadResourceRequestParams) -> dict[str, Any]:
        uri = str(params.uri)
        if uri in STATIC:
            return {"contents": [{"uri": uri, **STATIC[uri]}]}
        prefix, suffix = "test://template/", "/data"
        if uri.startswith(prefix) and uri.endswith(suffix) and len(uri) > len(prefix) + len(suffix):
            ident = uri[len(prefix):-len(suffix)]
            body = {"id": ident, "templateTest": True, "data": f"Data for ID: {ident}"}
            return {"contents": [{"uri": uri, "mimeType": "application/json", "text": json.dumps(body)}]}
        raise ValueError(f"unknown resource: {uri}")

    async def complete(self, ctx: Any, params: types.CompleteRequestParams) -> dict[str, Any]:
        values = [v for v in COMPLETIONS.get(params.argument.name, []) if v.startswith(params.argument.value)]
        return {"completion": {"values": values, "total": len(values), "hasMore": False}}


def listing(key: str, items: list[dict[str, Any]]):
    async def handler(ctx: Any, params: Any) -> dict[str, Any]:
        return {key: items}

    return handler


def build() -> Server:
    f = Fixture()
    return Server(
        "mcp-fleet-conformance-fixture",
        version="1.0.0",
        on_list_tools=listing("tools", TOOLS),
        on_call_tool=f.call_tool,
        on_list_prompts=listing("prompts", PROMPTS),
        on_get_prompt=f.get_prompt,
        on_list_resources=listing("resources", RESOURCES),
        on_list_resource_templates=listing("resourceTemplates", TEMPLATES),
        on_read_resource=f.read_resource,
        on_subscribe_resource=f.subscribe,
        on_unsubscribe_resource=f.unsubscribe,
        on_completion=f.complete,
        on_set_logging_level=f.set_level,
    )


class MemoryEventStore(EventStore):
    """Bounded in-memory event store, so test_reconnection's result survives the closed stream."""

    def __init__(self, limit: int = 10_000) -> None:
        self.events: deque[tuple[str, str, Any]] = deque(maxlen=limit)
        self.ids = itertools.count(1)

    async def store_event(self, stream_id: str, message: Any) -> str:
        event_id = str(next(self.ids))
        self.events.append((event_id, stream_id, message))
        return event_id

    async def replay_events_after(self, last_event_id: str, send_callback: EventCallback) -> str | None:
        stream = next((s for e, s, _ in self.events if e == last_event_id), None)
        if stream is None:
            return None
        after = False
        for event_id, stream_id, message in list(self.events):
            if after and stream_id == stream and message is not None:
                await send_callback(EventMessage(message, event_id))
            after = after or event_id == last_event_id
        return stream


async def serve_http(server: Server, host: str, port: int) -> None:
    import uvicorn

    loopback = ["127.0.0.1", "localhost", "[::1]"]
    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[f"{h}:*" for h in loopback] + loopback,
        allowed_origins=[f"http://{h}:*" for h in loopback] + [f"http://{h}" for h in loopback],
    )
    app = server.streamable_http_app(event_store=MemoryEventStore(), retry_interval=500,
                                     transport_security=security, host=host)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    print(f"listening on http://{shown}:{bound}/mcp", flush=True)
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    await uvicorn.Server(config).serve(sockets=[sock])


async def serve_stdio(server: Server) -> None:
    from mcp.server.stdio import stdio_server

    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="conformance-fixture", description=__doc__.split("\n\n")[0])
    p.add_argument("--http", metavar="HOST:PORT", help="serve streamable HTTP on a loopback address (port 0: any)")
    a = p.parse_args(argv)
    server = build()
    if a.http is None:
        asyncio.run(serve_stdio(server))
        return
    host, _, port = a.http.rpartition(":")
    host = host.strip("[]")
    if host not in ("127.0.0.1", "localhost", "::1"):
        p.error("--http binds loopback addresses only (127.0.0.1, localhost, ::1)")
    asyncio.run(serve_http(server, host, int(port)))


if __name__ == "__main__":
    main(sys.argv[1:])
