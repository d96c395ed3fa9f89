"""The gateway's own share of a tool call, read off its system calls (figure 5's
one-connection load). Where figure 5 and bench/ab.py see the whole round trip (client,
kernel, engine, server: a window moves by 0.2 ms on a shared 2-core machine), this sees
only the time mcp-fleet holds a call, which moves by a few microseconds:

  request   from reading the client's POST to writing the call to the server's stdin
  answer    from reading the server's answer to writing the response to the client

It also says how often each interval was preempted (the gateway's thread taken off
its CPU while runnable) and the p50 of the intervals with and without that.

Needs `perf` (syscall and scheduler tracepoints, low overhead; not installed by
bench/run).
  python3 bench/critical_path.py BINARY [seconds]     (env passes through, e.g.
                                                       TOKIO_WORKER_THREADS=1)
"""
import asyncio
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

# x86-64 system calls: read, recvfrom; write, writev, sendto.
READS, WRITES = (0, 45), (1, 20, 44)
LINE = re.compile(r"\s*\S+\s+(\d+)\s+\[\d+\]\s+([\d.]+):\s+raw_syscalls:sys_(enter|exit): NR (\d+) (.*)")
PREEMPTED = re.compile(r"\s*\S+\s+\d+\s+\[\d+\]\s+([\d.]+):\s+sched:sched_switch: .* prev_state=R")


def tcp_fds(pid: int) -> set[int]:
    """The file descriptors of `pid` that are TCP sockets (the clients'; the
    engine's are unix sockets)."""
    inodes = set()
    for table in ("tcp", "tcp6"):
        with open(f"/proc/{pid}/net/{table}") as f:
            inodes |= {line.split()[9] for line in list(f)[1:]}
    fds = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        link = os.readlink(f"/proc/{pid}/fd/{fd}")
        if link.startswith("socket:[") and link[8:-1] in inodes:
            fds.add(int(fd))
    return fds


def record(binary: str, seconds: float, out: str) -> tuple[int, set[int]]:
    """Runs the load with perf recording the fleet's syscalls; returns the calls
    made and the fleet's TCP sockets."""
    fl = h.Fleet(binary, "cp")
    try:
        fl.set_servers(["s"])
        fl.wait_ready(["s"], 120)
        target = {"kind": "http", "url": fl.url}
        asyncio.run(h.load(target, 1, 1))
        perf = subprocess.Popen(["perf", "record", "-q", "-e",
                                 "raw_syscalls:sys_enter,raw_syscalls:sys_exit,sched:sched_switch",
                                 "-p", str(fl.proc.pid), "-o", out], stderr=subprocess.DEVNULL)
        time.sleep(1)  # perf attaches
        # The load's connection is open only while it runs: look at it then.
        tcp: set[int] = set()
        look = threading.Timer(seconds / 2, lambda: tcp.update(tcp_fds(fl.proc.pid)))
        look.start()
        calls = len(asyncio.run(h.load(target, 1, seconds))["lat"])
        look.join()
        perf.send_signal(2)
        perf.wait(30)
        return calls, tcp
    finally:
        fl.close()


def events(data: str):
    """(kind, nr, fd, time µs, result) per syscall event, in order; an
    enter's result is its third argument (a write's length)."""
    text = subprocess.run(["perf", "script", "-i", data], capture_output=True, text=True).stdout
    fds = {}
    for line in text.splitlines():
        m = LINE.match(line)
        if not m:
            p = PREEMPTED.match(line)
            if p:
                yield "preempted", None, None, float(p.group(1)) * 1e6, None
            continue
        tid, t, kind, nr, rest = m.groups()
        nr, t = int(nr), float(t) * 1e6
        if kind == "enter":
            args = rest.strip("( )").split(",")
            fds[tid] = int(args[0], 16)
            yield "enter", nr, fds[tid], t, int(args[2], 16) if len(args) > 2 else None
        else:
            yield "exit", nr, fds.get(tid), t, rest.split("=")[-1].strip()


def intervals(evs: list, tcp: set[int]) -> tuple[list, list]:
    writes = [e for e in evs if e[0] == "enter" and e[1] in WRITES]
    client = statistics.mode([e[2] for e in writes if e[2] in tcp])
    # Not stdio, a client, or an eventfd (tokio's wake-ups write 8 bytes).
    server = statistics.mode([e[2] for e in writes if e[2] > 2 and e[2] not in tcp and e[4] != 8])
    # (µs, whether the thread was preempted inside) per interval
    request, answer, state, t0, hit = [], [], None, 0.0, False
    for kind, nr, fd, t, ret in evs:
        got = kind == "exit" and nr in READS and ret and ret.isdigit() and int(ret) > 0
        if kind == "preempted":
            hit = True
        elif got and fd == client:
            state, t0, hit = "request", t, False
        elif kind == "enter" and nr in WRITES and fd == server and state == "request":
            request.append((t - t0, hit))
            state = "sent"
        elif got and fd == server and state == "sent":
            state, t0, hit = "answer", t, False
        elif kind == "enter" and nr in WRITES and fd == client and state == "answer":
            answer.append((t - t0, hit))
            state = None
    return request, answer


def p50(xs: list) -> str:
    return f"{statistics.median(xs):5.0f} µs" if xs else "    - µs"


def main() -> None:
    binary = sys.argv[1]
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 3
    with tempfile.TemporaryDirectory() as d:
        data = os.path.join(d, "perf.data")
        calls, tcp = record(binary, seconds, data)
        request, answer = intervals(list(events(data)), tcp)
    for name, xs in (("request", request), ("answer", answer)):
        all_ = sorted(d for d, _ in xs)
        hit = [d for d, h in xs if h]
        clean = [d for d, h in xs if not h]
        print(f"{name:8s} p50 {statistics.median(all_):6.1f} µs  p90 {all_[int(len(all_) * 0.9)]:6.1f} µs"
              f"  preempted in {100 * len(hit) / len(xs):3.0f}% (p50 {p50(hit)}; not preempted {p50(clean)})")
    print(f"{len(request)} of {calls} calls matched; gateway-held p50 "
          f"{statistics.median(d for d, _ in request) + statistics.median(d for d, _ in answer):.0f} µs")


if __name__ == "__main__":
    main()
