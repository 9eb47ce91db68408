"""Soak load on a running box of examples/sam-app (run by bench/soak.sh).

Usage: soak.py INFO_JSON OUT_DIR

INFO_JSON is `esb info --json` of the box. The load alternates busy phases
(mixed requests at a bounded rate from a bounded thread pool) with quiet
phases that last until every worker of the load's functions is gone (scale
to zero), so each busy phase starts cold. Every SOAK_SAMPLE_SECONDS a
sampler records the RSS of the gateway, agent and storage processes (from
/proc of the host, by the container's PID) and the number of worker
containers, into OUT_DIR/rss.csv. Prints one figure per line.

Environment: SOAK_SECONDS (600), SOAK_BUSY_SECONDS (40), SOAK_RATE (requests
started per second in busy phases, 25), SOAK_CONCURRENCY (threads, 4),
SOAK_SAMPLE_SECONDS (15), SOAK_IDLE_SECONDS (the box's idle timeout, 10),
SOAK_PROJECT (the Compose project and the workers' esb.stack label).
Only loopback is contacted: boto3 gets the box's endpoint explicitly.
"""
import collections
import csv
import itertools
import json
import os
import random
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

INFO = json.load(open(sys.argv[1]))
OUT = sys.argv[2]
GATEWAY = INFO["endpoints"]["gateway"]
CA = INFO["ca_cert"]
CREDS = INFO["credentials"]
REGION = INFO.get("region") or "us-east-1"
if not GATEWAY.startswith("https://127.0.0.1:"):
    raise SystemExit(f"soak: the gateway is not on loopback: {GATEWAY}")

# boto3 must never reach AWS: every endpoint and credential is the box's, and
# no shared config or instance metadata is read.
os.environ.update({
    "AWS_ENDPOINT_URL": GATEWAY,
    "AWS_ENDPOINT_URL_LAMBDA": GATEWAY,
    "AWS_ACCESS_KEY_ID": CREDS["access_key_id"],
    "AWS_SECRET_ACCESS_KEY": CREDS["secret_access_key"],
    "AWS_REGION": REGION,
    "AWS_DEFAULT_REGION": REGION,
    "AWS_CA_BUNDLE": CA,
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
})
os.environ.pop("AWS_PROFILE", None)
os.environ.pop("AWS_SESSION_TOKEN", None)

import boto3  # noqa: E402  (after the environment above)
import requests  # noqa: E402
from botocore.config import Config  # noqa: E402


def env(name, default):
    return type(default)(os.environ.get(name) or default)


SECONDS = env("SOAK_SECONDS", 600.0)
BUSY = env("SOAK_BUSY_SECONDS", 40.0)
RATE = env("SOAK_RATE", 25.0)
THREADS = env("SOAK_CONCURRENCY", 4)
SAMPLE = env("SOAK_SAMPLE_SECONDS", 15.0)
IDLE = env("SOAK_IDLE_SECONDS", 10.0)
PROJECT = os.environ["SOAK_PROJECT"]
TIMEOUT = (5, 30)  # connect, read (seconds): every request is bounded
# The functions the load calls; TickFunction runs on its schedule only.
LOAD_FUNCTIONS = {"HelloFunction", "GreeterFunction", "FilesFunction", "CallerFunction", "NotesFunction"}


def docker(*args):
    return subprocess.run(["docker", *args], check=True, capture_output=True, text=True, timeout=30).stdout


def service_pid(service):
    ids = docker("ps", "-q", "--filter", f"label=com.docker.compose.project={PROJECT}",
                 "--filter", f"label=com.docker.compose.service={service}").split()
    if len(ids) != 1:
        return None
    return int(docker("inspect", "-f", "{{.State.Pid}}", ids[0]).strip())


def rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, TypeError):
        pass
    return None


def workers(functions=None):
    """Worker containers of this box (optionally only of some functions)."""
    rows = docker("ps", "-a", "--filter", f"label=esb.stack={PROJECT}",
                  "--format", '{{.ID}} {{.Label "esb.function"}}').split("\n")
    return [r for r in rows if r and (functions is None or r.split(" ", 1)[1] in functions)]


# --- figures -------------------------------------------------------------

lock = threading.Lock()
latencies = collections.defaultdict(list)  # kind -> [ms]
errors = collections.Counter()  # "kind: reason" -> n
error_examples = {}


def record(kind, t0, error=None):
    ms = (time.perf_counter() - t0) * 1000
    with lock:
        latencies[kind].append(ms)
        if error:
            key = f"{kind}: {error}"
            errors[key] += 1


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


