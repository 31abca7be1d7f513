"""End-to-end benchmark of byoc-relay against a bare forwarder, with real processes and real sockets.

    .venv/bin/python bench/relay.py [--db sqlite|postgres|both] [--duration S] [--quick]
                                    [--http-client aiohttp|default|both] [--rate 200] [--profile]

Processes (each its own OS process, all stopped at the end, also on Ctrl-C or failure):
  * the CXone simulator (bench/simulator_server.py), counting the messages it accepts per second;
  * the fake provider (python -m tests.fakes.provider), counting deliveries per second;
  * the bare forwarder (bench/bare_forwarder.py): the baseline, forwards each body to the fake provider;
  * the relay: `byoc serve` (one process, worker inside) on a fresh SQLite file or a fresh PostgreSQL
    database created here and dropped at the end (`bench/relay_server.py` for --http-client default,
    which swaps in httpx's own transport, or with --sql-stats);
  * the load generators: wrk (closed loop, 8 connections: saturation) and bench/openloop.py (aiohttp,
    open loop at a fixed rate: latency under a load well below saturation).

Flows: `inbound` (provider -> POST /webhooks/webhook/{channel} -> outbox -> CXone simulator) and `reply`
(CXone -> POST box 2.0/channel/{id}/outbound -> outbox -> fake provider). Every inbound request has its own
event id and a fresh Standard Webhooks signature; requests are generated just before each run.
Throughput is read at the far end (simulator / fake provider counters), over full seconds of the
saturation run after the warm-up. Results: a table on stdout and bench/results/relay-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
PYTHON = sys.executable
BYOC = str(Path(PYTHON).parent / "byoc")
PY_SPY = Path(PYTHON).parent / "py-spy"
PG_ADMIN_URL = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/test")
PG_URL_TEMPLATE = "postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
END_USERS = 1000  # distinct customers: deliveries are ordered per thread, so load spreads over threads
RELAY_MAX_RATE = 2500  # requests generated per second of a relay saturation run (each used once)
BASELINE_REQUESTS = 5000  # the forwarder re-signs with a fresh id, so its requests may repeat


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# Processes -------------------------------------------------------------------------------------------


@dataclass
class Started:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path


@dataclass
class Processes:
    """Everything this run started, stopped in reverse order by process group (each has its own)."""

    workdir: Path
    started: list[Started] = field(default_factory=list)

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Started:
        log_path = self.workdir / f"{name}.log"
        with open(log_path, "wb") as out:
            popen = subprocess.Popen(
                argv,
                cwd=ROOT,
                env={**os.environ, **(env or {})},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        process = Started(name, popen, log_path)
        self.started.append(process)
        return process

    def stop(self, process: Started, timeout: float = 10.0) -> None:
        if process.popen.poll() is None:
            with _suppress_lookup():
                os.killpg(process.popen.pid, signal.SIGTERM)
            try:
                process.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with _suppress_lookup():
                    os.killpg(process.popen.pid, signal.SIGKILL)
                process.popen.wait(5)
        if process in self.started:
            self.started.remove(process)

    def stop_all(self) -> None:
        for process in reversed(list(self.started)):
            try:
                self.stop(process)
            except Exception as exc:  # keep stopping the others
                log(f"could not stop {process.name}: {exc}")


class _suppress_lookup:
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> bool:
        return kind is not None and issubclass(kind, ProcessLookupError)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, process: Started, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.popen.poll() is not None:
            raise RuntimeError(f"{process.name} exited: see {process.log_path}\n{tail(process.log_path)}")
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{process.name} did not answer {url} within {timeout}s")


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def peak_rss_mb(pid: int) -> float | None:
    """VmHWM: the process's peak resident set size so far."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


# Databases -------------------------------------------------------------------------------------------


def _pg(statement: str) -> None:
    import asyncpg

    async def run() -> None:
        connection = await asyncpg.connect(PG_ADMIN_URL)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(run())


@dataclass
class Database:
    kind: str
    url: str
    cleanup: Callable[[], None]


