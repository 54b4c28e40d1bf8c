"""The whole local stack in one object: emulators, resources, gateway, pollers."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from chat_backend import wiring
from local_stack.bootstrap import bootstrap, create_push_platforms, restore_push_endpoints
from local_stack.endpoints import Endpoints, localstack_host
from local_stack.faults import CrashFault, Faults
from local_stack.gateway import Gateway
from local_stack.invoker import Invoker
from local_stack.processes import ChildProcess, dynamodb_local, ensure_port_free, moto_server
from local_stack.push_log import PUSH_LOG_ENV
from local_stack.queue_poller import QueuePoller
from local_stack.schedule import SchedulePoller
from local_stack.storage import CheckpointFile, DataDirLock, data_dir_from_env
from local_stack.stream_poller import StreamPoller
from local_stack.timing import TimingProfile, fast_profile, profile_from_env

log = logging.getLogger("local_stack")

REGION = "us-east-1"


@dataclass(frozen=True)
class LocalStackConfig:
    port: int = 8080
    jwt_secret: str = "local-dev-secret"
    idle_timeout_s: float = 600.0
    max_duration_s: float = 7200.0
    stream_idle_sleep_s: float = 0.02
    # Lambda's SQS event source starts with five concurrent batches ("Lambda begins polling with
    # five concurrent batches", Lambda docs, "Scaling and processing" for SQS), fewer when capped.
    queue_receivers: int = 5
    lambda_processes: int = 2  # worker processes the functions run in (lambda_worker.py)
    lambda_concurrency: int = 32  # concurrent invocations per worker process
    # CHAT_TIMING: "fast" (no injected delays) or "aws" (each hop takes what it takes on AWS).
    timing: TimingProfile = field(default_factory=fast_profile)
    # CHAT_DATA_DIR (default .chat-data/): what survives a restart; None (CHAT_EPHEMERAL=1): memory only.
    data_dir: Path | None = None
    # LOCALSTACK_HOST: DynamoDB, Streams, SQS and S3 from that LocalStack instead of our emulators.
    localstack_host: str | None = None

    @classmethod
    def from_env(cls) -> LocalStackConfig:
        env = os.environ
        try:
            timing = profile_from_env(env)
        except ValueError as exc:
            raise SystemExit(str(exc)) from None
        return cls(
            port=int(env.get("CHAT_PORT", "8080")),
            jwt_secret=env.get(wiring.JWT_SECRET_ENV, "local-dev-secret"),
            idle_timeout_s=float(env.get("CHAT_IDLE_TIMEOUT_S", "600")),
            max_duration_s=float(env.get("CHAT_MAX_CONNECTION_S", "7200")),
            lambda_processes=int(env.get("CHAT_LAMBDA_PROCESSES", "2")),
            lambda_concurrency=timing.lambda_concurrency,
            timing=timing,
            data_dir=data_dir_from_env(env),
            localstack_host=localstack_host(env),
        )


def _report_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("%s stopped", task.get_name(), exc_info=task.exception())


class LocalStack:
    def __init__(self, config: LocalStackConfig) -> None:
        self.config = config
        self.children: list[ChildProcess] = []
        self.faults = Faults()
        self.gateway: Gateway | None = None
        self.invoker: Invoker | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._pollers: dict[str, StreamPoller | QueuePoller | SchedulePoller] = {}  # by the task's name
        self.push_log = ""
        self.endpoints: Endpoints | None = None
        self._lock = DataDirLock(config.data_dir) if config.data_dir else None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.config.port}/"

    def emulators(self) -> list[ChildProcess]:
        """The emulator processes to start: none with LocalStack; DynamoDB Local and moto, in
        memory or keeping their data under the data directory."""
        if self.config.localstack_host:
            return []
        data = self.config.data_dir
        return [dynamodb_local(data / "dynamodb" if data else None), moto_server(data)]

    async def start(self) -> None:
        ensure_port_free(self.config.port)
        if self._lock:
            self._lock.acquire()
        log.info("timing profile: %s; data: %s", self.config.timing.name, self.data_description())
        # Notifications to phones (moto's SNS) are appended here (local_stack/push_log.py).
        default_log = Path(tempfile.gettempdir()) / f"chat-push-{self.config.port}.jsonl"
        self.push_log = os.environ.setdefault(PUSH_LOG_ENV, str(default_log))
        self.children = self.emulators()
        await asyncio.gather(*(asyncio.to_thread(c.start) for c in self.children))
        if self.config.localstack_host:
            self.endpoints = Endpoints.localstack(self.config.localstack_host)
        else:
            ddb_local, moto = self.children
            self.endpoints = Endpoints.emulators(ddb_local.url, moto.url)
        self._point_functions_at(self.endpoints)
        services = ("dynamodb", "dynamodbstreams", "sqs", "s3", "sns")
        ddb, streams, sqs, s3, sns = (self.endpoints.client(service, REGION) for service in services)
        kept_tables: set[str] = set()
        os.environ.update(await asyncio.to_thread(bootstrap, ddb, sqs, s3, kept_tables))
        platforms = await asyncio.to_thread(create_push_platforms, sns)
        os.environ[wiring.PUSH_PLATFORMS_ENV] = json.dumps(platforms)
        if "push" in kept_tables and not self.config.localstack_host:
            push_table = os.environ[wiring.table("push").env_var]
            restored = await asyncio.to_thread(restore_push_endpoints, ddb, sns, push_table, platforms)
            log.info("push endpoints of %d kept registrations made again", restored)

        timing = self.config.timing
        # After the environment is final: the workers start with it.
        self.invoker = Invoker(self.config.lambda_processes, self.config.lambda_concurrency, timing=timing)
        self.gateway = Gateway(
            self.invoker,
            self.config.idle_timeout_s,
            self.config.max_duration_s,
            timing=timing,
            faults=self.faults,
        )
        self.gateway.extra_routes = [
            web.get("/_local/stats", self._stats),
            web.post("/_local/stats/reset", self._reset_stats),
            web.post("/_local/faults", self._set_fault),
            web.post("/_local/frames", self._track_frames),
            web.get("/_local/frames", self._tracked_frames),
            web.delete("/_local/faults", self._clear_faults),
            web.post("/_local/restart", self._restart),
            web.post("/_local/schedule", self._fire_schedule),
        ]
        for fn in wiring.FUNCTIONS:
            if isinstance(fn.trigger, wiring.StreamTrigger):
                data = self.config.data_dir
                stream_poller = StreamPoller(
                    self.invoker,
                    fn,
                    fn.trigger,
                    ddb,
                    streams,
                    self.config.stream_idle_sleep_s,
                    timing,
                    checkpoints=CheckpointFile(data / "checkpoints" / f"{fn.name}.json") if data else None,
                    # A kept table's records before now were handled by an earlier run.
                    start_at_latest=fn.trigger.table in kept_tables,
                )
                await stream_poller.prepare()  # before the gateway serves: nothing written is missed
                poller: StreamPoller | QueuePoller | SchedulePoller = stream_poller
            elif isinstance(fn.trigger, wiring.QueueTrigger):
                url = os.environ[wiring.queue(fn.trigger.queue).env_var]
                receivers = min(
                    self.config.queue_receivers, fn.trigger.max_concurrency or self.config.queue_receivers
                )
                poller = QueuePoller(self.invoker, fn, fn.trigger, sqs, url, receivers, timing=timing)
            elif isinstance(fn.trigger, wiring.ScheduleTrigger):
                poller = SchedulePoller(self.invoker, fn, fn.trigger)
            else:
                continue
            self._pollers[f"poller-{fn.name}"] = poller
            self._start_poller(f"poller-{fn.name}")
        await self.gateway.start(self.config.port)

    def _start_poller(self, name: str) -> None:
        task = asyncio.create_task(self._pollers[name].run(), name=name)
        task.add_done_callback(_report_crash)
        self._tasks = [t for t in self._tasks if t.get_name() != name] + [task]

    async def _restart(self, request: web.Request) -> web.Response:
        """Restart the pollers (each resumes from its checkpoint: what was in flight comes again)
        and / or the gateway (every connection dropped with 1012, as a restarting endpoint does;
        clients reconnect). Tests and `make chaos` only."""
        assert self.gateway is not None
        spec = await request.json()
        dropped = 0
        if spec.get("pollers"):
            for task in self._tasks:
                task.remove_done_callback(_report_crash)
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            for name, poller in self._pollers.items():
                if isinstance(poller, StreamPoller):
                    poller.rewind()
                self._start_poller(name)
        if spec.get("gateway"):
            dropped = await self.gateway.drop_connections(1012, "Service restart")
        return web.json_response({"dropped": dropped})

    async def _fire_schedule(self, request: web.Request) -> web.Response:
        """Run a scheduled function now, as its schedule would at {"time": epoch s} (default now),
        with {"detail": {...}}; answers what it returned. Tests only."""
        spec = await request.json()
        poller = self._pollers.get(f"poller-{spec['function']}")
        if not isinstance(poller, SchedulePoller):
            return web.json_response({"error": f"{spec['function']} is not scheduled"}, status=404)
        result = await poller.fire(float(spec.get("time") or time.time()), spec.get("detail"))
        return web.json_response(result)

    def _point_functions_at(self, endpoints: Endpoints) -> None:
        """What Lambda's environment would hold, pointed at the emulators (no code branches)."""
        os.environ.update(
            {
                "AWS_DEFAULT_REGION": REGION,
                "AWS_REGION": REGION,
                "AWS_ACCESS_KEY_ID": "local",
                "AWS_SECRET_ACCESS_KEY": "local",
                "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
                **endpoints.function_env(),
                wiring.CALLBACK_URL_ENV: f"http://127.0.0.1:{self.config.port}",
                wiring.JWT_SECRET_ENV: self.config.jwt_secret,
                **wiring.FUNCTION_ENV,
                # No X-Ray daemon here (powertools also turns tracing off outside Lambda by itself).
                "POWERTOOLS_TRACE_DISABLED": "true",
            }
        )

    async def _stats(self, request: web.Request) -> web.Response:
        """The functions' AWS calls (counted in the workers), invocations, and the processes."""
        assert self.invoker is not None
        invoker = self.invoker
        workers = {f"lambda worker {n}": pid for n, pid in enumerate(invoker.pids(), 1)}
        return web.json_response(
            {
                **await invoker.call_stats(),
                "invocations": invoker.invocations,
                "functions": invoker.duration_summary(),
                "errors": invoker.errors,
                "timing": self.config.timing.name,
                "connections": len(self.gateway.connections) if self.gateway else 0,
                "pids": {
                    "gateway": os.getpid(),
                    **workers,
                    **{c.name: c.proc.pid for c in self.children if c.proc},
                },
            }
        )

    async def _reset_stats(self, request: web.Request) -> web.Response:
        if self.invoker:
            await self.invoker.control("reset")
            self.invoker.reset_stats()
        return web.json_response({})

    async def _track_frames(self, request: web.Request) -> web.Response:
        """Keep the write times of the MESSAGE frames of {"chatIds": [...]} (null: all chats)."""
        assert self.gateway is not None
        self.gateway.tap.track((await request.json()).get("chatIds"))
        return web.json_response({})

    async def _tracked_frames(self, request: web.Request) -> web.Response:
        assert self.gateway is not None
        writes = self.gateway.tap.writes
        return web.json_response(
            {
                chat: {seq: list(by_conn.values()) for seq, by_conn in seqs.items()}
                for chat, seqs in writes.items()
            }
        )

    async def _set_fault(self, request: web.Request) -> web.Response:
        """Inject a fault (local_stack/faults.py); tests only."""
        assert self.invoker is not None
        spec = await request.json()
        try:
            fault = Faults.parse(spec)
        except (ValueError, KeyError, TypeError) as exc:
            return web.json_response({"message": str(exc)}, status=400)
        if isinstance(fault, CrashFault):  # met inside a function: the workers hold those
            await self.invoker.inject_crash(spec)
        else:  # met by the gateway
            self.faults.set(spec)
        return web.json_response({})

    async def _clear_faults(self, request: web.Request) -> web.Response:
        assert self.invoker is not None
        fired = self.faults.clear() + sum(await self.invoker.control("clear_faults"))
        return web.json_response({"fired": fired})

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.gateway:
            await self.gateway.stop()
        if self.invoker:
            self.invoker.close()
        for child in self.children:
            await asyncio.to_thread(child.stop)
        if self._lock:
            self._lock.release()

    def status(self) -> dict[str, Any]:
        if self.config.localstack_host and self.endpoints:
            emulators = {"localstack": self.endpoints.urls["dynamodb"]}
        else:
            emulators = {c.name: c.url for c in self.children}
        return {**emulators, "push-log": self.push_log}

    def data_description(self) -> str:
        data = self.config.data_dir
        if self.config.localstack_host:
            kept = f"; stream checkpoints in {data}" if data else ""
            return f"LocalStack at {self.config.localstack_host} (its own persistence){kept}"
        return str(data) if data else "ephemeral (in memory)"