# --- clients -------------------------------------------------------------

local = threading.local()
seq = itertools.count()


def new_http():
    """A requests session that trusts the box's CA only (no REQUESTS_CA_BUNDLE, no proxies)."""
    s = requests.Session()
    s.trust_env = False
    s.verify = CA
    return s


def session():
    if not hasattr(local, "http"):
        local.http = new_http()
        local.http.headers["Authorization"] = f"Bearer {TOKEN}"
        local.lam = boto3.session.Session().client(
            "lambda", endpoint_url=GATEWAY, region_name=REGION, verify=CA,
            config=Config(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=30,
                          max_pool_connections=2))
    return local


def login():
    r = MAIN.post(f"{GATEWAY}/user/auth/v1", timeout=TIMEOUT,
                      headers={"x-api-key": CREDS["api_key"]},
                      json={"AuthParameters": {"USERNAME": CREDS["user"], "PASSWORD": CREDS["password"]}})
    r.raise_for_status()
    return r.json()["AuthenticationResult"]["IdToken"]


MAIN = new_http()
TOKEN = login()


def passes(check, *args):
    try:
        return check(*args)
    except (ValueError, KeyError, TypeError):  # not JSON, or not the JSON expected
        return False


def http(kind, method, path, expect, check=None, **kw):
    """One HTTPS request; an unexpected status, body or exception is an error."""
    t0 = time.perf_counter()
    try:
        r = session().http.request(method, GATEWAY + path, timeout=TIMEOUT, **kw)
    except requests.RequestException as e:
        record(kind, t0, type(e).__name__)
        error_examples.setdefault(f"{kind}: {type(e).__name__}", str(e)[:300])
        return None
    if r.status_code != expect:
        record(kind, t0, f"HTTP {r.status_code}")
        error_examples.setdefault(f"{kind}: HTTP {r.status_code}", r.text[:300])
        return None
    if check is not None and not passes(check, r):
        record(kind, t0, "unexpected body")
        error_examples.setdefault(f"{kind}: unexpected body", r.text[:300])
        return None
    record(kind, t0)
    return r


def hello(kind="hello"):
    name = f"soak-{next(seq)}"
    http(kind, "GET", f"/hello/{name}", 200, lambda r: r.json()["message"] == f"Hello, {name}!")


def greet():
    name = f"soak-{next(seq)}"
    http("greet", "GET", f"/greet/{name}", 200, lambda r: r.json()["message"] == f"Hello, {name}!")


def files():
    key, body = f"soak/{next(seq)}.txt", f"soak object {random.random()}"
    if http("files PUT", "PUT", f"/files/{key}", 200, data=body) is None:
        return
    if http("files GET", "GET", f"/files/{key}", 200, lambda r: r.text == body) is None:
        return
    http("files DELETE", "DELETE", f"/files/{key}", 204)


def call():
    name = f"soak-{next(seq)}"
    http("call (Caller->Hello)", "GET", f"/call/{name}", 200,
         lambda r: r.json()["reply"]["message"] == f"Hello, {name}!")


def notes_post():
    text = f"soak note {next(seq)}"
    http("notes POST", "POST", "/notes", 201, lambda r: r.json()["text"] == text, json={"text": text})


def notes_get():
    http("notes GET", "GET", "/notes", 200, lambda r: isinstance(r.json(), list))


def invoke(kind, function, invocation_type, check):
    t0 = time.perf_counter()
    try:
        out = session().lam.invoke(FunctionName=function, InvocationType=invocation_type,
                                   Payload=json.dumps({"name": kind}).encode())
        payload = out["Payload"].read()
    except Exception as e:  # botocore's errors have no common base besides this
        record(kind, t0, type(e).__name__)
        error_examples.setdefault(f"{kind}: {type(e).__name__}", str(e)[:300])
        return
    if out.get("FunctionError") or not passes(check, out["StatusCode"], payload):
        record(kind, t0, f"status {out['StatusCode']} {out.get('FunctionError') or 'unexpected payload'}")
        error_examples.setdefault(kind, payload[:300])
        return
    record(kind, t0)


def invoke_hello():
    invoke("invoke Hello (RequestResponse)", "HelloFunction", "RequestResponse",
           lambda s, p: s == 200 and json.loads(json.loads(p)["body"])["function"] == "HelloFunction")


