#!/usr/bin/env python3
"""mcp-fleet benchmarks (issue 5): every figure next to a baseline measured in the same run.

Run through `bench/run` (engine, images, release build, gateways), or directly:
    bench/harness.py [--quick] [--only 1,2,...] [--binary target/release/mcp-fleet]
Needs DOCKER_HOST and the test images. Standard library only; the other gateways
(figure 5) come from BENCH_NPM_BIN / BENCH_PYPROXY (set by bench/run).

Prints a table and writes bench/results/latest.json. Every figure reports median and p99
over repeated runs and its ratio to its baseline. --quick runs every code path at tiny
sizes in seconds; its numbers mean nothing and nothing is asserted about them.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import concurrent.futures
import hashlib
import hmac
import json
import os
import pathlib
import platform
import queue
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

IMAGE = "mcp-fleet-test/testserver:latest"
ROOT = pathlib.Path(__file__).resolve().parent.parent
PROTO = "2025-06-18"
# The container options mcp-fleet uses (src/runtime/docker.rs), as `docker run` flags.
HARDENING = ["--init", "--security-opt", "no-new-privileges", "--cap-drop", "ALL",
             "--memory", "512m", "--cpus", "1", "--pids-limit", "256", "--read-only",
             "--tmpfs", "/tmp:rw,nosuid,size=64m", "--network", "none"]
CLK_TCK = os.sysconf("SC_CLK_TCK")
RUN_ID = f"b{os.getpid()}"
# Every tool call of figure 5's loads, direct or through a gateway, waits at
# most this long, by the same means: `asyncio.timeout` (about 5 µs of the load
# generator's time per call on Python 3.11). Until 2026-11-23 only the
# gateways' calls had a deadline, by `asyncio.wait_for`, which on 3.11 runs
# the call as a task of its own: about 13 µs per call that was counted as the
# gateway's (BENCHMARKS.md, "Relay, sixth pass").
CALL_DEADLINE = 30


def env_pairs(v: str) -> dict:
    """`K=V,K=V` (bench/ab.py's and bench/abi.py's ENVA/ENVB) as a dict."""
    return dict(kv.split("=", 1) for kv in v.split(",") if kv)


def log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def summary(xs: list[float], scale: float = 1e3) -> dict:
    """median and p99 (nearest rank) of xs, times `scale` (seconds -> ms by default)."""
    if not xs:
        return {"median": None, "p99": None, "n": 0}
    s = sorted(xs)
    p99 = s[min(len(s) - 1, max(0, int(round(0.99 * len(s) + 0.5)) - 1))]
    return {"median": statistics.median(s) * scale, "p99": p99 * scale, "n": len(s)}


def ratio(a: dict, b: dict) -> float | None:
    if a.get("median") is None or not b.get("median"):
        return None
    return a["median"] / b["median"]


# ---------------------------------------------------------------------------------------------
# Engine helpers

def docker(*args: str, check: bool = True) -> str:
    return subprocess.run(["docker", *args], check=check, capture_output=True, text=True).stdout


class Events:
    """The engine's container events, stamped by the engine."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            ["docker", "events", "--filter", "type=container", "--format", "{{json .}}"],
            stdout=subprocess.PIPE, text=True)
        self.q: queue.Queue = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        time.sleep(0.5)  # let it subscribe

    def _pump(self) -> None:
        for line in self.proc.stdout:
            try:
                self.q.put(json.loads(line))
            except ValueError:
                pass

    def drain(self) -> None:
        while not self.q.empty():
            self.q.get_nowait()

    def wait(self, action: str, names: set[str] | str, timeout: float = 120.0) -> float:
        """Engine time of the last of `names`' `action` events (seconds since the epoch)."""
        want = {names} if isinstance(names, str) else set(names)
        deadline = time.time() + timeout
        last = 0.0
        while want:
            left = deadline - time.time()
            if left <= 0:
                raise TimeoutError(f"no {action} event for {sorted(want)[:3]} (+{len(want)})")
            try:
                ev = self.q.get(timeout=left)
            except queue.Empty:
                continue
            name = ev.get("Actor", {}).get("Attributes", {}).get("name")
            if ev.get("Action") == action and name in want:
                want.discard(name)
                last = max(last, ev["timeNano"] / 1e9)
        return last

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait()


def catalog(servers: list[str]) -> str:
    if not servers:
        return "name: docker-mcp\nregistry: {}\n"
    return "name: docker-mcp\nregistry:\n" + "".join(
        f"  {s}:\n    image: {IMAGE}\n    disableNetwork: true\n" for s in servers)


