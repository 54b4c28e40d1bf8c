"""The shared Lambda layer: `chat_backend` plus its runtime dependencies, pinned by the lock file.

Bundled on this machine (no Docker): pip fetches the Linux/arm64 CPython 3.13 wheels whatever the
host is. Synth with bundling skipped (context `aws:cdk:bundling-stacks` = []) never calls pip.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import jsii
from aws_cdk import AssetHashType, BundlingOptions, DockerImage, ILocalBundling
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from chat_stack.runtime import (
    ARCHITECTURE,
    LAYER_PACKAGE_DIR,
    LOCK_FILE,
    PIP_PLATFORMS,
    PYPROJECT,
    PYTHON_VERSION,
    RUNTIME,
    RUNTIME_PROVIDED,
)

_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?")
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def layer_requirements(pyproject: Path = PYPROJECT, lock: Path = LOCK_FILE) -> list[str]:
    """pyproject's runtime dependencies (minus what Lambda provides), pinned to the lock's versions."""
    declared = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    pins = {
        _normalize(m[1]): m[2] for line in lock.read_text().splitlines() if (m := _PIN.match(line.strip()))
    }
    requirements = []
    for spec in declared:
        match = _REQUIREMENT.match(spec)
        if match is None:
            raise ValueError(f"unparsable dependency in {pyproject.name}: {spec!r}")
        name, extras = match[1], match[2] or ""
        if _normalize(name) in RUNTIME_PROVIDED:
            continue
        if _normalize(name) not in pins:
            raise ValueError(f"{name} is not pinned in {lock.name}: run `make lock`")
        requirements.append(f"{name}{extras}=={pins[_normalize(name)]}")
    return requirements


def _source_hash(requirements: list[str]) -> str:
    """Changes when the package's files, the lock or the target platform change; nothing else."""
    digest = hashlib.sha256()
    for part in (*requirements, PYTHON_VERSION, *PIP_PLATFORMS, LOCK_FILE.read_text()):
        digest.update(part.encode() + b"\0")
    files = (p for p in LAYER_PACKAGE_DIR.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    for path in sorted(files):
        digest.update(path.relative_to(LAYER_PACKAGE_DIR).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


@jsii.implements(ILocalBundling)
class PipLayerBundling:
    """Builds the layer's `python/` directory with pip on the host (CDK's Docker image is never used)."""

    def __init__(self, requirements: list[str]) -> None:
        self.requirements = requirements

    def try_bundle(self, output_dir: str, options: BundlingOptions) -> bool:
        target = Path(output_dir) / "python"
        platforms = [arg for platform in PIP_PLATFORMS for arg in ("--platform", platform)]
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-compile",  # the host's bytecode would be for the wrong Python
                *platforms,
                "--only-binary=:all:",
                "--python-version",
                PYTHON_VERSION,
                "--implementation",
                "cp",
                "--target",
                str(target),
                "--constraint",  # transitive dependencies at the lock's versions too
                str(LOCK_FILE),
                *self.requirements,
            ],
            check=True,
        )
        shutil.copytree(
            LAYER_PACKAGE_DIR,
            target / LAYER_PACKAGE_DIR.name,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        )
        return True


class SharedLayer(Construct):
    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        requirements = layer_requirements()
        self.layer = lambda_.LayerVersion(
            self,
            "Layer",
            code=lambda_.Code.from_asset(
                str(LAYER_PACKAGE_DIR.parent),
                asset_hash_type=AssetHashType.CUSTOM,
                asset_hash=_source_hash(requirements),
                bundling=BundlingOptions(
                    image=DockerImage.from_registry("dummy"),  # never pulled: local bundling always succeeds
                    local=PipLayerBundling(requirements),  # type: ignore[arg-type]  # jsii passes options positionally
                ),
            ),
            compatible_runtimes=[RUNTIME],
            compatible_architectures=[ARCHITECTURE],
            description=("chat_backend with " + ", ".join(requirements))[:256],  # CloudFormation's limit
        )