def invoke_greeter():
    invoke("invoke Greeter (RequestResponse)", "GreeterFunction", "RequestResponse",
           lambda s, p: s == 200 and json.loads(p)["message"].startswith("Hello, "))


def invoke_event():
    invoke("invoke Hello (Event)", "HelloFunction", "Event", lambda s, p: s == 202)


MIX = [(hello, 4), (greet, 2), (files, 2), (call, 1), (notes_post, 1), (notes_get, 1),
       (invoke_hello, 2), (invoke_greeter, 1), (invoke_event, 1)]
ACTIONS = [a for a, _ in MIX]
WEIGHTS = [w for _, w in MIX]


# --- background: samples and Docker events ---------------------------------

start = time.monotonic()
stop = threading.Event()
samples = []  # (t, gateway kB, agent kB, storage kB, workers)
pids = {}
restarts = collections.Counter()


def sampler():
    while True:
        row = [round(time.monotonic() - start, 1)]
        for service in ("gateway", "agent", "s3-storage"):
            pid = service_pid(service)
            if service in pids and pid != pids[service]:
                restarts[service] += 1
            pids[service] = pid
            row.append(rss_kb(pid))
        row.append(len(workers()))
        samples.append(row)
        if stop.wait(SAMPLE):
            return


events = collections.Counter()


def watch_events():
    """Counts the workers' container events; logs them (time, event, container, function) to OUT/events.log."""
    proc = subprocess.Popen(["docker", "events", "--filter", "type=container",
                             "--filter", f"label=esb.stack={PROJECT}", "--format",
                             '{{.TimeNano}} {{.Status}} {{.ID}} {{index .Actor.Attributes "esb.function"}}'],
                            stdout=subprocess.PIPE, text=True)
    threading.Thread(target=lambda: (stop.wait(), proc.terminate()), daemon=True).start()
    with open(os.path.join(OUT, "events.log"), "w") as log:
        for line in proc.stdout:
            log.write(line)
            events[line.split(" ")[1].split(":")[0]] += 1
    proc.wait()


def metrics():
    text = MAIN.get(f"{GATEWAY}/metrics", timeout=TIMEOUT).text
    out = collections.Counter()
    for m in re.finditer(r'^(esb_cold_starts_total|esb_invocations_total)\{([^}]*)\} (\S+)$', text, re.M):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
        key = m.group(1) if m.group(1) == "esb_cold_starts_total" else f"outcome {labels.get('outcome')}"
        out[key] += float(m.group(3))
    return out


def admin(path):
    r = MAIN.get(f"{GATEWAY}/admin/v1/{path}", timeout=TIMEOUT,
                     headers={"Authorization": f"Bearer {TOKEN}"})
    r.raise_for_status()
    return r.json()


# --- the soak ------------------------------------------------------------

def run(action, slots):
    try:
        action()
    except Exception as e:  # a bug of the load itself: counted, never silent
        errors[f"{action.__name__}: load error {type(e).__name__}: {e}"] += 1
    finally:
        slots.release()


def busy_phase(until):
    """Start requests at RATE per second until `until`, at most THREADS at once."""
    slots = threading.BoundedSemaphore(THREADS * 2)
    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        n = 0
        t0 = time.monotonic()
        while time.monotonic() < until:
            n += 1
            delay = t0 + n / RATE - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            if not slots.acquire(timeout=max(0.0, until - time.monotonic())):
                break
            action = random.choices(ACTIONS, WEIGHTS)[0]
            pool.submit(run, action, slots)


