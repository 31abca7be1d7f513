"""Benchmark of a customer's file on its way to CXone, against the simplest possible relay of a file.

    .venv/bin/python bench/attachments.py [--db sqlite|postgres|both] [--sizes 64k,1m,8m] [--files 200]
                                          [--concurrency 8]

The far ends run in their own process with real sockets (bench/file_host.py): a provider serving files
and CXone's temporary-attachment endpoint. Each variant runs in a fresh process of its own, so that its
peak memory (VmHWM) is its own:

  * baseline: GET the file whole, base64 it, POST it. Nothing kept, nothing capped.
  * relay: what the delivery worker does (`AttachmentRelay.for_cxone`): a streamed download under the
    size cap, the bytes kept in the `files` table, the upload to CXone, and the message's note of each
    step, each in its own transaction, on a freshly migrated SQLite file or PostgreSQL database.

Figures: files/s and MB/s over the whole run, per-file latency p50/p99, peak RSS of the process.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from relay import Processes, free_port, make_database, peak_rss_mb, wait_http  # noqa: E402

BENCH = Path(__file__).resolve().parent
UNITS = {"k": 1024, "m": 1024 * 1024}


def parse_size(text: str) -> int:
    text = text.strip().lower()
    return int(text[:-1]) * UNITS[text[-1]] if text[-1] in UNITS else int(text)


async def timed(count: int, concurrency: int, one: Any) -> tuple[float, list[float]]:
    """Run `one(index)` `count` times, `concurrency` at a time: the wall time and each call's latency."""
    latencies: list[float] = []
    gate = asyncio.Semaphore(concurrency)

    async def run(index: int) -> None:
        async with gate:
            started = time.perf_counter()
            await one(index)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(run(index) for index in range(count)))
    return time.perf_counter() - started, latencies


async def baseline(host: str, size: int, count: int, concurrency: int) -> tuple[float, list[float]]:
    async with httpx.AsyncClient(timeout=60) as http:

        async def one(index: int) -> None:
            blob = (await http.get(f"{host}/files/{size}")).content
            payload = {"content": base64.b64encode(blob).decode(), "mimeType": "application/pdf"}
            answer = await http.post(f"{host}/attachments/temporary", json=payload)
            answer.raise_for_status()

        return await timed(count, concurrency, one)


class Cxone:
    """The wire half of DfoClient.create_temporary_attachment, without CXone's token dance."""

    def __init__(self, http: httpx.AsyncClient, host: str) -> None:
        self._http, self._host = http, host

    async def create_temporary_attachment(self, content: bytes, mime_type: str) -> Any:
        from app.cxone.client import TemporaryAttachment

        payload = {"content": base64.b64encode(content).decode("ascii"), "mimeType": mime_type}
        answer = await self._http.post(f"{self._host}/attachments/temporary", json=payload)
        answer.raise_for_status()
        return TemporaryAttachment.model_validate(answer.json())


async def relay(host: str, size: int, count: int, concurrency: int, url: str) -> tuple[float, list[float]]:
    from datetime import timedelta

    from app.db import create_database, create_sessionmaker
    from app.delivery.attachments import AttachmentRelay
    from app.http import make_http_client
    from app.migrate import upgrade
    from app.models import Message
    from app.models.base import utcnow
    from app.services.files import FileLinks, FilePolicy

    await asyncio.to_thread(upgrade, url)
    database = create_database(url)
    http = make_http_client(timeout=60)
    attachments = AttachmentRelay(
        create_sessionmaker(database.writes),
        http,
        FileLinks("bench-secret-key-0123456789", "http://relay.test"),
        FilePolicy(limit=64 * 1024 * 1024, retention=timedelta(days=7)),
    )
    cxone = Cxone(http, host)

    async def one(index: int) -> None:
        message = Message(
            id=str(uuid.uuid4()),
            created_at=utcnow(),
            attachments=[{"url": f"{host}/files/{size}", "friendlyName": "scan.pdf"}],
        )
        ready = await attachments.for_cxone(cxone, object(), {}, message)  # type: ignore[arg-type]
        assert len(ready.attachments) == 1, ready.notes

    try:
        return await timed(count, concurrency, one)
    finally:
        await http.aclose()
        await database.dispose()


def child(args: argparse.Namespace) -> None:
    """One variant, in this process: prints its figures as JSON."""
    size = parse_size(args.size)
    if args.variant == "baseline":
        wall, latencies = asyncio.run(baseline(args.host, size, args.files, args.concurrency))
    else:
        wall, latencies = asyncio.run(relay(args.host, size, args.files, args.concurrency, args.url))
    latencies.sort()
    print(
        json.dumps(
            {
                "files_per_s": args.files / wall,
                "mb_per_s": args.files * size / wall / 1048576,
                "p50_ms": statistics.median(latencies) * 1000,
                "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
                "peak_rss_mb": peak_rss_mb(__import__("os").getpid()),
            }
        )
    )


def run_variant(
    variant: str, host: str, size: str, args: argparse.Namespace, url: str = ""
) -> dict[str, Any]:
    argv = [sys.executable, __file__, "--child", variant, "--host", host, "--size", size]
    argv += ["--files", str(args.files), "--concurrency", str(args.concurrency), "--url", url]
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=900)
    if done.returncode != 0:
        raise SystemExit(f"{variant} failed:\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def measure_all(procs: Processes, work: Path, kinds: tuple[str, ...], args: argparse.Namespace) -> None:
    port = free_port()
    host = f"http://127.0.0.1:{port}"
    server = procs.start("file-host", [sys.executable, str(BENCH / "file_host.py"), "--port", str(port)])
    wait_http(f"{host}/healthz", server)
    header = (
        f"{'size':>6} {'variant':<16} {'files/s':>8} {'MB/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'RSS MB':>7}"
    )
    print(f"{args.files} files per run, {args.concurrency} at a time\n{header}")
    for size in args.sizes.split(","):
        base = run_variant("baseline", host, size, args)
        rows = [("baseline", base)]
        for kind in kinds:
            database = make_database(kind, work, f"files{uuid.uuid4().hex[:6]}")
            try:
                rows.append((f"relay {kind}", run_variant("relay", host, size, args, database.url)))
            finally:
                database.cleanup()
        for name, figures in rows:
            ratio = figures["files_per_s"] / base["files_per_s"]
            print(
                f"{size:>6} {name:<16} {figures['files_per_s']:8.1f} {figures['mb_per_s']:7.1f} "
                f"{figures['p50_ms']:8.1f} {figures['p99_ms']:8.1f} {figures['peak_rss_mb']:7.1f}"
                + ("" if name == "baseline" else f"   ({ratio:.0%} of baseline throughput)")
            )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--sizes", default="64k,1m,8m")
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--child", choices=("baseline", "relay"), help=argparse.SUPPRESS)
    parser.add_argument("--host", help=argparse.SUPPRESS)
    parser.add_argument("--size", help=argparse.SUPPRESS)
    parser.add_argument("--url", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.variant = args.child
        child(args)
        return 0

    kinds = ("sqlite", "postgres") if args.db == "both" else (args.db,)
    with tempfile.TemporaryDirectory(prefix="bench-files-") as work:
        procs = Processes(Path(work))
        try:
            measure_all(procs, Path(work), kinds, args)
        finally:
            procs.stop_all()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
