"""The CDK CLI that `make bootstrap / deploy / destroy` runs: the one pinned in package.json, and able to
read the cloud assembly that the aws-cdk-lib pinned in requirements.lock writes (a lib whose assembly
schema is newer than the CLI's fails here rather than on the day of a deploy)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

from aws_cdk.cx_api import CloudAssembly

from tests.infra.conftest import REPO_ROOT

CDK_CLI = REPO_ROOT / "node_modules" / ".bin" / "cdk"


def test_make_runs_the_cdk_cli_pinned_with_the_other_npm_dependencies():
    # Given package.json, its lock, what `npm ci` installed and the Makefile
    pinned = json.loads((REPO_ROOT / "package.json").read_text())["dependencies"]["aws-cdk"]
    locked = json.loads((REPO_ROOT / "package-lock.json").read_text())["packages"]["node_modules/aws-cdk"]
    installed = json.loads((REPO_ROOT / "node_modules" / "aws-cdk" / "package.json").read_text())
    makefile = (REPO_ROOT / "Makefile").read_text().splitlines()
    # Then the CLI is pinned to one exact 2.x version, locked and installed as such
    assert re.fullmatch(r"2\.\d+\.\d+", pinned), pinned
    assert locked["version"] == installed["version"] == pinned
    # And make runs that binary, not whatever npx finds newest
    assert "CDK := node_modules/.bin/cdk" in makefile
    assert not [line for line in makefile if "npx" in line]


def test_the_pinned_cdk_cli_reads_the_assembly_the_pinned_lib_writes(
    stack: Any, synthesis: tuple[CloudAssembly | None, list[dict[str, Any]]], tmp_path: Path
):
    # Given the cloud assembly synthesized by the session's app
    assembly, _ = synthesis
    assert assembly is not None, "synth failed: see the cdk-nag test"
    # When the pinned CLI lists its stacks (no AWS: no instance metadata, notices or telemetry)
    env = {**os.environ, "AWS_EC2_METADATA_DISABLED": "true", "CDK_DISABLE_CLI_TELEMETRY": "true"}
    listing = subprocess.run(
        [str(CDK_CLI), "ls", "--no-notices", "--app", assembly.directory],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    # Then it accepts the assembly's schema version and names the stack
    assert listing.returncode == 0, listing.stdout + listing.stderr
    assert "schema version mismatch" not in listing.stdout + listing.stderr
    assert listing.stdout.split() == [stack.stack_name]