def quiet_phase(limit, functions=LOAD_FUNCTIONS):
    """Wait until no worker of `functions` (None: any) is left; return the wait or None."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        if not workers(functions):
            return time.monotonic() - t0
        time.sleep(0.5)
    return None


threading.Thread(target=sampler, daemon=True).start()
watcher = threading.Thread(target=watch_events, daemon=True)
watcher.start()
time.sleep(1)  # `docker events` subscribed before the first worker starts
before = metrics()
cycles, zero_waits, not_zero = 0, [], 0
end = start + SECONDS
while True:
    now = time.monotonic()
    if now >= end:
        break
    cycles += 1
    hello("hello, first after quiet (cold)")
    busy_phase(min(end, time.monotonic() + BUSY))
    if time.monotonic() >= end:
        break
    waited = quiet_phase(IDLE + 30)
    if waited is None:
        not_zero += 1
    else:
        zero_waits.append(waited)
load_end = time.monotonic()
# After the load every worker (Tick's too) must go, in Docker and in the gateway's pools.
final_zero = quiet_phase(IDLE + 60, functions=None)
gateway_workers = len(admin("workers")["workers"])

# Asynchronous invocations: let the queue drain (bounded).
for _ in range(60):
    pending = sum(len(admin(f"invocations?status={s}&limit=100")["invocations"]) for s in ("queued", "running"))
    if not pending:
        break
    time.sleep(1)
failed = admin("invocations?status=failed&limit=100")["invocations"]
after = metrics()
stop.set()
time.sleep(0.2)
watcher.join(timeout=5)

with open(os.path.join(OUT, "rss.csv"), "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["seconds", "gateway_rss_kb", "agent_rss_kb", "storage_rss_kb", "worker_containers"])
    w.writerows(samples)


def fig(name, value):
    print(f"{name:<46} {value}")


total = sum(len(v) for v in latencies.values())
print()
fig("load (s), busy phases / rate / threads", f"{load_end - start:.0f} s, {BUSY:.0f} s at {RATE:g}/s, {THREADS} threads")
fig("requests", total)
fig("errors", sum(errors.values()))
for key, n in sorted(errors.items()):
    fig(f"  error {key}", n)
for key, text in sorted(error_examples.items()):
    fig(f"  e.g. {key}", repr(text)[:200])
for kind in sorted(latencies):
    v = latencies[kind]
    fig(f"latency {kind} (n={len(v)})",
        f"p50 {percentile(v, 50):.0f} ms, p99 {percentile(v, 99):.0f} ms, max {max(v):.0f} ms")
fig("cycles (busy + quiet)", cycles)
fig("scale-to-zero reached in quiet phases", f"{len(zero_waits)} of {len(zero_waits) + not_zero}"
    + (f", median wait {sorted(zero_waits)[len(zero_waits) // 2]:.0f} s" if zero_waits else ""))
fig("all workers gone after the load", f"after {final_zero:.0f} s" if final_zero is not None else
    f"NO: {len(workers())} containers after {IDLE + 60:.0f} s")
fig("workers the gateway still lists then", gateway_workers)
fig("cold starts (esb_cold_starts_total)", f"{after['esb_cold_starts_total'] - before['esb_cold_starts_total']:.0f}")
fig("worker containers created / destroyed", f"{events['create']} / {events['destroy']}"
    + (f" (oom {events['oom']})" if events["oom"] else ""))
outcomes = {k[8:]: after[k] - before[k] for k in after if k.startswith("outcome ") and after[k] - before[k]}
fig("gateway invocations by outcome", ", ".join(f"{k} {v:.0f}" for k, v in sorted(outcomes.items())))
fig("async invocations failed (last 100)", len(failed))
for inv in failed[:5]:
    fig(f"  failed {inv.get('function')}", str(inv.get("last_error"))[:150])
fig("async invocations still queued/running", pending)
fig("service restarts", ", ".join(f"{k} {v}" for k, v in restarts.items()) or "0")


def series(name, col):
    pts = [(r[0], r[col]) for r in samples if r[col] is not None]
    if len(pts) < 2:
        fig(f"RSS {name}", "too few samples")
        return
    n = len(pts)
    mt, mv = sum(t for t, _ in pts) / n, sum(v for _, v in pts) / n
    slope = sum((t - mt) * (v - mv) for t, v in pts) / (sum((t - mt) ** 2 for t, _ in pts) or 1)
    half = pts[n // 2:]
    mt2, mv2 = sum(t for t, _ in half) / len(half), sum(v for _, v in half) / len(half)
    slope2 = sum((t - mt2) * (v - mv2) for t, v in half) / (sum((t - mt2) ** 2 for t, _ in half) or 1)
    vals = [v for _, v in pts]
    fig(f"RSS {name} (MB) first/min/max/last",
        " / ".join(f"{v / 1024:.1f}" for v in (vals[0], min(vals), max(vals), vals[-1])))
    fig(f"RSS {name} slope (KB/min) all / 2nd half", f"{slope * 60:+.0f} / {slope2 * 60:+.0f} ({n} samples)")


series("gateway", 1)
series("agent", 2)
series("storage", 3)
fig("worker containers (samples) max", max(r[4] for r in samples))
fig("RSS samples (CSV), worker events", f"{os.path.join(OUT, 'rss.csv')}, events.log")
# Non-zero when the soak found a problem (the figures above say which).
sys.exit(1 if sum(errors.values()) or failed or pending or final_zero is None or gateway_workers else 0)
