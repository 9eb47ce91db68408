"""Cold start: `docker run` to the first successful invocation, per variant.

Usage: coldstart.py RUNS NAME -- DOCKER_RUN_ARGS...   (one variant per call)
With NAME "raw", times a plain `docker run` of the image to process exit.
Prints one line: name, median, min and max in ms, and the median of the
runtime's own Init Duration from its REPORT line.
Only loopback is contacted.
"""
import http.client
import re
import statistics
import subprocess
import sys
import time

INVOKE = "/2015-03-31/functions/function/invocations"


def run_once(args):
    t0 = time.perf_counter()
    cid = subprocess.run(["docker", "run", "-d", "-p", "127.0.0.1::8080", *args],
                         check=True, capture_output=True, text=True).stdout.strip()
    try:
        port = subprocess.run(["docker", "port", cid, "8080/tcp"], check=True,
                              capture_output=True, text=True).stdout.split("\n")[0].rsplit(":", 1)[1]
        deadline = t0 + 60
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", int(port), timeout=30)
                conn.request("POST", INVOKE, body=b'{"n": 1}', headers={"Content-Type": "application/json"})
                resp = conn.getresponse()
                resp.read()
                conn.close()
                if resp.status == 200:
                    break
            except (ConnectionError, http.client.HTTPException, OSError):
                pass
            if time.perf_counter() > deadline:
                raise SystemExit(f"no response from {args} within 60 s")
            time.sleep(0.002)
        elapsed = (time.perf_counter() - t0) * 1000
        logs = subprocess.run(["docker", "logs", cid], capture_output=True, text=True)
        m = re.search(r"Init Duration: ([0-9.]+) ms", logs.stdout + logs.stderr)
        return elapsed, float(m.group(1)) if m else None
    finally:
        subprocess.run(["docker", "rm", "-f", cid], capture_output=True)


def raw_once(args):
    """A raw `docker run` of the image to process exit, without --rm (removal
    is not part of a start), removed afterwards."""
    name = f"esb-bench-raw-{time.monotonic_ns()}"
    t0 = time.perf_counter()
    subprocess.run(["docker", "run", "--name", name, *args], check=True, capture_output=True)
    elapsed = (time.perf_counter() - t0) * 1000
    subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    return elapsed, None


def main():
    runs, name = int(sys.argv[1]), sys.argv[2]
    args = sys.argv[sys.argv.index("--") + 1:]
    once = raw_once if name == "raw" else run_once
    once(args)  # warm the page cache and Docker's image metadata
    results = [once(args) for _ in range(runs)]
    times = [r[0] for r in results]
    inits = [r[1] for r in results if r[1] is not None]
    init = f"{statistics.median(inits):.1f} ms" if inits else "not reported"
    print(f"{name:<14} {statistics.median(times):>10.1f} ms  "
          f"(min {min(times):.1f}, max {max(times):.1f}; runtime init {init})")


if __name__ == "__main__":
    main()
