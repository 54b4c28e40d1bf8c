"""Token verification for the $connect authorizer: HS256 locally, the issuer's JWKS on AWS."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any, cast

import jwt
from jwt.types import Options

from chat_backend.errors import Unauthorized
from chat_backend.models.common import SYSTEM_SENDER

ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
DEFAULT_DEVICE = "default"


@dataclass(frozen=True)
class Identity:
    user_id: str
    device_id: str


class TokenVerifier:
    def __init__(
        self,
        secret: str | None = None,
        jwks_url: str | None = None,
        issuer: str | None = None,
        audience: str | None = None,
    ) -> None:
        if not secret and not jwks_url:
            raise ValueError("a token verifier needs a secret (local) or a JWKS URL (AWS)")
        self.secret = secret
        self.jwks = jwt.PyJWKClient(jwks_url, cache_keys=True) if jwks_url else None
        self.issuer = issuer
        self.audience = audience

    def verify(self, token: str | None, device_param: str | None = None) -> Identity:
        """The token's identity. The device is the token's `device` claim when it has one (local
        tokens do), else `device_param` (the `device` query-string parameter of the connection),
        else "default"; a device id that is not `[A-Za-z0-9_-]{1,64}` is refused.

        Taking the device from the query string is safe: Cognito ID tokens carry no `device` claim,
        and the user is still authenticated by the token alone (`sub`, signature, expiry). A device
        id only tells that user's own connections apart (which one to skip as the sender, each
        one's cursor); whatever a client names it, it reaches no other user's data and acts as no
        one but the token's user. A claim, when present, wins, so a token bound to a device stays so.
        """
        return identity_of(self.claims(token), device_param)

    def claims(self, token: str | None) -> dict[str, Any]:
        """The token's claims once its signature, expiry (and issuer, audience when configured) are
        verified: what API Gateway's JWT authorizer checks before an HTTP API route runs."""
        if not token:
            raise Unauthorized("missing token")
        options = cast(Options, {"require": ["sub", "exp"], "verify_aud": self.audience is not None})
        try:
            if self.jwks is not None:
                key = self.jwks.get_signing_key_from_jwt(token).key
                return jwt.decode(
                    token,
                    key,
                    algorithms=["RS256"],
                    issuer=self.issuer,
                    audience=self.audience,
                    options=options,
                )
            return jwt.decode(token, self.secret or "", algorithms=["HS256"], options=options)
        except (jwt.PyJWTError, ValueError) as exc:  # ValueError: not even text (a lone surrogate)
            raise Unauthorized(f"invalid token: {exc}"[:200]) from exc


def identity_of(claims: dict[str, Any], device_param: str | None = None) -> Identity:
    """The identity verified claims name: the user is `sub`; the device is the `device` claim, else
    `device_param`, else "default" (TokenVerifier.verify says why that is safe)."""
    user_id = claims.get("sub")
    device_id = claims.get("device", DEFAULT_DEVICE if device_param is None else device_param)
    if not isinstance(user_id, str) or not ID_PATTERN.fullmatch(user_id) or user_id == SYSTEM_SENDER:
        raise Unauthorized("token sub is not a valid user id")
    if not isinstance(device_id, str) or not ID_PATTERN.fullmatch(device_id):
        raise Unauthorized("the device (token claim or `device` parameter) is not a valid device id")
    return Identity(user_id=user_id, device_id=device_id)


def mint_local_token(secret: str, user_id: str, device_id: str, ttl_s: int = 24 * 3600) -> str:
    """A local-stack token (HS256), as tests and the `chat` CLI make them."""
    now = int(time.time())
    return jwt.encode({"sub": user_id, "device": device_id, "iat": now, "exp": now + ttl_s}, secret, "HS256")
