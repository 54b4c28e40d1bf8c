"""The CDK app, synthesized once per session and shared by every infra test.

`cdk/app.py` is imported first: it puts `layers/` on sys.path and picks a supported Node.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

REPO_ROOT = Path(__file__).resolve().parents[2]
CDK_DIR = REPO_ROOT / "cdk"
sys.path.insert(0, str(CDK_DIR))

import app  # noqa: E402, F401  (imported for its path and Node setup)
from aws_cdk import App  # noqa: E402
from aws_cdk.assertions import Template  # noqa: E402
from aws_cdk.cx_api import CloudAssembly  # noqa: E402
from chat_stack import ChatStack, build  # noqa: E402

STAGE = "test"
SKIP_BUNDLING = {"aws:cdk:bundling-stacks": []}  # no pip: the layer is not built
CFN_LINT = str(Path(sys.executable).parent / "cfn-lint")  # the venv's, beside this Python
# The media CDN's key pair as a deployer gives it: the public half as context, the private half
# only in Secrets Manager (here a made-up ARN: synth reads nothing from AWS).
MEDIA_CDN_PUBLIC_KEY = (
    rsa.generate_private_key(public_exponent=65537, key_size=2048)
    .public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)
MEDIA_CDN_KEY_SECRET_ARN = (
    "arn:aws:secretsmanager:eu-west-1:123456789012:secret:chat-test/media-cdn-key-AbC123"
)
MEDIA_CDN = {"mediaCdnPublicKey": MEDIA_CDN_PUBLIC_KEY, "mediaCdnKeySecretArn": MEDIA_CDN_KEY_SECRET_ARN}
# Mobile push: the SNS platform applications a deployer made (made-up ARNs: synth reads nothing).
PUSH_APNS_ARN = "arn:aws:sns:eu-west-1:123456789012:app/APNS/chat-test-apns"
PUSH_FCM_ARN = "arn:aws:sns:eu-west-1:123456789012:app/GCM/chat-test-fcm"
PUSH = {"pushApnsArn": PUSH_APNS_ARN, "pushFcmArn": PUSH_FCM_ARN}


@pytest.fixture(scope="session")
def app_run() -> Iterator[tuple[subprocess.Popen[str], float]]:
    """`python app.py` run the way `make synth` runs it (from cdk/), with layer bundling skipped.
    Started before the in-process synth so that the two overlap."""
    env = {k: v for k, v in os.environ.items() if k not in ("CDK_OUTDIR", "CDK_CONTEXT_JSON")}
    env["CDK_SKIP_BUNDLING"] = "1"
    started = time.time()
    with subprocess.Popen(
        [sys.executable, "app.py"],
        cwd=CDK_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        yield process, started
        if process.poll() is None:
            process.kill()


@pytest.fixture(scope="session")
def stack(app_run: tuple[subprocess.Popen[str], float]) -> ChatStack:
    return build(App(context={**SKIP_BUNDLING, "stage": STAGE, **MEDIA_CDN, **PUSH}))


@pytest.fixture(scope="session")
def synthesis(stack: ChatStack) -> tuple[CloudAssembly | None, list[dict[str, Any]]]:
    """The app synthesized, cdk-nag's AwsSolutions checks included: (assembly or None if a check
    failed, the violations of cdk's validation report)."""
    app_ = stack.node.root
    assert isinstance(app_, App)
    try:
        assembly: CloudAssembly | None = app_.synth()
    except RuntimeError as error:
        if "Validation failed" not in str(error):
            raise
        assembly = None
    report_file = Path(app_.outdir) / "validation-report.json"
    report = json.loads(report_file.read_text()) if report_file.exists() else {"pluginReports": []}
    return assembly, [v for plugin in report["pluginReports"] for v in plugin["violations"]]


@pytest.fixture(scope="session")
def cfn_lint_run(
    stack: ChatStack, synthesis: tuple[CloudAssembly | None, list[dict[str, Any]]]
) -> Iterator[subprocess.Popen[str]]:
    """cfn-lint on the synthesized template, started as soon as it exists; errors only fail it
    (CDK output always has W3005 warnings)."""
    assembly, _ = synthesis
    assert assembly is not None, "synth failed: see the cdk-nag test"
    template_file = assembly.get_stack_by_name(stack.stack_name).template_full_path
    with subprocess.Popen(
        [CFN_LINT, "--non-zero-exit-code", "error", "--", template_file],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as process:
        yield process
        if process.poll() is None:
            process.kill()


@pytest.fixture(scope="session")
def template(stack: ChatStack, cfn_lint_run: subprocess.Popen[str]) -> Template:
    return Template.from_stack(stack)


@pytest.fixture(scope="session")
def resources(template: Template) -> dict[str, Any]:
    return template.to_json()["Resources"]
