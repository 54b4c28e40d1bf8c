"""The Cognito user pool whose tokens the `$connect` authorizer accepts: created by the stack, or an
existing one passed as context (`userPoolId`, `userPoolClientId`)."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_cognito as cognito
from constructs import Construct

from chat_backend import wiring
from chat_stack.nag import acknowledge
from chat_stack.settings import ExistingUserPool

# Users sign in with the SDK / CLI: SRP normally; the password flows serve admin tooling and the e2e suite.
AUTH_FLOWS = cognito.AuthFlow(admin_user_password=True, user_password=True, user_srp=True)
PASSWORD_POLICY = cognito.PasswordPolicy(
    min_length=12,
    require_lowercase=True,
    require_uppercase=True,
    require_digits=True,
    require_symbols=True,
    temp_password_validity=Duration.days(3),
)


class Users(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, existing: ExistingUserPool | None) -> None:
        super().__init__(scope, construct_id)
        self.pool: cognito.IUserPool
        self.client: cognito.IUserPoolClient
        if existing is not None:
            self.pool = cognito.UserPool.from_user_pool_id(self, "Pool", existing.user_pool_id)
            self.client = cognito.UserPoolClient.from_user_pool_client_id(self, "Client", existing.client_id)
            return
        pool = cognito.UserPool(
            self,
            "Pool",
            self_sign_up_enabled=False,
            sign_in_aliases=cognito.SignInAliases(username=True),
            password_policy=PASSWORD_POLICY,
            # Users may enrol an authenticator app; the password flows must work without a challenge.
            mfa=cognito.Mfa.OPTIONAL,
            mfa_second_factor=cognito.MfaSecondFactor(otp=True, sms=False),
            account_recovery=cognito.AccountRecovery.NONE,
            deletion_protection=True,
            removal_policy=RemovalPolicy.RETAIN,  # accounts are user data
        )
        acknowledge(
            pool,
            "AwsSolutions-COG2",
            "MFA is optional (TOTP): the SDK, the CLI and the e2e suite sign in with a password "
            "flow that must not get an MFA challenge; users may enrol an authenticator app.",
        )
        acknowledge(
            pool,
            "AwsSolutions-COG3",
            "Threat protection (advanced security) needs the Plus feature plan, billed per "
            "monthly active user; sign-up is closed (admin-created users only).",
        )
        acknowledge(
            pool,
            "AwsSolutions-COG8",
            "The Essentials feature plan: the Plus plan's threat protection is not used (see COG3).",
        )
        self.pool = pool
        self.client = pool.add_client(
            "Client",
            auth_flows=AUTH_FLOWS,
            generate_secret=False,  # public client: the SDK and CLI run on users' machines
            prevent_user_existence_errors=True,
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
