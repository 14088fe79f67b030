"""The device agent as a real process on loopback: ``start_agent(...)`` -> its URL, stopped after the test."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "test-token-0123456789abcdef"


class Agent:
    def __init__(self, process: subprocess.Popen, url: str, log: Path) -> None:
        self.process, self.url, self.log = process, url, log

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def launch(log: Path, *args: str, token: str | None = TOKEN) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "PRUNETUNA_DEVICE_TOKEN"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    if token is not None:
        env["PRUNETUNA_DEVICE_TOKEN"] = token
    handle = log.open("w")
    return subprocess.Popen(
        [sys.executable, "-m", "prunetuna", "device", "serve", *args], stdout=handle, stderr=subprocess.STDOUT, env=env
    )


@pytest.fixture
def start_agent(tmp_path: Path):
    """``start_agent(*args, token=TOKEN, port=0) -> Agent`` once it listens (its first line names the URL)."""
    agents: list[Agent] = []

    def start(*args: str, token: str | None = TOKEN, port: int = 0) -> Agent:
        log = tmp_path / f"agent-{len(agents)}.log"
        process = launch(log, "--port", str(port), *args, token=token)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            found = re.search(r"device agent on (http://\S+)", log.read_text())
            if found:
                agent = Agent(process, found.group(1), log)
                agents.append(agent)
                return agent
            if process.poll() is not None:
                raise AssertionError(f"the agent exited {process.returncode}: {log.read_text()}")
            time.sleep(0.05)
        process.kill()
        raise AssertionError(f"the agent did not start: {log.read_text()}")

    yield start
    for agent in agents:
        agent.stop()
