#!/usr/bin/env python3
"""Reconcile latency: catalog write -> container started, next to a plain
`docker run -d` of the same image with the same options, on the same engine in
the same run. Both are timed to the engine's own `start` event, so the two
figures share one clock and one method.

Usage: bench/reconcile_latency.py [--runs N] [--binary target/release/mcp-fleet]
Needs DOCKER_HOST (scripts/engine.sh up) and the test images (docker/test-images/build.sh).
Prints a table and writes bench/results/reconcile_latency.json.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import queue
import statistics
import subprocess
import tempfile
import threading
import time

IMAGE = "mcp-fleet-test/testserver:latest"
ROOT = pathlib.Path(__file__).resolve().parent.parent


class Events:
    """Streams the engine's container events into a queue."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            ["docker", "events", "--filter", "type=container", "--format", "{{json .}}"],
            stdout=subprocess.PIPE, text=True,
        )
        self.q: queue.Queue = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.proc.stdout:
            self.q.put(json.loads(line))

    def wait(self, action: str, name: str, timeout: float = 60.0) -> float:
        """Returns the event's engine timestamp (seconds since the epoch)."""
        deadline = time.time() + timeout
        while True:
            left = deadline - time.time()
            if left <= 0:
                raise TimeoutError(f"no {action} event for {name}")
            ev = self.q.get(timeout=left)
            attrs = ev.get("Actor", {}).get("Attributes", {})
            if ev.get("Action") == action and attrs.get("name") == name:
                return ev["timeNano"] / 1e9

    def close(self) -> None:
        self.proc.terminate()


def catalog(servers: list[str]) -> str:
    entries = "".join(
        f"  {s}:\n    image: {IMAGE}\n    disableNetwork: true\n" for s in servers
    )
    return f"name: docker-mcp\nregistry:\n{entries}" if servers else "name: docker-mcp\nregistry: {}\n"


def write_atomic(path: pathlib.Path, text: str) -> None:
    tmp = path.with_name("." + path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def summary(xs: list[float]) -> dict:
    xs = sorted(xs)
    p99 = xs[min(len(xs) - 1, round(0.99 * (len(xs) - 1)))]
    return {"median_ms": statistics.median(xs) * 1e3, "p99_ms": p99 * 1e3, "n": len(xs)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--binary", default=str(ROOT / "target/release/mcp-fleet"))
    args = ap.parse_args()

    fleet = f"bench-{os.getpid()}"
    events = Events()
    time.sleep(0.5)  # let `docker events` subscribe before the first action
    tmp = tempfile.TemporaryDirectory()
    cfg = pathlib.Path(tmp.name)
    write_atomic(cfg / "docker-mcp.yaml", catalog([]))
    ctl = subprocess.Popen(
        [args.binary, "run", "--config-dir", str(cfg), "--fleet", fleet, "--stop-timeout", "1"],
        stderr=subprocess.DEVNULL,
    )
    fleet_ms, docker_ms = [], []
    try:
        # Wait until the controller has read the (empty) catalog.
        status = cfg / "mcp-status.json"
        deadline = time.time() + 30
        while not status.exists():
            if time.time() > deadline:
                raise TimeoutError("controller did not start")
            time.sleep(0.05)
        name = f"mcp-fleet-{fleet}-s"
        for i in range(args.runs):
            # Interleave the two so that machine noise hits both alike.
            t0 = time.time()
            write_atomic(cfg / "docker-mcp.yaml", catalog(["s"]))
            fleet_ms.append(events.wait("start", name) - t0)
            write_atomic(cfg / "docker-mcp.yaml", catalog([]))
            events.wait("destroy", name)

            raw = f"bench-raw-{os.getpid()}-{i}"
            t0 = time.time()
            subprocess.run(
                ["docker", "run", "-d", "-i", "--init", "--security-opt", "no-new-privileges",
                 "--cap-drop", "ALL", "--memory", "512m", "--cpus", "1", "--pids-limit", "256",
                 "--read-only", "--tmpfs", "/tmp:rw,nosuid,size=64m", "--network", "none",
                 "--name", raw, IMAGE],
                check=True, stdout=subprocess.DEVNULL,
            )
            docker_ms.append(events.wait("start", raw) - t0)
            subprocess.run(["docker", "rm", "-f", raw], check=True, stdout=subprocess.DEVNULL)
    finally:
        ctl.terminate()
        ctl.wait()
        events.close()
        subprocess.run(
            f"docker rm -f $(docker ps -aq --filter label=io.mcp-fleet.fleet={fleet}) 2>/dev/null",
            shell=True,
        )

    f, d = summary(fleet_ms), summary(docker_ms)
    result = {
        "figure": "reconcile latency (catalog write -> container start event)",
        "mcp_fleet": f,
        "docker_run": d,
        "ratio_median": f["median_ms"] / d["median_ms"],
    }
    print(f"{'':24}{'median ms':>12}{'p99 ms':>10}{'runs':>6}")
    print(f"{'mcp-fleet (catalog)':24}{f['median_ms']:12.1f}{f['p99_ms']:10.1f}{f['n']:6}")
    print(f"{'docker run -d':24}{d['median_ms']:12.1f}{d['p99_ms']:10.1f}{d['n']:6}")
    print(f"ratio (median): {result['ratio_median']:.2f}x")
    out = ROOT / "bench/results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "reconcile_latency.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
