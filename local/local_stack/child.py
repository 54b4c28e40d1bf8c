"""Start the local stack (`python -m local_stack`) as a child process, as `make run` does, and
wait for its "listening" line. Shared by the integration tests and the benchmark."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from local_stack.processes import free_port

LISTENING = re.compile(r"listening on (ws://\S+) \(emulators: (\{.*?\})\) data: (.*)$")


@dataclass
class RunningStack:
    proc: subprocess.Popen[str]
    url: str
    port: int
    secret: str
    emulator_urls: dict[str, str]
    log_path: Path
    data: str = ""  # the startup line's data directory, or "ephemeral (in memory)"

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/_local/stats", timeout=5) as resp:
            return dict(json.load(resp))

    def reset_stats(self) -> None:
        self._call("POST", "/_local/stats/reset")

    def track_frames(self, chat_ids: list[str] | None) -> None:
        """From now on keep when each MESSAGE frame of these chats (None: all) is written."""
        self._call("POST", "/_local/frames", {"chatIds": chat_ids})

    def tracked_frames(self) -> dict[str, dict[int, list[float]]]:
        """chatId -> seq -> the epoch times its MESSAGE frame was written to connections."""
        raw = self._call("GET", "/_local/frames")
        return {chat: {int(seq): times for seq, times in seqs.items()} for chat, seqs in raw.items()}

    def inject_fault(self, **spec: Any) -> None:
        """A fault of local_stack/faults.py, e.g. kind="crash", function="send",
        operation="dynamodb.UpdateItem", contains="headSeq"."""
        self._call("POST", "/_local/faults", spec)

    def clear_faults(self) -> int:
        """Remove every fault; returns how many times faults fired."""
        return int(self._call("DELETE", "/_local/faults")["fired"])

    def restart(self, pollers: bool = False, gateway: bool = False) -> int:
        """Restart the pollers and / or the gateway; returns how many connections were dropped."""
        return int(self._call("POST", "/_local/restart", {"pollers": pollers, "gateway": gateway})["dropped"])

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data, method=method)
        with urllib.request.urlopen(req, timeout=5) as resp:
            return dict(json.load(resp))

    def stop(self, timeout_s: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode


def start_local_stack(
    log_path: Path,
    extra_env: dict[str, str] | None = None,
    timeout_s: float = 90.0,
    data_dir: Path | None = None,
    port: int | None = None,
) -> RunningStack:
    """A stack of its own emulators (never a LOCALSTACK_HOST of the caller's environment), in
    memory unless `data_dir` is given."""
    port = port or free_port()
    secret = "integration-secret-0123456789abcdef"
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("LOCALSTACK_HOST", "CHAT_DATA_DIR")},
        "CHAT_PORT": str(port),
        "CHAT_JWT_SECRET": secret,
        "PYTHONUNBUFFERED": "1",
        **({"CHAT_DATA_DIR": str(data_dir), "CHAT_EPHEMERAL": "0"} if data_dir else {"CHAT_EPHEMERAL": "1"}),
        **(extra_env or {}),
    }
    log = log_path.open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "local_stack"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout_s
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if match := LISTENING.search(line):
            # Keep draining stdout (the functions' logs) so the pipe never fills and blocks the stack.
            threading.Thread(target=_copy_lines, args=(proc.stdout, log), daemon=True).start()
            emulators = json.loads(match.group(2).replace("'", '"'))
            return RunningStack(proc, match.group(1), port, secret, emulators, log_path, match.group(3))
    proc.kill()
    raise RuntimeError(f"local stack did not start; see {log_path}:\n{log_path.read_text()[-3000:]}")


def _copy_lines(source: IO[str], sink: IO[str]) -> None:
    for line in source:
        sink.write(line)
        sink.flush()
