"""Named points where a fault test can make the process die abruptly (as `kill -9` would), to prove that
nothing is lost or doubled however a crash falls. Inert unless BYOC_CRASH_AT names the point."""

from __future__ import annotations

import os


def crash_point(crash_at: str, name: str) -> None:
    if crash_at and crash_at == name:
        os._exit(137)
