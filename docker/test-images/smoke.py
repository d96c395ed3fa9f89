#!/usr/bin/env python3
"""Smoke-check a stdio MCP server image: initialize, notifications/initialized, tools/list.

usage: smoke.py [--timeout S] [--expect-tool NAME]... [--call NAME JSONARGS EXPECTED_TEXT]... -- CMD...
CMD is the full command (e.g. `docker run -i --rm ... IMAGE`). Exits 0 on success, 1 with a reason.
"""
from __future__ import annotations

import argparse
import json
import queue
import subprocess
import sys
import threading
import time

PROTOCOL = "2025-03-26"


class Failure(Exception):
    pass


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--timeout", type=float, default=60.0, help="overall budget in seconds")
    ap.add_argument("--expect-tool", action="append", default=[])
    ap.add_argument("--call", nargs=3, action="append", default=[], metavar=("NAME", "ARGS", "EXPECT"))
    ap.add_argument("--on-timeout", default=None, help="shell command run when the budget is exceeded")
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.cmd[1:] if a.cmd[:1] == ["--"] else a.cmd
    if not cmd:
        ap.error("missing command")

    deadline = time.monotonic() + a.timeout
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lines: queue.Queue[bytes | None] = queue.Queue()
    stderr_buf: list[bytes] = []

    def pump_out() -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.put(line)
        lines.put(None)

    def pump_err() -> None:
        for line in proc.stderr:  # type: ignore[union-attr]
            stderr_buf.append(line)

    threading.Thread(target=pump_out, daemon=True).start()
    threading.Thread(target=pump_err, daemon=True).start()

    def send(msg: dict) -> None:
        proc.stdin.write((json.dumps(msg) + "\n").encode())  # type: ignore[union-attr]
        proc.stdin.flush()  # type: ignore[union-attr]

    def reply(req_id: int) -> dict:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Failure(f"timed out after {a.timeout}s waiting for reply to id {req_id}")
            try:
                line = lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise Failure(f"server closed stdout before replying to id {req_id} (exit {proc.poll()})")
            try:
                msg = json.loads(line)
            except json.JSONDecodeError:
                raise Failure(f"non-JSON line on stdout: {line[:200]!r}")
            if msg.get("id") == req_id and ("result" in msg or "error" in msg):
                if "error" in msg:
                    raise Failure(f"error reply to id {req_id}: {msg['error']}")
                return msg["result"]
            # notifications / server requests are ignored

    ok = False
    try:
        send({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": PROTOCOL, "capabilities": {},
            "clientInfo": {"name": "mcp-fleet-smoke", "version": "0"}}})
        init = reply(1)
        info = init.get("serverInfo", {})
        send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        send({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}})
        tools = [t["name"] for t in reply(2).get("tools", [])]
        if not tools:
            raise Failure("tools/list returned no tools")
        missing = [t for t in a.expect_tool if t not in tools]
        if missing:
            raise Failure(f"tools/list lacks {missing}; got {tools}")
        for i, (name, args, expect) in enumerate(a.call, start=3):
            send({"jsonrpc": "2.0", "id": i, "method": "tools/call",
                  "params": {"name": name, "arguments": json.loads(args)}})
            res = reply(i)
            texts = [c.get("text") for c in res.get("content", []) if c.get("type") == "text"]
            if res.get("isError") or expect not in texts:
                raise Failure(f"tools/call {name} {args}: expected text {expect!r}, got {res}")
        print(f"ok: {info.get('name')} {info.get('version')} protocol={init.get('protocolVersion')} "
              f"tools={tools}", file=sys.stderr)
        ok = True
    except (Failure, BrokenPipeError) as e:
        print(f"FAIL: {e}", file=sys.stderr)
    finally:
        try:
            proc.stdin.close()  # type: ignore[union-attr]
        except OSError:
            pass
        try:
            proc.wait(timeout=max(5.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            if a.on_timeout:
                subprocess.run(a.on_timeout, shell=True, timeout=30)
            proc.kill()
            proc.wait()
        if not ok and stderr_buf:
            sys.stderr.write("--- server stderr (tail) ---\n")
            sys.stderr.write(b"".join(stderr_buf[-20:]).decode(errors="replace"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
