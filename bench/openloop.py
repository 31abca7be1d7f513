"""Open-loop load at a fixed rate, in its own process: request i is due at start + i/rate whether or not
earlier ones have been answered, and its latency is measured from when it was due (no coordinated
omission). Requests come from a file written by bench/relay.py, one per line:
`path<TAB>header<TAB>value<TAB>...<TAB>body`, each used once.

    python bench/openloop.py --url http://127.0.0.1:8000 --file reqs.tsv --rate 200 --duration 8

Prints one JSON object: sent, ok, errors, statuses, p50/p90/p99/max latency in ms, achieved rate.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter

import aiohttp


def load(path: str) -> list[tuple[str, dict[str, str], bytes]]:
    requests = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            fields = line.rstrip("\n").split("\t")
            headers = dict(zip(fields[1:-1:2], fields[2:-1:2], strict=True))
            requests.append((fields[0], headers, fields[-1].encode()))
    return requests


def percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


async def run(
    url: str, requests: list[tuple[str, dict[str, str], bytes]], rate: float, duration: float
) -> dict[str, object]:
    total = min(len(requests), int(rate * duration))
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    connector = aiohttp.TCPConnector(limit=512)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        # One warm request per connection is not needed: the first ones are included, as a client sees them.
        async def fire(index: int, due: float) -> None:
            path, headers, body = requests[index]
            try:
                async with session.post(url + path, data=body, headers=headers) as response:
                    await response.read()
                    statuses[str(response.status)] += 1
            except (aiohttp.ClientError, TimeoutError) as exc:
                statuses[type(exc).__name__] += 1
                return
            latencies.append((time.perf_counter() - due) * 1000)

        tasks = []
        start = time.perf_counter() + 0.05
        for index in range(total):
            due = start + index / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(fire(index, due)))
        sent_for = time.perf_counter() - start
        await asyncio.gather(*tasks)
    latencies.sort()
    ok = sum(n for status, n in statuses.items() if status.startswith("2"))
    return {
        "sent": total,
        "ok": ok,
        "errors": total - ok,
        "statuses": dict(statuses),
        "rate": rate,
        "achieved_rate": round(total / sent_for, 1) if sent_for > 0 else None,
        "p50_ms": percentile(latencies, 50),
        "p90_ms": percentile(latencies, 90),
        "p99_ms": percentile(latencies, 99),
        "max_ms": latencies[-1] if latencies else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--file", required=True)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--duration", type=float, default=8.0)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    result = asyncio.run(run(args.url, load(args.file), args.rate, args.duration))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
