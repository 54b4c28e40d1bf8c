"""Logging of the local stack's processes (the gateway's and every Lambda worker's)."""

from __future__ import annotations

import logging
import os
import sys
import warnings

from jwt.warnings import InsecureKeyLengthWarning


def configure_logging() -> None:
    """One line per event on stderr at CHAT_LOG_LEVEL; botocore only when it warns."""
    logging.basicConfig(
        level=os.environ.get("CHAT_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("botocore").setLevel(logging.WARNING)
    # The protocol's default local secret is short; that is a local-only, documented choice.
    warnings.filterwarnings("ignore", category=InsecureKeyLengthWarning)
