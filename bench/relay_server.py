"""`byoc serve` with the outbound HTTP client chosen by the benchmark (`BENCH_HTTP_CLIENT`).

    BENCH_HTTP_CLIENT=aiohttp python bench/relay_server.py --port 8000

`default` builds the app exactly as `byoc serve` does; `aiohttp` passes `app.http.make_http_client(...)` to
`build_runtime` (the hook that exists for tests), so app/main.py is unchanged. Same uvicorn arguments as
`app/cli.py serve`.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import httpx
import uvicorn
from fastapi.responses import JSONResponse
from sqlalchemy import event

from app.config import get_settings
from app.main import build_runtime, create_app


def _engines(runtime: Any) -> list[Any]:
    """The sync engines behind the runtime: `database.writes`/`.reads` where the app splits them, else
    `engine`."""
    database = getattr(runtime, "database", None)
    found = [database.writes, database.reads] if database is not None else [runtime.engine]
    unique = list({id(engine): engine for engine in found}.values())
    return [engine.sync_engine for engine in unique]


def _time_statements(engines: list[Any]) -> Callable[[], list[dict[str, Any]]]:
    """Wall time per SQL statement (cursor execute to result, as the event loop sees it); the returned
    function ranks them, slowest total first."""
    totals: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])

    def _before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        conn.info.setdefault("bench_started", []).append(time.perf_counter())

    def _after(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        started = conn.info["bench_started"].pop()
        entry = totals[" ".join(statement.split())]
        entry[0] += 1
        entry[1] += time.perf_counter() - started

    for engine in engines:
        event.listen(engine, "before_cursor_execute", _before)
        event.listen(engine, "after_cursor_execute", _after)

    def ranked() -> list[dict[str, Any]]:
        order = sorted(totals.items(), key=lambda item: -item[1][1])
        return [{"sql": sql, "count": int(n), "total_s": round(t, 3), "mean_ms": round(1000 * t / n, 3)}
                for sql, (n, t) in order]  # fmt: skip

    return ranked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    settings = get_settings()
    if not settings.public_url:
        settings = settings.model_copy(update={"public_url": f"http://{args.host}:{args.port}"})
    logging.basicConfig(level=settings.log_level.upper())
    logging.getLogger("httpx").setLevel(logging.WARNING)
    choice = os.environ.get("BENCH_HTTP_CLIENT", "aiohttp")
    http: httpx.AsyncClient | None = None  # None: what `byoc serve` uses (httpx over aiohttp)
    if choice == "default":
        http = httpx.AsyncClient(timeout=settings.cxone_timeout_seconds)  # httpx's own transport
    elif choice != "aiohttp":
        raise SystemExit(f"BENCH_HTTP_CLIENT must be default or aiohttp, not {choice!r}")
    runtime = build_runtime(settings, cxone_http=http)
    ranked = _time_statements(_engines(runtime)) if os.environ.get("BENCH_SQL_STATS") else None
    app = create_app(settings, runtime=runtime)
    if ranked is not None:

        async def sql_stats() -> JSONResponse:
            return JSONResponse(ranked())

        app.add_api_route("/_bench/sql-stats", sql_stats, methods=["GET"], include_in_schema=False)
    uvicorn.run(app, host=args.host, port=args.port, log_level=settings.log_level.lower(), proxy_headers=True)


if __name__ == "__main__":
    main()
