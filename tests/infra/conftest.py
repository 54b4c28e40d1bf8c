"""Make the CDK app importable: `cdk/app.py` puts `layers/` on sys.path and picks a supported Node."""

import sys
from pathlib import Path

CDK_DIR = Path(__file__).resolve().parents[2] / "cdk"
sys.path.insert(0, str(CDK_DIR))

import app  # noqa: E402, F401  (imported for its path and Node setup)