def make_database(kind: str, workdir: Path, tag: str) -> Database:
    if kind == "sqlite":
        path = workdir / f"relay-{tag}.db"

        def remove() -> None:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)

        return Database(kind, f"sqlite+aiosqlite:///{path}", remove)
    name = f"bench_relay_{os.getpid()}_{tag}"
    _pg(f'CREATE DATABASE "{name}"')
    return Database(
        kind, PG_URL_TEMPLATE.format(name=name), lambda: _pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    )


# Requests ----------------------------------------------------------------------------------------------


def _signing_key(secret: str) -> bytes:
    encoded = secret.removeprefix("whsec_")
    return base64.b64decode(encoded + "=" * (-len(encoded) % 4))


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


def write_inbound(path: Path, count: int, *, channel_id: str, secret: str) -> None:
    """Signed provider events, each with its own event id and webhook-id, timestamps of now."""
    key = _signing_key(secret)
    timestamp = str(int(time.time()))
    route = f"/webhooks/webhook/{channel_id}"
    with open(path, "w", encoding="utf-8") as out:
        for index in range(count):
            event_id = f"ev_{uuid.uuid4().hex}"
            body = json.dumps(
                {
                    "type": "message",
                    "id": event_id,
                    "from": {"id": f"+1555{index % END_USERS:07d}"},
                    "text": f"bench inbound {index}",
                },
                separators=(",", ":"),
            )
            msg_id = f"msg_{event_id}"
            digest = hmac.new(key, f"{msg_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
            signature = "v1," + base64.b64encode(digest).decode()
            headers = (
                f"content-type\tapplication/json\twebhook-id\t{msg_id}\t"
                f"webhook-timestamp\t{timestamp}\twebhook-signature\t{signature}"
            )
            out.write(f"{route}\t{headers}\t{body}\n")


def write_replies(path: Path, count: int, *, channel_id: str, token: str) -> None:
    """CXone agent replies (DFO 3.0 outbound), spread over END_USERS customers."""
    route = f"/integration/box/2.0/channel/{channel_id}/outbound"
    with open(path, "w", encoding="utf-8") as out:
        for index in range(count):
            body = json.dumps(
                {
                    "messageContent": {"type": "TEXT", "payload": {"text": f"bench reply {index}"}},
                    "endUserRecipients": [{"idOnExternalPlatform": f"+1555{index % END_USERS:07d}"}],
                },
                separators=(",", ":"),
            )
            out.write(f"{route}\tcontent-type\tapplication/json\tauthorization\tBearer {token}\t{body}\n")


# Load --------------------------------------------------------------------------------------------------


def run_openloop(url: str, requests: Path, rate: float, duration: float) -> dict[str, Any]:
    argv = [PYTHON, str(BENCH / "openloop.py"), "--url", url, "--file", str(requests)]
    argv += ["--rate", str(rate), "--duration", str(duration)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 90, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"openloop failed: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run_wrk(url: str, requests: Path, duration: int, connections: int) -> dict[str, Any]:
    env = {**os.environ, "BENCH_REQUESTS": str(requests), "BENCH_THREADS": "1"}
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--timeout", "10s"]
    argv += ["-s", str(BENCH / "requests.lua"), url]
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=duration + 60, check=False)
    for line in done.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            result: dict[str, Any] = json.loads(line.removeprefix("BENCH_JSON "))
            result["rps"] = round(result["requests"] / (result["duration_us"] / 1e6), 1)
            result["errors"] = sum(result[k] for k in ("connect", "read", "write", "status", "timeout"))
            return result
    raise RuntimeError(f"wrk printed no result:\n{done.stdout}\n{done.stderr}")


class FarEnd:
    """A far-end counter: total accepted and accepted per wall-clock second."""

    def __init__(self, name: str, url: str, total_key: str) -> None:
        self.name = name
        self.url = url
        self.total_key = total_key

    def read(self) -> tuple[int, dict[int, int]]:
        data = httpx.get(self.url, timeout=10.0).json()
        return int(data[self.total_key]), {int(k): int(v) for k, v in data["per_second"].items()}

    def wait_quiet(self, quiet: float = 1.5, limit: float = 90.0) -> float:
        """Wait until the counter stops moving (a relay's outbox drained); returns how long that took."""
        started = time.monotonic()
        last, since = self.read()[0], time.monotonic()
        while time.monotonic() - started < limit:
            time.sleep(0.5)
            now = self.read()[0]
            if now != last:
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet:
                break
        return round(max(0.0, since - started), 1)


def steady_throughput(per_second: dict[int, int], start: float, end: float, warmup: float) -> float | None:
    first, last = int(start + warmup) + 1, int(end) - 1  # whole seconds inside the window
    seconds = range(first, last)
    if not seconds:
        return None
    return round(statistics.fmean(per_second.get(s, 0) for s in seconds), 1)


@dataclass
class Settings:
    rate: float
    fixed_seconds: float
    sat_seconds: int
    warmup: float
    connections: int


def fixed_load(
    label: str, base_url: str, far_end: FarEnd, make_requests: Callable[[Path, int], None], workdir: Path,
    settings: Settings, rate: float,
) -> dict[str, Any]:  # fmt: skip
    """Latency at a fixed offered load, open loop."""
    requests = workdir / f"{label}-fixed.tsv"
    make_requests(requests, int(rate * settings.fixed_seconds) + 10)
    log(f"{label}: fixed load {rate:g}/s for {settings.fixed_seconds:g}s")
    result = run_openloop(base_url, requests, rate, settings.fixed_seconds)
    far_end.wait_quiet()
    requests.unlink(missing_ok=True)
    return result


def measure(
    label: str,
    base_url: str,
    far_end: FarEnd,
    make_requests: Callable[[Path, int], None],
    workdir: Path,
    settings: Settings,
    *,
    unique: bool,
    profile_pid: int | None = None,
) -> dict[str, Any]:
    """Warm-up, saturation (wrk) with far-end throughput, then latency at a fixed rate (open loop): the
    configured rate, or half the measured saturation rate when that is lower, so it stays well below it."""
    requests = workdir / f"{label}.tsv"
    make_requests(requests, 100)
    run_openloop(base_url, requests, 100, 1.0)  # warm connections, caches, first threads
    far_end.wait_quiet()

    count = settings.sat_seconds * RELAY_MAX_RATE if unique else BASELINE_REQUESTS
    make_requests(requests, count)
    log(f"{label}: saturation, wrk {settings.connections} connections for {settings.sat_seconds}s")
    profiler = None
    if profile_pid is not None and PY_SPY.exists():
        out = RESULTS / f"profile-{label}.txt"
        profiler = subprocess.Popen(
            [str(PY_SPY), "record", "-p", str(profile_pid), "-d", str(settings.sat_seconds - 1),
             "-r", "50", "-f", "raw", "-o", str(out), "--nonblocking"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
    start = time.time()
    saturation = run_wrk(base_url, requests, settings.sat_seconds, settings.connections)
    end = time.time()
    requests.unlink(missing_ok=True)
    if profiler is not None:
        profiler.wait(30)
    drain = far_end.wait_quiet()
    _, per_second = far_end.read()
    throughput = steady_throughput(per_second, start, end, settings.warmup)
    rate = min(settings.rate, max(5.0, float(round(0.5 * min(saturation["rps"], throughput or 0.0)))))
    fixed = fixed_load(label, base_url, far_end, make_requests, workdir, settings, rate)
    log(
        f"{label}: far-end {throughput}/s, acks {saturation['rps']}/s, drain {drain}s, "
        f"at {rate:g}/s p50 {fixed['p50_ms']:.1f} ms p99 {fixed['p99_ms']:.1f} ms"
    )
    return {
        "fixed": fixed,
        "fixed_rate": rate,
        "saturation": saturation,
        "far_end_per_s": throughput,
        "drain_s": drain,
    }


# Set-up ------------------------------------------------------------------------------------------------


@dataclass
class Stack:
    sim_url: str
    provider_url: str
    provider: FarEnd
    simulator: FarEnd
    secret: str


def configure_relay(relay_url: str, key: str, stack: Stack, tag: str) -> tuple[str, str]:
    """Integration, its registration in the simulator, a webhook channel; returns (channel id, box token)."""
    admin = httpx.Client(base_url=relay_url, headers={"Authorization": f"Bearer {key}"}, timeout=30.0)
    with admin:
        created = admin.post(
            "/api/v1/integrations",
            json={
                "name": f"bench {tag}",
                "cxone": {"access_key_id": "demo-access-key", "access_key_secret": "demo-access-secret"},
                "cxone_issuer_url": stack.sim_url,
            },
        )
        created.raise_for_status()
        integration = created.json()
        form = integration["cxone_form"]
        registered = httpx.post(
            f"{stack.sim_url}/_sim/byoc-integrations",
            json={
                "name": form["Name"],
                "box_url": form["Integration Box URL"],
                "authorization_url": form["Authorization URL"],
                "client_id": form["Client ID"],
                "client_secret": form["Client Secret"],
            },
            timeout=10.0,
        )
        registered.raise_for_status()
        patched = admin.patch(
            f"/api/v1/integrations/{integration['id']}",
            json={"cxone_integration_id": registered.json()["integrationId"]},
        )
        patched.raise_for_status()
        channel = admin.post(
            "/api/v1/channels",
            json={
                "integration_id": integration["id"],
                "name": f"bench webhook {tag}",
                "adapter": "webhook",
                "config": {"url": f"{stack.provider_url}/messages", "secret": stack.secret},
            },
        )
        channel.raise_for_status()
        created_channel = channel.json()
        if created_channel.get("secrets", {}).get("secret", stack.secret) != stack.secret:
            raise RuntimeError(
                "the relay generated its own channel secret; the fake provider would reject it"
            )
    token = httpx.post(
        f"{relay_url}/integration/box/1.0/token",
        json={
            "grant_type": "client_credentials",
            "client_id": form["Client ID"],
            "client_secret": form["Client Secret"],
        },
        timeout=10.0,
    )
    token.raise_for_status()
    return created_channel["id"], token.json()["access_token"]


def run_relay(
    kind: str,
    client: str,
    stack: Stack,
    procs: Processes,
    workdir: Path,
    settings: Settings,
    cleanups: list[Callable[[], None]],
    profile: bool,
    sql_stats: bool = False,
) -> dict[str, Any]:
    tag = f"{kind}_{client}_{int(time.time())}"
    database = make_database(kind, workdir, tag)
    cleanups.append(database.cleanup)
    port = free_port()
    relay_url = f"http://127.0.0.1:{port}"
    env = {
        "BYOC_ENV": "dev",
        "BYOC_DATABASE_URL": database.url,
        "BYOC_PUBLIC_URL": relay_url,
        "BYOC_LOG_LEVEL": "WARNING",
        "BENCH_HTTP_CLIENT": client,
    }
    full_env = {**os.environ, **env}
    subprocess.run([BYOC, "db", "upgrade"], cwd=ROOT, env=full_env, check=True, capture_output=True)
    key = subprocess.run(
        [BYOC, "apikey", "create", "--role", "admin", "--name", "bench"],
        cwd=ROOT, env=full_env, check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    if sql_stats:
        env["BENCH_SQL_STATS"] = "1"
    if client == "aiohttp" and not sql_stats:  # exactly `byoc serve`
        argv = [BYOC, "serve", "--port", str(port)]
    else:
        argv = [PYTHON, str(BENCH / "relay_server.py"), "--port", str(port)]
    relay = procs.start(f"relay-{kind}-{client}", argv, env)
    try:
        wait_http(f"{relay_url}/healthz", relay)
        channel_id, token = configure_relay(relay_url, key, stack, tag)
        log(f"relay on {kind} ({client} client) at {relay_url}, pid {relay.popen.pid}, channel {channel_id}")
        pid = relay.popen.pid if profile else None
        inbound = measure(
            f"inbound-{kind}-{client}",
            relay_url,
            stack.simulator,
            lambda path, n: write_inbound(path, n, channel_id=channel_id, secret=stack.secret),
            workdir,
            settings,
            unique=True,
            profile_pid=pid,
        )
        reply = measure(
            f"reply-{kind}-{client}",
            relay_url,
            stack.provider,
            lambda path, n: write_replies(path, n, channel_id=channel_id, token=token),
            workdir,
            settings,
            unique=True,
            profile_pid=pid,
        )
        metrics = httpx.get(f"{relay_url}/metrics", timeout=10.0).text
        if sql_stats:
            ranked = httpx.get(f"{relay_url}/_bench/sql-stats", timeout=10.0).json()
            (RESULTS / f"sql-{kind}-{client}.json").write_text(json.dumps(ranked, indent=1))
        rss = peak_rss_mb(relay.popen.pid)
    finally:
        procs.stop(relay)
        if relay.popen.returncode not in (0, -signal.SIGTERM):
            log(f"relay exit code {relay.popen.returncode}; log tail:\n{tail(relay.log_path)}")
    dead = [line for line in metrics.splitlines() if "dead" in line and not line.startswith("#")]
    return {
        "db": kind,
        "client": client,
        "inbound": inbound,
        "reply": reply,
        "peak_rss_mb": rss,
        "dead": dead,
    }


def run_baseline(stack: Stack, procs: Processes, workdir: Path, settings: Settings) -> dict[str, Any]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [PYTHON, str(BENCH / "bare_forwarder.py"), "--port", str(port)]
    argv += ["--target", f"{stack.provider_url}/messages", "--secret", stack.secret]
    forwarder = procs.start("bare-forwarder", argv)
    try:
        wait_http(f"{url}/healthz", forwarder)
        log(f"bare forwarder at {url}, pid {forwarder.popen.pid}")
        channel = "bench-baseline"
        inbound = measure(
            "inbound-baseline",
            url,
            stack.provider,
            lambda path, n: write_inbound(path, n, channel_id=channel, secret=stack.secret),
            workdir,
            settings,
            unique=False,
        )
        reply = measure(
            "reply-baseline",
            url,
            stack.provider,
            lambda path, n: write_replies(path, n, channel_id=channel, token="t"),
            workdir,
            settings,
            unique=False,
        )
        rss = peak_rss_mb(forwarder.popen.pid)
    except BaseException:
        procs.stop(forwarder)
        raise
    makers = {
        "inbound": lambda path, n: write_inbound(path, n, channel_id=channel, secret=stack.secret),
        "reply": lambda path, n: write_replies(path, n, channel_id=channel, token="t"),
    }
    fixed_at: dict[str, dict[float, dict[str, Any]]] = {
        "inbound": {inbound["fixed_rate"]: inbound["fixed"]},
        "reply": {reply["fixed_rate"]: reply["fixed"]},
    }

    def at_rate(flow: str, rate: float) -> dict[str, Any]:
        """The forwarder's latency at the rate a relay was measured at (measured once per rate)."""
        if rate not in fixed_at[flow]:
            label = f"{flow}-baseline"
            fixed_at[flow][rate] = fixed_load(
                label, url, stack.provider, makers[flow], workdir, settings, rate
            )
        return fixed_at[flow][rate]

    return {"inbound": inbound, "reply": reply, "peak_rss_mb": rss, "at_rate": at_rate, "fixed_at": fixed_at}


# Report ------------------------------------------------------------------------------------------------


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def _fmt(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}"


def _lat(result: dict[str, Any]) -> tuple[float | None, float | None, float | None, float | None]:
    fixed, sat = result["fixed"], result["saturation"]
    return fixed["p50_ms"], fixed["p99_ms"], sat["p50_us"] / 1000, sat["p99_us"] / 1000


def rows(relays: list[dict[str, Any]], baseline: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for relay in relays:
        for flow in ("inbound", "reply"):
            mine = relay[flow]
            base = {**baseline[flow], "fixed": baseline["at_rate"](flow, mine["fixed_rate"])}
            r50, r99, rs50, rs99 = _lat(mine)
            b50, b99, bs50, bs99 = _lat(base)
            yield {
                "flow": flow,
                "db": relay["db"],
                "client": relay["client"],
                "throughput_relay": mine["far_end_per_s"],
                "throughput_baseline": base["far_end_per_s"],
                "throughput_ratio": _ratio(mine["far_end_per_s"], base["far_end_per_s"]),
                "acks_relay": mine["saturation"]["rps"],
                "fixed_rate": mine["fixed_rate"],
                "fixed_p50_relay": r50,
                "fixed_p99_relay": r99,
                "fixed_p50_baseline": b50,
                "fixed_p99_baseline": b99,
                "fixed_p99_ratio": _ratio(r99, b99),
                "fixed_errors": mine["fixed"]["errors"],
                "sat_p50_relay": rs50,
                "sat_p99_relay": rs99,
                "sat_p50_baseline": bs50,
                "sat_p99_baseline": bs99,
                "sat_p99_ratio": _ratio(rs99, bs99),
                "sat_errors": mine["saturation"]["errors"],
                "drain_s": mine["drain_s"],
                "peak_rss_mb": relay["peak_rss_mb"],
            }


def print_table(table: list[dict[str, Any]], baseline: dict[str, Any], settings: Settings) -> None:
    print()
    print(
        f"byoc-relay vs bare forwarder. Throughput: messages/s reaching the far end (CXone simulator or fake "
        f"provider) during wrk with {settings.connections} connections for {settings.sat_seconds}s, first "
        f"{settings.warmup:g}s skipped. Latency: acknowledgement p50/p99 in ms at a fixed rate, open loop "
        f"for {settings.fixed_seconds:g}s ({settings.rate:g} req/s, or half the relay's saturation rate if "
        "lower; the forwarder is measured at the same rate), and at saturation. "
        "Targets: throughput ratio >= 0.60, p99 ratio <= 2.0 ('!' = missed)."
    )

    def pair(a: float | None, b: float | None) -> str:
        return f"{_fmt(a, 1)}/{_fmt(b, 1)}"

    def ratio(value: float | None, ok: bool) -> str:
        return _fmt(value, 2) + ("" if value is None or ok else "!")

    header = [
        "flow", "db", "client", "far-end/s relay", "base", "ratio", "acks/s",
        "fixed req/s", "p50/p99 relay", "base", "p99x", "sat p50/p99 relay", "base", "p99x",
        "errs", "drain s", "RSS MB",
    ]  # fmt: skip
    lines = [header]
    for row in table:
        t_ratio, f_ratio, s_ratio = row["throughput_ratio"], row["fixed_p99_ratio"], row["sat_p99_ratio"]
        lines.append(
            [
                row["flow"],
                row["db"],
                row["client"],
                _fmt(row["throughput_relay"]),
                _fmt(row["throughput_baseline"]),
                ratio(t_ratio, t_ratio is not None and t_ratio >= 0.6),
                _fmt(row["acks_relay"]),
                _fmt(row["fixed_rate"]),
                pair(row["fixed_p50_relay"], row["fixed_p99_relay"]),
                pair(row["fixed_p50_baseline"], row["fixed_p99_baseline"]),
                ratio(f_ratio, f_ratio is not None and f_ratio <= 2),
                pair(row["sat_p50_relay"], row["sat_p99_relay"]),
                pair(row["sat_p50_baseline"], row["sat_p99_baseline"]),
                ratio(s_ratio, s_ratio is not None and s_ratio <= 2),
                str(row["fixed_errors"] + row["sat_errors"]),
                _fmt(row["drain_s"], 1),
                _fmt(row["peak_rss_mb"]),
            ]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for index, line in enumerate(lines):
        cells = [
            cell.ljust(w) if i < 3 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(line, widths, strict=True))
        ]
        print(" | ".join(cells))
        if index == 0:
            print("-+-".join("-" * w for w in widths))
    print(
        f"(bare forwarder peak RSS {baseline['peak_rss_mb']} MB; errs = non-2xx or socket errors, both runs; "
        "drain = seconds the far end kept receiving after wrk stopped)"
    )


# Main --------------------------------------------------------------------------------------------------


def export_head(target: Path) -> None:
    """A clean copy of HEAD's app/, tests/ and migrations/, put first on PYTHONPATH of every process."""
    target.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "archive", "HEAD", "app", "tests", "migrations", "alembic.ini"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(target), os.environ.get("PYTHONPATH")]))
    os.environ["BENCH_CODE"] = "head"


def _code_state() -> dict[str, str]:
    """Which app code was measured: the commit, and the files changed on top of it."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False)
    dirty = subprocess.run(
        ["git", "status", "--short", "app"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    if os.environ.get("BENCH_CODE") == "head":
        return {"commit": head.stdout.strip(), "app_changes": "(clean HEAD export)"}
    return {"commit": head.stdout.strip(), "app_changes": " ".join(dirty.stdout.split())}


def _on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--duration", type=int, default=None, help="seconds of each saturation run")
    parser.add_argument("--quick", action="store_true", help="short runs (about a minute per database)")
    parser.add_argument("--http-client", choices=("default", "aiohttp", "both"), default="aiohttp")
    parser.add_argument("--rate", type=float, default=200.0, help="fixed offered load, requests/s")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--profile", action="store_true", help="py-spy the relay during saturation")
    parser.add_argument(
        "--code",
        choices=("worktree", "head"),
        default="worktree",
        help="benchmark the working tree's app/ (default) or a clean export of HEAD (while app/ is mid-edit)",
    )
    parser.add_argument(
        "--sql-stats", action="store_true", help="time each SQL statement in the relay (bench/results/sql-*)"
    )
    args = parser.parse_args()

    if shutil.which("wrk") is None:
        print(
            "wrk is not installed. Install it with:\n  sudo apt-get update && sudo apt-get install -y wrk\n"
            "(Debian/Ubuntu package `wrk`), then run this again.",
            file=sys.stderr,
        )
        return 2
    sat = args.duration or (10 if args.quick else 20)
    settings = Settings(
        rate=args.rate,
        fixed_seconds=5.0 if args.quick else 10.0,
        sat_seconds=sat,
        warmup=3.0 if sat <= 12 else 5.0,
        connections=args.connections,
    )
    dbs = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    clients = ["default", "aiohttp"] if args.http_client == "both" else [args.http_client]

    signal.signal(signal.SIGTERM, _on_sigterm)
    RESULTS.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="byoc-bench-"))
    procs = Processes(workdir)
    if args.code == "head":
        export_head(workdir / "src")
    cleanups: list[Callable[[], None]] = []
    try:
        secret = new_secret()
        sim_port, provider_port = free_port(), free_port()
        sim_url, provider_url = f"http://127.0.0.1:{sim_port}", f"http://127.0.0.1:{provider_port}"
        sim = procs.start("simulator", [PYTHON, str(BENCH / "simulator_server.py"), "--port", str(sim_port)])
        provider = procs.start(
            "provider",
            [PYTHON, "-m", "tests.fakes.provider", "--port", str(provider_port), "--secret", secret],
        )
        wait_http(f"{sim_url}/_bench/stats", sim)
        wait_http(f"{provider_url}/_fake/stats", provider)
        stack = Stack(
            sim_url=sim_url,
            provider_url=provider_url,
            provider=FarEnd("fake provider", f"{provider_url}/_fake/stats", "deliveries"),
            simulator=FarEnd("CXone simulator", f"{sim_url}/_bench/stats", "accepted"),
            secret=secret,
        )
        baseline = run_baseline(stack, procs, workdir, settings)
        relays = []
        for kind in dbs:
            for client in clients:
                relays.append(
                    run_relay(
                        kind, client, stack, procs, workdir, settings, cleanups, args.profile, args.sql_stats
                    )
                )
                httpx.post(f"{sim_url}/_bench/forget", timeout=10.0)
        table = list(rows(relays, baseline))
        print_table(table, baseline, settings)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        out = RESULTS / f"relay-{stamp}.json"
        report = {
            "settings": vars(settings),
            "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
            "code": _code_state(),
            "table": table,
            "baseline": {
                "inbound": baseline["inbound"],
                "reply": baseline["reply"],
                "peak_rss_mb": baseline["peak_rss_mb"],
                "fixed_at": {
                    flow: {str(k): v for k, v in by.items()} for flow, by in baseline["fixed_at"].items()
                },
            },
            "relays": relays,
        }
        out.write_text(json.dumps(report, indent=2))
        print(f"\nwritten {out.relative_to(ROOT)}")
        return 0
    except KeyboardInterrupt:
        log("interrupted: cleaning up")
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip the clean-up
        procs.stop_all()
        for cleanup in reversed(cleanups):
            try:
                cleanup()
            except Exception as exc:
                log(f"clean-up failed: {exc}")
        shutil.rmtree(workdir, ignore_errors=True)
        signal.signal(signal.SIGINT, signal.SIG_DFL)


if __name__ == "__main__":
    sys.exit(main())
