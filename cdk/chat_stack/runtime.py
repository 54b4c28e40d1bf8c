"""Where the code runs and where it comes from: shared by the layer bundling and every function."""

from pathlib import Path

from aws_cdk import aws_lambda as lambda_

REPO_ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS_DIR = REPO_ROOT / "functions"
LAYER_PACKAGE_DIR = REPO_ROOT / "layers" / "chat_backend"
PYPROJECT = REPO_ROOT / "pyproject.toml"
LOCK_FILE = REPO_ROOT / "requirements.lock"

RUNTIME = lambda_.Runtime.PYTHON_3_13
ARCHITECTURE = lambda_.Architecture.ARM_64
PYTHON_VERSION = RUNTIME.name.removeprefix("python")  # "3.13", for pip's --python-version
# manylinux2014 covers nearly every wheel; the python3.13 runtime (Amazon Linux 2023, glibc 2.34)
# also runs newer manylinux_2_x wheels, so pip may pick those when a project ships no 2014 wheel.
PIP_PLATFORMS = ("manylinux2014_aarch64", "manylinux_2_34_aarch64")

# Packages the Lambda runtime already provides: never shipped in the layer.
RUNTIME_PROVIDED = frozenset({"boto3", "botocore"})
