"""The Cognito user pool whose tokens the `$connect` authorizer accepts."""

from __future__ import annotations

from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_cognito as cognito
from constructs import Construct

from chat_backend import wiring


class Users(Construct):
    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.pool = cognito.UserPool(
            self,
            "Pool",
            self_sign_up_enabled=False,
            sign_in_aliases=cognito.SignInAliases(username=True),
            password_policy=cognito.PasswordPolicy(min_length=12),
            removal_policy=RemovalPolicy.RETAIN,  # accounts are user data
        )
        self.client = self.pool.add_client(
            "Client",
            auth_flows=cognito.AuthFlow(user_srp=True),
            generate_secret=False,  # public client: the SDK and CLI run on users' machines
        )

    @property
    def issuer(self) -> str:
        # The `iss` claim of the pool's tokens; the JWKS sits under it.
        stack = Stack.of(self)
        return f"https://cognito-idp.{stack.region}.{stack.url_suffix}/{self.pool.user_pool_id}"

    @property
    def jwks_url(self) -> str:
        return f"{self.issuer}/.well-known/jwks.json"

    def verifier_env(self) -> dict[str, str]:
        """What the authorizer needs to verify the pool's ID tokens (their `aud` is the client id)."""
        return {
            wiring.JWKS_URL_ENV: self.jwks_url,
            wiring.JWT_ISSUER_ENV: self.issuer,
            wiring.JWT_AUDIENCE_ENV: self.client.user_pool_client_id,
        }