def write_atomic(path: pathlib.Path, text: str) -> None:
    tmp = path.with_name("." + path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_cpu(pid: int) -> float:
    """utime+stime of pid, in seconds."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_rss_mb(pid: int) -> float:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def rss_tree_mb(pid: int) -> float:
    """RSS of pid and its descendants (node/python gateways spawn children)."""
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            total += proc_rss_mb(p)
            for t in pathlib.Path(f"/proc/{p}/task").iterdir():
                kids = (t / "children").read_text().split()
                todo.extend(int(k) for k in kids)
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


def wait_until(pred, timeout: float, what: str, step: float = 0.05):
    deadline = time.time() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.time() > deadline:
            raise TimeoutError(what)
        time.sleep(step)


class Fleet:
    """One `mcp-fleet run` on a temp config dir, with its gateway on a free loopback port."""

    def __init__(self, binary: str, name: str, extra: list[str] | None = None,
                 docker_host: str | None = None, no_auth: bool = True) -> None:
        self.tmp = tempfile.TemporaryDirectory(prefix="mcp-fleet-bench-")
        self.dir = pathlib.Path(self.tmp.name)
        self.fleet = f"{RUN_ID}-{name}"
        self.port = free_port()
        write_atomic(self.dir / "docker-mcp.yaml", catalog([]))
        env = dict(os.environ)
        if docker_host:
            env["DOCKER_HOST"] = docker_host
        # The log goes to a file, not to a pipe read by a thread of this
        # process: such a thread wakes on every audit line, as the response it
        # precedes arrives, and takes the GIL from the load generator (it
        # added about 0.15 ms to figure 5's p50). A deployed gateway's log is
        # read by another process.
        # (Not in the config dir, which the fleet watches.)
        self.logdir = tempfile.TemporaryDirectory(prefix="mcp-fleet-bench-log-")
        self.log = pathlib.Path(self.logdir.name) / "mcp-fleet.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [binary, "run", "--config-dir", str(self.dir), "--fleet", self.fleet,
                 "--listen", f"127.0.0.1:{self.port}", *(["--no-auth"] if no_auth else []),
                 "--stop-timeout", "10",
                 *(extra or [])],
                stderr=log, stdout=subprocess.DEVNULL, env=env)
        wait_until(lambda: any("gateway listening" in l for l in self.lines), 30,
                   f"fleet {name}: gateway did not start: {self.lines[-5:]}")
        wait_until(lambda: (self.dir / "mcp-status.json").exists(), 30, "no status file")

    @property
    def lines(self) -> list[str]:
        """The fleet's log so far."""
        return self.log.read_text(errors="replace").splitlines()

    def container(self, server: str) -> str:
        return f"mcp-fleet-{self.fleet}-{server}"

    def set_servers(self, servers: list[str]) -> float:
        t0 = time.time()
        write_atomic(self.dir / "docker-mcp.yaml", catalog(servers))
        return t0

    def status(self) -> dict:
        try:
            return json.loads((self.dir / "mcp-status.json").read_text())
        except (OSError, ValueError):
            return {}

    def wait_ready(self, servers: list[str], timeout: float = 300) -> None:
        def ok() -> bool:
            st = self.status().get("servers", {})
            return all(st.get(s, {}).get("phase") == "Running"
                       and (st.get(s, {}).get("ready") or {}).get("status") in (True, "True", "ready", "Ready")
                       for s in servers) and set(st) >= set(servers)
        wait_until(ok, timeout, f"{len(servers)} servers not all ready", step=0.2)

    def wait_empty(self, timeout: float = 120) -> None:
        wait_until(lambda: not docker("ps", "-aq", "--filter", f"label=io.mcp-fleet.fleet={self.fleet}").strip(),
                   timeout, "fleet containers still present", step=0.2)

    @property
    def url(self) -> tuple[str, int, str]:
        return ("127.0.0.1", self.port, "/mcp")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        ids = docker("ps", "-aq", "--filter", f"label=io.mcp-fleet.fleet={self.fleet}").split()
        for i in range(0, len(ids), 50):
            docker("rm", "-f", *ids[i:i + 50], check=False)
        self.tmp.cleanup()


def parallel(n: int, fn, items) -> list:
    with concurrent.futures.ThreadPoolExecutor(n) as ex:
        return list(ex.map(fn, items))


# ---------------------------------------------------------------------------------------------
# A raw HTTP/1.1 MCP client (asyncio streams): our load generator, no SDK in the path.

class HttpError(Exception):
    pass


class McpConn:
    """One keep-alive HTTP connection carrying JSON-RPC POSTs of one MCP session."""

    def __init__(self, host: str, port: int, path: str, session: str | None = None) -> None:
        self.host, self.port, self.path = host, port, path
        self.session = session
        self.r: asyncio.StreamReader | None = None
        self.w: asyncio.StreamWriter | None = None
        self.next_id = random.randrange(1 << 20) * 1000

    async def connect(self) -> "McpConn":
        self.r, self.w = await asyncio.open_connection(self.host, self.port, limit=1 << 22)
        return self

    async def _read_response(self) -> tuple[int, dict, bytes]:
        head = await self.r.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        hdrs = {}
        for l in lines[1:]:
            if ":" in l:
                k, v = l.split(":", 1)
                hdrs[k.strip().lower()] = v.strip()
        if "content-length" in hdrs:
            body = await self.r.readexactly(int(hdrs["content-length"]))
        elif hdrs.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int((await self.r.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await self.r.readuntil(b"\r\n")
                    break
                parts.append(await self.r.readexactly(size))
                await self.r.readexactly(2)
            body = b"".join(parts)
        elif status in (202, 204) or hdrs.get("connection", "").lower() != "close":
            body = b""
        else:
            body = await self.r.read()
        return status, hdrs, body

    def _request(self, body: bytes) -> bytes:
        h = (f"POST {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
             "Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n"
             f"MCP-Protocol-Version: {PROTO}\r\nContent-Length: {len(body)}\r\n")
        if self.session:
            h += f"mcp-session-id: {self.session}\r\n"
        if BEARER:
            h += f"Authorization: Bearer {BEARER}\r\n"
        return h.encode() + b"\r\n" + body

    async def post(self, msg: dict) -> tuple[dict | None, dict]:
        """Sends msg; returns (the JSON-RPC response with msg's id or None, headers)."""
        self.w.write(self._request(json.dumps(msg).encode()))
        status, hdrs, body = await self._read_response()
        if status >= 400:
            raise HttpError(f"HTTP {status}: {body[:200]!r}")
        if "id" not in msg:
            return None, hdrs
        if hdrs.get("content-type", "").startswith("text/event-stream"):
            for line in body.split(b"\n"):
                if line.startswith(b"data:"):
                    data = line[5:].strip()
                    if data:
                        m = json.loads(data)
                        if m.get("id") == msg["id"]:
                            return m, hdrs
            raise HttpError(f"no response with id {msg['id']} in event stream: {body[:200]!r}")
        m = json.loads(body)
        return m, hdrs

    async def call(self, method: str, params: dict | None = None) -> dict:
        self.next_id += 1
        msg = {"jsonrpc": "2.0", "id": self.next_id, "method": method}
        if params is not None:
            msg["params"] = params
        resp, _ = await self.post(msg)
        if "error" in resp:
            raise HttpError(f"{method}: {resp['error']}")
        return resp["result"]

    async def initialize(self) -> str:
        resp, hdrs = await self.post({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": PROTO, "capabilities": {},
            "clientInfo": {"name": "mcp-fleet-bench", "version": "0"}}})
        self.session = hdrs.get("mcp-session-id")
        await self.post({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return self.session

    async def close(self) -> None:
        if self.w:
            self.w.close()
            try:
                await self.w.wait_closed()
            except OSError:
                pass


async def open_session(host: str, port: int, path: str) -> tuple[str, McpConn]:
    c = await McpConn(host, port, path).connect()
    sid = await c.initialize()
    return sid, c


async def listen_events(host: str, port: int, path: str, session: str, out: asyncio.Queue,
                        ready: asyncio.Event) -> None:
    """The standalone GET event stream of a session: puts (time, message) on `out`."""
    r, w = await asyncio.open_connection(host, port)
    w.write((f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n"
             f"MCP-Protocol-Version: {PROTO}\r\nmcp-session-id: {session}\r\n\r\n").encode())
    head = await r.readuntil(b"\r\n\r\n")
    if b" 200 " not in head.split(b"\r\n")[0] + b" ":
        raise HttpError(f"GET stream: {head[:100]!r}")
    ready.set()
    try:
        while True:
            line = await r.readline()
            if not line:
                return
            if line.startswith(b"data:"):
                try:
                    out.put_nowait((time.time(), json.loads(line[5:].strip())))
                except ValueError:
                    pass
    finally:
        w.close()


async def load(target: dict, conns: int, seconds: float) -> dict:
    """tools/call echo over `conns` keep-alive connections sharing one session, for `seconds`.
    Returns per-call latencies and calls/s."""
    lat: list[float] = []
    if target["kind"] == "stdio":
        return await load_stdio(target, conns, seconds)
    host, port, path = target["url"]
    sid, first = await open_session(host, port, path)
    cs = [first] + [await McpConn(host, port, path, sid).connect() for _ in range(conns - 1)]
    stop = time.perf_counter() + seconds

    async def worker(c: McpConn, k: int) -> int:
        n = 0
        while time.perf_counter() < stop:
            t = time.perf_counter()
            async with asyncio.timeout(CALL_DEADLINE):
                res = await c.call("tools/call", {"name": "echo", "arguments": {"text": f"x{k}"}})
            lat.append(time.perf_counter() - t)
            if res.get("content", [{}])[0].get("text") != f"x{k}":
                raise HttpError(f"bad echo result {res}")
            n += 1
        return n

    t0 = time.perf_counter()
    counts = await asyncio.gather(*(worker(c, k) for k, c in enumerate(cs)))
    el = time.perf_counter() - t0
    for c in cs:
        await c.close()
    return {"lat": lat, "rps": sum(counts) / el}


async def load_stdio(target: dict, conns: int, seconds: float) -> dict:
    """The same calls written straight to the server's stdio (`docker run -i`), `conns` in flight."""
    p = target["proc"]
    lat: list[float] = []
    stop = time.perf_counter() + seconds

    async def worker(k: int) -> int:
        n = 0
        while time.perf_counter() < stop:
            target["nid"] += 1
            i = target["nid"]
            fut = asyncio.get_running_loop().create_future()
            target["pending"][i] = fut
            t = time.perf_counter()
            p.stdin.write((json.dumps({"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": {
                "name": "echo", "arguments": {"text": f"x{k}"}}}) + "\n").encode())
            async with asyncio.timeout(CALL_DEADLINE):
                res = await fut
            lat.append(time.perf_counter() - t)
            if res["result"]["content"][0]["text"] != f"x{k}":
                raise HttpError(f"bad echo result {res}")
            n += 1
        return n

    t0 = time.perf_counter()
    counts = await asyncio.gather(*(worker(k) for k in range(conns)))
    return {"lat": lat, "rps": sum(counts) / (time.perf_counter() - t0)}


async def start_stdio_direct(name: str) -> dict:
    p = await asyncio.create_subprocess_exec(
        "docker", "run", "-i", "--rm", "--name", name, *HARDENING, IMAGE,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL, limit=1 << 22)
    t = {"kind": "stdio", "proc": p, "pending": {}, "nid": 100}

    async def reader() -> None:
        while True:
            line = await p.stdout.readline()
            if not line:
                return
            m = json.loads(line)
            f = t["pending"].pop(m.get("id"), None)
            if f and not f.done():
                f.set_result(m)

    t["reader"] = asyncio.ensure_future(reader())
    fut = asyncio.get_running_loop().create_future()
    t["pending"][1] = fut
    p.stdin.write((json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": PROTO, "capabilities": {},
        "clientInfo": {"name": "bench", "version": "0"}}}) + "\n").encode())
    await asyncio.wait_for(fut, 60)
    p.stdin.write(b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n')
    return t


async def stop_stdio_direct(t: dict) -> None:
    t["proc"].stdin.close()
    try:
        await asyncio.wait_for(t["proc"].wait(), 15)
    except asyncio.TimeoutError:
        t["proc"].kill()


async def null_server_ceiling(seconds: float) -> float:
    """The load generator's own ceiling: 16 connections against an in-process HTTP server that
    answers every POST at once with a canned echo result."""
    body = json.dumps({"jsonrpc": "2.0", "id": 0,
                       "result": {"content": [{"type": "text", "text": "x"}]}}).encode()

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await r.readuntil(b"\r\n\r\n")
                n = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
                req = json.loads(await r.readexactly(n))
                text = (req.get("params") or {}).get("arguments", {}).get("text", "x")
                b = body.replace(b'"id": 0', b'"id": %d' % req.get("id", 0)).replace(
                    b'"text": "x"', json.dumps({"text": text})[1:-1].encode())
                w.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nmcp-session-id: s\r\n"
                        b"Content-Length: %d\r\n\r\n" % len(b) + b)
        except (asyncio.IncompleteReadError, ConnectionError):
            w.close()

    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    res = await load({"kind": "http", "url": ("127.0.0.1", port, "/mcp")}, 16, seconds)
    srv.close()
    return res["rps"]


# ---------------------------------------------------------------------------------------------
# A counting proxy in front of the engine socket (figure 3): counts requests by method and path.

class EngineProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.path = tempfile.mktemp(prefix="mcp-fleet-bench-engine-", suffix=".sock")
        self.counts: dict[tuple[str, str], int] = {}
        self.loop = asyncio.new_event_loop()
        started = threading.Event()
        threading.Thread(target=self._run, args=(started,), daemon=True).start()
        started.wait(10)

    def _run(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)

        async def main() -> None:
            await asyncio.start_unix_server(self._client, self.path)
            started.set()
        self.loop.run_until_complete(main())
        self.loop.run_forever()

    @staticmethod
    def norm(path: str) -> str:
        p = path.split("?", 1)[0]
        p = re.sub(r"^/v[0-9.]+", "", p)
        return re.sub(r"^/(containers|images|exec)/[^/]+", r"/\1/{id}", p)

    async def _client(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        ur, uw = await asyncio.open_unix_connection(self.upstream)

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            try:
                while data := await r.read(65536):
                    w.write(data)
                    await w.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                try:
                    w.write_eof()
                except (OSError, RuntimeError):
                    pass

        back = asyncio.ensure_future(pipe(ur, cw))
        try:
            while True:
                try:
                    head = await cr.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    break
                first = head.split(b"\r\n", 1)[0].decode("latin-1").split()
                method, path = first[0], first[1]
                key = (method, self.norm(path))
                self.counts[key] = self.counts.get(key, 0) + 1
                uw.write(head)
                hl = head.lower()
                m = re.search(rb"content-length: *(\d+)", hl)
                if m:
                    uw.write(await cr.readexactly(int(m.group(1))))
                elif b"transfer-encoding: chunked" in hl:
                    while True:
                        line = await cr.readuntil(b"\r\n")
                        uw.write(line)
                        size = int(line.split(b";")[0], 16)
                        uw.write(await cr.readexactly(size + 2))
                        if size == 0:
                            break
                await uw.drain()
                if b"upgrade:" in hl or "/attach" in path:
                    await pipe(cr, uw)  # hijacked: raw bytes from here on
                    break
        finally:
            await back
            cw.close()
            uw.close()

    def snapshot(self) -> dict:
        return dict(self.counts)

    @staticmethod
    def writes(before: dict, after: dict) -> dict:
        return {f"{m} {p}": n - before.get((m, p), 0) for (m, p), n in after.items()
                if m not in ("GET", "HEAD") and n - before.get((m, p), 0)}

    def close(self) -> None:
        async def cancel_all() -> None:
            me = asyncio.current_task()
            tasks = [t for t in asyncio.all_tasks() if t is not me]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        try:
            asyncio.run_coroutine_threadsafe(cancel_all(), self.loop).result(10)
        except Exception:
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        try:
            os.unlink(self.path)
        except OSError:
            pass


# ---------------------------------------------------------------------------------------------
# The figures

def fig1_reconcile(a, events: Events) -> dict:
    """Catalog write -> container start event, vs `docker run -d`, interleaved."""
    fl = Fleet(a.binary, "f1")
    fleet_s, raw_s = [], []
    try:
        name = fl.container("s")
        for i in range(a.runs):
            events.drain()
            t0 = fl.set_servers(["s"])
            fleet_s.append(events.wait("start", name) - t0)
            fl.set_servers([])
            events.wait("destroy", name)
            raw = f"{RUN_ID}-raw1-{i}"
            t0 = time.time()
            docker("run", "-d", "-i", *HARDENING, "--name", raw, IMAGE)
            raw_s.append(events.wait("start", raw) - t0)
            docker("rm", "-f", raw)
    finally:
        fl.close()
    f, d = summary(fleet_s), summary(raw_s)
    return {"fleet": f, "baseline": d, "ratio": ratio(f, d), "target": 1.2}


def fig2_converge(a, events: Events) -> dict:
    """N servers approved at once -> all started; and all removed. Baseline: the same
    `docker run -d` (then `docker stop` + `docker rm -f`) with mcp-fleet's --concurrency."""
    n, par = a.scale, a.concurrency
    fl = Fleet(a.binary, "f2", ["--concurrency", str(par)])
    up_f, up_d, down_f, down_d = [], [], [], []
    servers = [f"s{i}" for i in range(n)]
    try:
        for r in range(a.scale_runs):
            events.drain()
            t0 = fl.set_servers(servers)
            up_f.append(events.wait("start", {fl.container(s) for s in servers}, 600) - t0)
            t0 = fl.set_servers([])
            down_f.append(events.wait("destroy", {fl.container(s) for s in servers}, 600) - t0)
            raws = [f"{RUN_ID}-raw2-{r}-{i}" for i in range(n)]
            t0 = time.time()
            parallel(par, lambda nm: docker("run", "-d", "-i", *HARDENING, "--name", nm, IMAGE), raws)
            up_d.append(events.wait("start", set(raws), 600) - t0)
            t0 = time.time()
            parallel(par, lambda nm: (docker("stop", "-t", "10", nm), docker("rm", "-f", "-v", nm)), raws)
            down_d.append(events.wait("destroy", set(raws), 600) - t0)
    finally:
        fl.close()
    uf, ud, df, dd = summary(up_f), summary(up_d), summary(down_f), summary(down_d)
    return {"servers": n, "parallelism": par,
            "up": {"fleet": uf, "baseline": ud, "ratio": ratio(uf, ud), "target": 1.1},
            "down": {"fleet": df, "baseline": dd, "ratio": ratio(df, dd)}}


def fig3_steady(a) -> dict:
    """Through a counting engine proxy: engine writes and CPU per no-op resync with N servers in
    sync; controller RSS at 0, N and N_big servers."""
    rest = rest_cpu(a)
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    proxy = EngineProxy(host.removeprefix("unix://"))
    resync = 1.0
    # A long handshake timeout: on 2 cores, 200 Python servers starting at once take longer than
    # the default 30 s to answer, and the gateway then replaces them (a thrash, not a figure).
    fl = Fleet(a.binary, "f3", ["--resync", str(resync), "--concurrency", str(a.concurrency),
                                "--handshake-timeout", "600"],
               docker_host=f"unix://{proxy.path}")
    out: dict = {"servers": a.scale, "resync_interval_s": resync, "rest": rest}
    try:
        time.sleep(a.settle)
        rss = {0: proc_rss_mb(fl.proc.pid)}
        servers = [f"s{i}" for i in range(a.scale)]
        fl.set_servers(servers)
        fl.wait_ready(servers)
        time.sleep(a.settle)  # let start-up settle (handshakes, status writes)
        rss[a.scale] = proc_rss_mb(fl.proc.pid)
        before = proxy.snapshot()
        cpu = []
        # Idle windows of one resync interval each: CPU time per interval (an upper bound on
        # one resync's cost: it also holds event handling and the gateway's pings).
        c0 = proc_cpu(fl.proc.pid)
        t_start = time.time()
        for _ in range(a.resync_windows):
            time.sleep(resync)
            c1 = proc_cpu(fl.proc.pid)
            cpu.append(c1 - c0)
            c0 = c1
        window = time.time() - t_start
        after = proxy.snapshot()
        writes = EngineProxy.writes(before, after)
        reads = {f"{m} {p}": n - before.get((m, p), 0) for (m, p), n in after.items()
                 if m in ("GET", "HEAD") and n - before.get((m, p), 0)}
        list_calls = reads.get("GET /containers/json", 0)
        out.update({
            "window_s": window, "resyncs_expected": int(window / resync),
            "engine_writes": sum(writes.values()), "engine_writes_by_path": writes,
            "engine_reads_by_path": reads, "container_list_calls": list_calls,
            "cpu_ms_per_interval": summary(cpu),
            "target_writes": 0,
        })
        big = [f"s{i}" for i in range(a.scale_big)]
        fl.set_servers(big)
        # Capped wait: RSS is taken when all are ready or after big_wait, with the count said.
        deadline = time.time() + a.big_wait
        while time.time() < deadline:
            st = fl.status().get("servers", {})
            n_ready = sum(1 for v in st.values() if (v.get("ready") or {}).get("status") is True)
            if n_ready >= len(big):
                break
            time.sleep(1)
        time.sleep(a.settle)
        st = fl.status().get("servers", {})
        out["big_ready"] = sum(1 for v in st.values() if (v.get("ready") or {}).get("status") is True)
        out["big_running"] = sum(1 for v in st.values() if v.get("phase") == "Running")
        rss[a.scale_big] = proc_rss_mb(fl.proc.pid)
        out["rss_mb"] = {str(k): v for k, v in rss.items()}
        out["rss_target_mb"] = {str(a.scale): 30}
    finally:
        fl.close()
        proxy.close()
    return out


def rest_cpu(a) -> dict:
    """The controller at rest with Docker's 110-entry catalog and nothing approved: CPU time over
    a window, as a share of one core (it used to re-read the catalog ~5 times a second)."""
    fl = Fleet(a.binary, "f3rest", ["--approval", "registry"])  # no registry.yaml: none approved
    try:
        fixture = (ROOT / "tests/fixtures/docker-catalog-v2.yaml").read_text()
        write_atomic(fl.dir / "docker-mcp.yaml", fixture)
        wait_until(lambda: any("catalog loaded" in l for l in fl.lines), 30, "fixture not loaded")
        time.sleep(a.settle)
        c0, t0 = proc_cpu(fl.proc.pid), time.time()
        time.sleep(a.rest_seconds)
        cpu, wall = proc_cpu(fl.proc.pid) - c0, time.time() - t0
        return {"catalog_entries": 110, "window_s": wall, "cpu_ms": cpu * 1e3,
                "core_percent": 100 * cpu / wall, "target_core_percent": 0.1}
    finally:
        fl.close()


def fig4_live(a, events: Events) -> dict:
    """A client session is open (GET event stream): approve a server; time to
    notifications/tools/list_changed at the client, minus the server's own start-to-initialize
    time (`docker run -i` with the same options -> initialize answered)."""
    fl = Fleet(a.binary, "f4")
    lc, own = [], []

    async def run() -> None:
        host, port, path = fl.url
        sid, c = await open_session(host, port, path)
        q: asyncio.Queue = asyncio.Queue()
        ready = asyncio.Event()
        task = asyncio.ensure_future(listen_events(host, port, path, sid, q, ready))
        await asyncio.wait_for(ready.wait(), 10)
        for i in range(a.runs):
            while not q.empty():
                q.get_nowait()
            t0 = fl.set_servers([f"live{i}"])
            while True:
                t, m = await asyncio.wait_for(q.get(), 120)
                if m.get("method") == "notifications/tools/list_changed":
                    lc.append(t - t0)
                    break
            tools = await c.call("tools/list")
            assert any(tl["name"] == "echo" for tl in tools["tools"]), tools
            fl.set_servers([])
            await asyncio.get_running_loop().run_in_executor(None, fl.wait_empty)
            # Baseline: the server's own start -> initialize answered.
            t0 = time.time()
            d = await start_stdio_direct(f"{RUN_ID}-raw4-{i}")
            own.append(time.time() - t0)
            await stop_stdio_direct(d)
        task.cancel()
        await c.close()

    try:
        asyncio.run(run())
    finally:
        fl.close()
    f, d = summary(lc), summary(own)
    over = summary([x - y for x, y in zip(sorted(lc), sorted(own))])
    return {"fleet": f, "baseline": d, "ratio": ratio(f, d), "overhead": over}


# `Authorization: Bearer` value every McpConn sends (figure 5 with --jwt).
BEARER = ""


def hs256(secret: bytes, claims: dict) -> str:
    """An HS256 JWT (RFC 7519), made with the standard library."""
    def b64(b: bytes) -> str:
        return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
    signing = f"{b64(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())}.{b64(json.dumps(claims).encode())}"
    return f"{signing}.{b64(hmac.new(secret, signing.encode(), hashlib.sha256).digest())}"


def fig5_with_jwt(a, measure) -> dict:
    """mcp-fleet with token checks on: every call carries an HS256 JWT (roles admin)."""
    global BEARER
    secret = os.urandom(32).hex().encode()
    with tempfile.NamedTemporaryFile("wb", suffix=".secret", delete=False) as f:
        f.write(secret)
    fl = Fleet(a.binary, "f5jwt", ["--jwt-secret-file", f.name, "--jwt-audience", "bench"],
               no_auth=False)
    try:
        fl.set_servers(["s"])
        fl.wait_ready(["s"], 120)
        BEARER = hs256(secret, {"sub": "bench", "roles": ["mcp.admin"], "aud": "bench",
                                "exp": int(time.time()) + 3600})
        return measure({"kind": "http", "url": fl.url})
    finally:
        BEARER = ""
        fl.close()
        os.unlink(f.name)


def gateway_cmd(kind: str, port: int, stdio: list[str]) -> tuple[list[str], str] | None:
    npm_bin = os.environ.get("BENCH_NPM_BIN", "")
    pyproxy = os.environ.get("BENCH_PYPROXY", "")
    if kind == "supergateway":
        exe = pathlib.Path(npm_bin, "supergateway")
        if not exe.exists():
            return None
        return ([str(exe), "--stdio", " ".join(stdio), "--outputTransport", "streamableHttp",
                 "--stateful", "--port", str(port), "--streamableHttpPath", "/mcp",
                 "--logLevel", "none"], "/mcp")
    if kind == "mcp-proxy (npm)":
        exe = pathlib.Path(npm_bin, "mcp-proxy")
        if not exe.exists():
            return None
        return ([str(exe), "--port", str(port), "--host", "127.0.0.1", "--server", "stream",
                 "--", *stdio], "/mcp")
    if kind == "mcp-proxy (PyPI)":
        if not pyproxy or not pathlib.Path(pyproxy).exists():
            return None
        return ([pyproxy, "--port", str(port), "--host", "127.0.0.1", "--pass-environment",
                 "--", *stdio], "/mcp")
    raise ValueError(kind)


def wait_port(port: int, timeout: float) -> None:
    def up() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return True
        except OSError:
            return False
    wait_until(up, timeout, f"nothing listens on {port}", 0.1)


def fig5_toolcall(a) -> dict:
    """tools/call echo at 1 and C connections: straight to the server's stdio, through mcp-fleet,
    and through the other gateways (each in front of the same image, via `docker run -i`)."""
    out: dict = {"concurrency": [1, a.conc], "seconds_per_window": a.call_seconds,
                 "windows": a.call_windows, "targets": {}, "skipped": {}}
    out["loadgen_ceiling_rps_16"] = asyncio.run(null_server_ceiling(min(2.0, a.call_seconds)))

    def measure(target: dict) -> dict:
        res = {}
        for conc in (1, a.conc):
            asyncio.run(load(target, conc, a.call_seconds / 4)) if target["kind"] != "stdio" else None
            lats, rps = [], []
            for _ in range(a.call_windows):
                r = asyncio.run(load(target, conc, a.call_seconds))
                lats += r["lat"]
                rps.append(r["rps"])
            res[str(conc)] = {"latency_ms": summary(lats), "rps": summary(rps, 1.0)}
        return res

    # Direct: stdio (one event loop for the process' whole life).
    async def direct() -> dict:
        t = await start_stdio_direct(f"{RUN_ID}-direct5")
        try:
            await load_stdio(t, 1, a.call_seconds / 4)
            res = {}
            for conc in (1, a.conc):
                lats, rps = [], []
                for _ in range(a.call_windows):
                    r = await load_stdio(t, conc, a.call_seconds)
                    lats += r["lat"]
                    rps.append(r["rps"])
                res[str(conc)] = {"latency_ms": summary(lats), "rps": summary(rps, 1.0)}
            return res
        finally:
            await stop_stdio_direct(t)
            t["reader"].cancel()
    log("fig5: direct (stdio)")
    out["targets"]["direct (stdio)"] = asyncio.run(direct())

    log("fig5: mcp-fleet")
    fl = Fleet(a.binary, "f5")
    try:
        fl.set_servers(["s"])
        fl.wait_ready(["s"], 120)
        out["targets"]["mcp-fleet"] = measure({"kind": "http", "url": fl.url})
    finally:
        fl.close()
    if a.jwt:
        log("fig5: mcp-fleet (JWT)")
        out["targets"]["mcp-fleet (JWT)"] = fig5_with_jwt(a, measure)

    stdio = ["docker", "run", "-i", "--rm", *HARDENING, IMAGE]
    for kind in ("supergateway", "mcp-proxy (npm)", "mcp-proxy (PyPI)"):
        if a.quick and not a.gateways_in_quick:
            out["skipped"][kind] = "skipped in --quick (start-up of npm/PyPI gateways)"
            log(f"fig5: {kind}: skipped in --quick")
            continue
        port = free_port()
        cmd = gateway_cmd(kind, port, stdio)
        if cmd is None:
            out["skipped"][kind] = "not installed (bench/run installs it)"
            log(f"fig5: {kind}: NOT INSTALLED, skipped")
            continue
        log(f"fig5: {kind}")
        # Its log to a file, as mcp-fleet's: an unread pipe stalls a gateway that
        # logs every request once it is full.
        errlog = tempfile.TemporaryFile()
        p = subprocess.Popen(cmd[0], stdout=subprocess.DEVNULL, stderr=errlog,
                             start_new_session=True)
        try:
            wait_port(port, 30)
            out["targets"][kind] = measure({"kind": "http", "url": ("127.0.0.1", port, cmd[1])})
        except Exception as e:  # report, do not hide
            try:  # its children (docker run -i) hold stderr too, and ignore SIGTERM
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            errlog.seek(0)
            err = errlog.read(2000).decode(errors="replace")
            out["skipped"][kind] = f"failed: {e!r} {err}"
            log(f"fig5: {kind} FAILED: {e!r} {err}")
        finally:
            try:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(10)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
            errlog.close()
    d = out["targets"]["direct (stdio)"]
    for k, v in out["targets"].items():
        v["added_p50_ms_1"] = v["1"]["latency_ms"]["median"] - d["1"]["latency_ms"]["median"]
        v["throughput_ratio"] = v[str(a.conc)]["rps"]["median"] / d[str(a.conc)]["rps"]["median"]
    return out


def fig6_sessions(a) -> dict:
    """N sessions (initialize + initialized, kept alive) on the gateway: RSS, and tools/list
    latency then, vs tools/list latency with one session."""
    fl = Fleet(a.binary, "f6")
    try:
        fl.set_servers(["s"])
        fl.wait_ready(["s"], 120)
        host, port, path = fl.url

        async def run() -> dict:
            async def lat(sessions: list[str], k: int) -> list[float]:
                xs = []
                for _ in range(k):
                    c = await McpConn(host, port, path, random.choice(sessions)).connect()
                    t = time.perf_counter()
                    await c.call("tools/list")
                    xs.append(time.perf_counter() - t)
                    await c.close()
                return xs
            sid, c = await open_session(host, port, path)
            await c.close()
            await lat([sid], 10)
            rss1 = proc_rss_mb(fl.proc.pid)
            base = await lat([sid], a.list_calls)
            sem = asyncio.Semaphore(50)

            async def one() -> str:
                async with sem:
                    s, cc = await open_session(host, port, path)
                    await cc.close()
                    return s
            t0 = time.perf_counter()
            sids = await asyncio.gather(*(one() for _ in range(a.sessions)))
            open_s = time.perf_counter() - t0
            await asyncio.sleep(1)
            rss_n = proc_rss_mb(fl.proc.pid)
            many = await lat(sids, a.list_calls)
            return {"sessions": a.sessions, "open_all_s": open_s, "rss_mb_1": rss1,
                    "rss_mb_n": rss_n, "rss_target_mb": 150,
                    "fleet": summary(many), "baseline": summary(base)}
        out = asyncio.run(run())
        out["ratio"] = ratio(out["fleet"], out["baseline"])
        return out
    finally:
        fl.close()


# ---------------------------------------------------------------------------------------------

def fmt(x, unit="", nd=1) -> str:
    return "-" if x is None else f"{x:.{nd}f}{unit}"


def table(res: dict) -> str:
    rows = [("figure", "mcp-fleet med / p99", "baseline med / p99", "ratio", "target")]

    def add(name, f, b, r, target="") -> None:
        rows.append((name, f"{fmt(f['median'])} / {fmt(f['p99'])}",
                     f"{fmt(b['median'])} / {fmt(b['p99'])}", fmt(r, "x", 2), target))
    F = res["figures"]
    if "1" in F:
        add("1 reconcile latency, ms (vs docker run -d)", F["1"]["fleet"], F["1"]["baseline"],
            F["1"]["ratio"], "<= 1.2x")
    if "2" in F:
        n = F["2"]["servers"]
        add(f"2 converge {n} up, ms (vs {F['2']['parallelism']}-way docker run -d)",
            F["2"]["up"]["fleet"], F["2"]["up"]["baseline"], F["2"]["up"]["ratio"], "<= 1.1x")
        add(f"2 remove {n}, ms (vs docker stop+rm)", F["2"]["down"]["fleet"], F["2"]["down"]["baseline"],
            F["2"]["down"]["ratio"])
    if "3" in F:
        f3 = F["3"]
        rows.append((f"3 engine writes in {f3['resyncs_expected']} no-op resyncs ({f3['servers']} servers)",
                     str(f3["engine_writes"]), "", "", "0"))
        r = f3["rest"]
        rows.append((f"3 controller CPU at rest, 110-entry catalog, % of a core ({r['window_s']:.0f} s)",
                     fmt(r["core_percent"], nd=3), "", "", "< 0.1"))
        c = f3["cpu_ms_per_interval"]
        rows.append(("3 controller CPU per resync interval, ms", f"{fmt(c['median'])} / {fmt(c['p99'])}",
                     "", "", ""))
        rows.append(("3 controller RSS MB at " + ", ".join(f3["rss_mb"]) + " servers"
                     + f" ({f3.get('big_ready')} of the last ready)",
                     ", ".join(fmt(v) for v in f3["rss_mb"].values()), "", "", f"< 30 at {f3['servers']}"))
    if "4" in F:
        add("4 approve -> list_changed, ms (vs own start->initialize)", F["4"]["fleet"], F["4"]["baseline"],
            F["4"]["ratio"])
        o = F["4"]["overhead"]
        rows.append(("4   difference (sorted pairs), ms", f"{fmt(o['median'])} / {fmt(o['p99'])}", "", "", ""))
    if "5" in F:
        f5 = F["5"]
        d = f5["targets"]["direct (stdio)"]
        c = str(f5["concurrency"][1])
        for k, v in f5["targets"].items():
            l1, lc, r1, rc = v["1"]["latency_ms"], v[c]["latency_ms"], v["1"]["rps"], v[c]["rps"]
            rows.append((f"5 {k}: call latency @1, ms", f"{fmt(l1['median'], nd=2)} / {fmt(l1['p99'], nd=2)}",
                         f"{fmt(d['1']['latency_ms']['median'], nd=2)} / {fmt(d['1']['latency_ms']['p99'], nd=2)}",
                         f"+{fmt(v['added_p50_ms_1'], nd=2)} ms", "+0.25 ms" if k == "mcp-fleet" else ""))
            rows.append((f"5 {k}: calls/s @1, @{c}", f"{fmt(r1['median'], nd=0)}, {fmt(rc['median'], nd=0)}",
                         f"{fmt(d['1']['rps']['median'], nd=0)}, {fmt(d[c]['rps']['median'], nd=0)}",
                         fmt(v["throughput_ratio"], "x", 2), ">= 0.92x" if k == "mcp-fleet" else ""))
            rows.append((f"5 {k}: call latency @{c}, ms", f"{fmt(lc['median'], nd=2)} / {fmt(lc['p99'], nd=2)}",
                         f"{fmt(d[c]['latency_ms']['median'], nd=2)} / {fmt(d[c]['latency_ms']['p99'], nd=2)}", "", ""))
        for k, why in f5["skipped"].items():
            rows.append((f"5 {k}", "SKIPPED: " + why[:60], "", "", ""))
        rows.append(("5 load generator ceiling @16 (null server), calls/s",
                     fmt(f5["loadgen_ceiling_rps_16"], nd=0), "", "", ""))
    if "6" in F:
        f6 = F["6"]
        add(f"6 tools/list with {f6['sessions']} sessions, ms (vs 1 session)", f6["fleet"], f6["baseline"],
            f6["ratio"])
        rows.append((f"6 gateway RSS MB with 1 / {f6['sessions']} sessions",
                     f"{fmt(f6['rss_mb_1'])} / {fmt(f6['rss_mb_n'])}", "", "", "< 150"))
    w = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(c.ljust(w[i]) for i, c in enumerate(r)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * x for x in w))
    return "\n".join(lines)


def machine() -> dict:
    cpu = ""
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = pathlib.Path("/proc/meminfo").read_text().split("\n")[0].split()[1]
    return {"cpu": cpu, "cores": os.cpu_count(), "mem_gb": round(int(mem) / 2**20, 1),
            "kernel": platform.release(), "python": platform.python_version(),
            "docker": docker("version", "--format", "{{.Server.Version}}", check=False).strip(),
            "loadavg_start": os.getloadavg()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="CI smoke: tiny sizes, seconds, no assertions")
    ap.add_argument("--only", default="1,2,3,4,5,6")
    ap.add_argument("--binary", default=str(ROOT / "target/release/mcp-fleet"))
    ap.add_argument("--out", help="default: bench/results/latest.json (quick.json with --quick)")
    ap.add_argument("--gateways-in-quick", action="store_true")
    ap.add_argument("--jwt", action="store_true",
                    help="figure 5: also measure mcp-fleet with every call carrying a JWT")
    ap.add_argument("--rest-seconds", type=float, help="figure 3: CPU-at-rest window (default 30, quick 2)")
    a = ap.parse_args()
    q = a.quick
    a.out = a.out or str(ROOT / "bench/results" / ("quick.json" if q else "latest.json"))
    a.runs = 2 if q else 10             # figures 1 and 4
    a.scale = 3 if q else 50            # figures 2 and 3
    a.scale_big = 4 if q else 200       # figure 3 RSS
    a.scale_runs = 1 if q else 3        # figure 2
    a.concurrency = 8                   # mcp-fleet's default --concurrency
    a.resync_windows = 2 if q else 10   # figure 3
    a.conc = 16                         # figure 5
    a.call_seconds = 0.3 if q else 3.0
    a.call_windows = 1 if q else 3
    a.sessions = 20 if q else 1000      # figure 6
    a.list_calls = 10 if q else 200
    a.big_wait = 30 if q else 90        # figure 3: cap on waiting for the 200
    a.settle = 0.5 if q else 3.0        # figure 3: pause before RSS/idle measurements
    a.rest_seconds = a.rest_seconds or (2 if q else 30)  # figure 3: CPU at rest window
    only = set(a.only.split(","))
    t_all = time.time()
    res = {"quick": q, "machine": machine(), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "command": " ".join(["bench/run", *sys.argv[1:]]), "figures": {}}
    events = Events()
    try:
        for k, fn in (("1", lambda: fig1_reconcile(a, events)), ("2", lambda: fig2_converge(a, events)),
                      ("3", lambda: fig3_steady(a)), ("4", lambda: fig4_live(a, events)),
                      ("5", lambda: fig5_toolcall(a)), ("6", lambda: fig6_sessions(a))):
            if k in only:
                t = time.time()
                log(f"figure {k} ...")
                res["figures"][k] = fn()
                res["figures"][k]["elapsed_s"] = time.time() - t
                log(f"figure {k} done in {time.time() - t:.1f}s")
    finally:
        events.close()
        left = docker("ps", "-aq", "--filter", f"name={RUN_ID}").split()
        if left:
            docker("rm", "-f", *left, check=False)
    res["elapsed_s"] = time.time() - t_all
    res["machine"]["loadavg_end"] = os.getloadavg()
    out = pathlib.Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(table(res))
    print(f"\n{'QUICK SMOKE: numbers are meaningless. ' if q else ''}"
          f"elapsed {res['elapsed_s']:.0f}s; wrote {out}")


if __name__ == "__main__":
    main()
