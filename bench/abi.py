"""Interleaved A/B of one tool call's round trip through two fleets (binary A with
env ENVA, binary B with env ENVB, "K=V,K=V"): calls alternate A, B, A, B on one
connection each, so both see the same moment of a noisy machine. Prints the p50
of each and of their per-pair difference.
  python3 bench/abi.py BIN_A BIN_B [seconds] [rounds]
"""
import asyncio
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402


async def run(urls, seconds: float) -> list[tuple[float, float]]:
    conns = []
    for host, port, path in urls:
        _, c = await h.open_session(host, port, path)
        conns.append(c)
    pairs, stop = [], time.perf_counter() + seconds
    args = {"name": "echo", "arguments": {"text": "x"}}
    while time.perf_counter() < stop:
        lat = []
        for c in conns if len(pairs) % 2 else conns[::-1]:
            t = time.perf_counter()
            await c.call("tools/call", args)
            lat.append(time.perf_counter() - t)
        pairs.append(tuple(lat) if len(pairs) % 2 else tuple(lat[::-1]))
    for c in conns:
        await c.close()
    return pairs


def main() -> None:
    bins = sys.argv[1:3]
    seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 5
    rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 4
    fleets = []
    try:
        for name, b, env in zip("ab", bins, (os.environ.get("ENVA", ""), os.environ.get("ENVB", ""))):
            saved = dict(os.environ)
            os.environ.update(h.env_pairs(env))
            fleets.append(h.Fleet(b, f"abi{name}"))
            os.environ.clear()
            os.environ.update(saved)
        for f in fleets:
            f.set_servers(["s"])
        for f in fleets:
            f.wait_ready(["s"], 120)
        urls = [f.url for f in fleets]
        asyncio.run(run(urls, 1))
        diffs = []
        for r in range(rounds):
            pairs = asyncio.run(run(urls, seconds))
            a = statistics.median(p[0] for p in pairs) * 1e3
            b = statistics.median(p[1] for p in pairs) * 1e3
            d = statistics.median(p[1] - p[0] for p in pairs) * 1e3
            diffs.append(b - a)
            print(f"round {r}: A {a:.3f} B {b:.3f} ms; B-A {b - a:+.3f} (pairwise median {d:+.3f}) "
                  f"n={len(pairs)} load {os.getloadavg()[0]:.1f}", flush=True)
        print(f"B-A median over rounds {statistics.median(diffs):+.3f} ms")
    finally:
        for f in fleets:
            f.close()


main()
