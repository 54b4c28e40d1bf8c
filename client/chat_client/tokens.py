"""Local-stack tokens: HS256 JWTs the local gateway accepts (on AWS, Cognito issues them)."""

from __future__ import annotations

import time
import warnings

import jwt

DEFAULT_SECRET = "local-dev-secret"


def mint_token(user_id: str, device_id: str, secret: str = DEFAULT_SECRET, ttl_s: int = 86400) -> str:
    """An HS256 JWT with claims ``sub`` (user), ``device``, ``iat`` and ``exp``."""
    now = int(time.time())
    claims = {"sub": user_id, "device": device_id, "iat": now, "exp": now + int(ttl_s)}
    with warnings.catch_warnings():
        # The protocol's local default secret is shorter than RFC 7518 recommends; it is a dev secret.
        warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)
        return jwt.encode(claims, secret, algorithm="HS256")


def token_identity(token: str) -> tuple[str | None, str | None]:
    """(userId, deviceId) read from a JWT without verifying it (the server verifies; we only label).

    Returns (None, None) for a token that is not a readable JWT.
    """
    try:
        claims = jwt.decode(token, options={"verify_signature": False, "verify_exp": False})
    except jwt.PyJWTError:
        return None, None
    sub, device = claims.get("sub"), claims.get("device")
    return (sub if isinstance(sub, str) else None, device if isinstance(device, str) else None)
