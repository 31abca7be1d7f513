"""What a newcomer does: start the demo, paste the commands it prints, and see a message go both ways."""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import database_kind

pytestmark = pytest.mark.skipif(
    database_kind() != "sqlite", reason="the demo runs on its own SQLite file, whatever the suite's database"
)
STARTUP_SECONDS = 60


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def demo_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BYOC_")}
    env.update({"BYOC_ENV": "dev", "BYOC_DATABASE_URL": f"sqlite:///{tmp_path / 'byoc.db'}"})
    return env


@pytest.fixture
def demo_output(tmp_path: Path) -> Iterator[list[str]]:
    """Start `byoc serve --demo` as `make run` does and collect what it prints until the demo block ends."""
    env = demo_env(tmp_path)
    subprocess.run([sys.executable, "-m", "app.cli", "db", "upgrade"], env=env, check=True, cwd=tmp_path)
    server = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--demo", "--port", str(free_port())],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    assert server.stdout is not None
    stdout = server.stdout

    def pump() -> None:
        for line in stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    printed: list[str] = []
    deadline = time.monotonic() + STARTUP_SECONDS
    try:
        while sum(line.startswith("=====") for line in printed) < 2:
            remaining = deadline - time.monotonic()
            assert remaining > 0, "".join(printed)
            assert server.poll() is None, "".join(printed)
            try:
                printed.append(lines.get(timeout=remaining))
            except queue.Empty:
                pytest.fail("the demo block was never printed:\n" + "".join(printed))
        yield printed
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        stdout.close()


def run_step(printed: list[str], number: int, env: dict[str, str]) -> Any:
    """The command printed under step `number`, run in a shell exactly as pasted."""
    index = next(i for i, line in enumerate(printed) if line.startswith(f"{number}. "))
    command = printed[index + 1].strip()
    assert command.startswith("curl ")
    result = subprocess.run(["bash", "-c", command], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.skipif(shutil.which("curl") is None, reason="the printed steps use curl")
def test_the_printed_steps_show_a_message_going_both_ways(demo_output: list[str], tmp_path: Path) -> None:
    text = "".join(demo_output)
    for label in (
        "Integration Box URL:",
        "Authorization URL:",
        "Client ID:",
        "Client Secret:",
        "Action URL:",
    ):
        assert label in text
    key_line = next(line for line in demo_output if "export BYOC_KEY=" in line)
    env = {**demo_env(tmp_path), "BYOC_KEY": key_line.split("BYOC_KEY=", 1)[1].strip()}

    agent = run_step(demo_output, 1, env)
    assert agent["status"] == 200
    thread_id = agent["body"]["thread"]["idOnExternalPlatform"]

    inbox = run_step(demo_output, 2, env)
    assert [(m["text"], m["thread_id"]) for m in inbox["messages"]] == [("Hello from CXone!", thread_id)]

    answer = run_step(demo_output, 3, env)
    assert answer["thread_id"] == thread_id
    assert answer["status"] == "relayed"

    threads = run_step(demo_output, 4, env)
    assert [(m["direction"], m["messageContent"]["payload"]["text"]) for m in threads[0]["messages"]] == [
        ("outbound", "Hello from CXone!"),
        ("inbound", "Thanks, got it!"),
    ]
