"""A/B of mcp-fleet's added tool-call latency under the same load (figure 5's
calls, one connection): two fleets (binary A with env ENVA, binary B with env
ENVB, "K=V,K=V"), measured in alternating windows, each round against a fresh
direct (stdio) window. Prints added p50, gateway CPU (user/sys) and context
switches per call.
  python3 bench/ab.py BIN_A BIN_B [seconds_per_window] [rounds]   (C16=1: also calls/s @16)
"""
import asyncio, os, sys, statistics
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h
binA, binB = sys.argv[1], sys.argv[2]
secs = float(sys.argv[3]) if len(sys.argv) > 3 else 6
rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 4
envA = h.env_pairs(os.environ.get("ENVA", ""))
envB = h.env_pairs(os.environ.get("ENVB", ""))
def ctx(pid):
    n = 0
    for t in os.listdir(f"/proc/{pid}/task"):
        for l in open(f"/proc/{pid}/task/{t}/status"):
            if "ctxt_switches" in l: n += int(l.split()[1])
    return n
US = [0, 0]
def cpu(pid):
    x = open(f"/proc/{pid}/stat").read().split(")")[1].split()
    US[0], US[1] = int(x[11]), int(x[12])
    return (int(x[11]) + int(x[12])) / os.sysconf("SC_CLK_TCK")
async def direct():
    t = await h.start_stdio_direct(f"{h.RUN_ID}-d")
    try:
        await h.load_stdio(t, 1, 1)
        return await h.load_stdio(t, 1, secs)
    finally:
        await h.stop_stdio_direct(t); t["reader"].cancel()
def measure(fl, conns=1):
    c0, x0 = cpu(fl.proc.pid), ctx(fl.proc.pid); u0 = list(US)
    r = asyncio.run(h.load({"kind": "http", "url": fl.url}, conns, secs))
    n = len(r["lat"])
    cpu(fl.proc.pid); tick = 1e6 / os.sysconf("SC_CLK_TCK")
    if conns == 1: print(f"   user {tick*(US[0]-u0[0])/n:.0f}us sys {tick*(US[1]-u0[1])/n:.0f}us per call", end=" | ")
    return statistics.median(r["lat"]) * 1e3, 1e6 * (cpu(fl.proc.pid) - c0) / n, (ctx(fl.proc.pid) - x0) / n, r["rps"]
def fleet(b, name, env):
    old = dict(os.environ); os.environ.update(env)
    try: return h.Fleet(b, name)
    finally: os.environ.clear(); os.environ.update(old)
A = fleet(binA, "fa", envA)
B = fleet(binB, "fb", envB)
res = {"A": [], "B": [], "D": []}
try:
    for fl in (A, B):
        fl.set_servers(["s"])
    for fl in (A, B):
        fl.wait_ready(["s"], 180)
        asyncio.run(h.load({"kind": "http", "url": fl.url}, 1, 1))
    for rnd in range(rounds):
        d = statistics.median(asyncio.run(direct())["lat"]) * 1e3
        res["D"].append(d)
        order = (A, B) if rnd % 2 == 0 else (B, A)
        for fl in order:
            k = "A" if fl is A else "B"
            p50, cpc, xpc, rps = measure(fl)
            res[k].append(p50 - d)
            print(f"round {rnd} {k}: direct {d:.3f} p50 {p50:.3f} added {p50-d:+.3f} ms cpu/call {cpc:.0f}us ctxsw/call {xpc:.1f} load {os.getloadavg()[0]:.1f}", flush=True)
    if os.environ.get("C16"):
        for fl, k in ((A, "A"), (B, "B")):
            print(k, "@16 rps", measure(fl, 16)[3])
    for k in ("A", "B"):
        print(f"{k}: added mean {statistics.mean(res[k]):+.3f} median {statistics.median(res[k]):+.3f} ms over {rounds} rounds")
finally:
    A.close(); B.close()
