"""moto server, as `python -m moto.server`, with one speed fix for SQS and, with `--data-dir`,
its S3 objects and queued messages kept on disk (local_stack/moto_persistence.py).

moto's SQS computes queue attributes (approximate counts over every message) several times per
SendMessage, calling a datetime-based clock per message each time: a FIFO queue with a few hundred
messages then takes ~70 ms per message. The clock is swapped for `time.time`, which gives the same
values (seconds since the epoch) at a fraction of the cost; nothing else changes.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from moto.sqs import models as sqs_models
from werkzeug.serving import make_server

from local_stack import push_log
from local_stack.moto_persistence import MotoStore


def _unix_time(dt: datetime | None = None) -> float:
    return time.time() if dt is None else _moto_unix_time(dt)


def _unix_time_millis(dt: datetime | None = None) -> float:
    return _unix_time(dt) * 1000.0


_moto_unix_time = sqs_models.unix_time


def _exit(signum: int, frame: Any) -> None:
    sys.exit(0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m local_stack.moto_server")
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=5000)
    parser.add_argument("--data-dir", type=Path, help="keep S3 objects and queued messages here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    sqs_models.unix_time = _unix_time  # type: ignore[assignment]
    sqs_models.unix_time_millis = _unix_time_millis  # type: ignore[assignment]
    push_log.install()  # notifications to phones land in CHAT_PUSH_LOG
    app: Any = DomainDispatcherApplication(create_backend_app)
    if args.data_dir is not None:
        store = MotoStore(args.data_dir)
        store.install()
        loaded = store.load_s3()  # before serving
        logging.getLogger("local_stack.moto").info("%d S3 objects loaded from %s", loaded, args.data_dir)
        app = store.wsgi(app)
    signal.signal(signal.SIGTERM, _exit)
    signal.signal(signal.SIGINT, _exit)
    # werkzeug's server sets SO_REUSEADDR (socketserver's allow_reuse_address).
    server = make_server(args.host, args.port, app, threaded=True, request_handler=MotoRequestHandler)
    server.serve_forever()


if __name__ == "__main__":
    main()
