"""What every function's environment holds besides its resources' names, on AWS and locally alike."""

from __future__ import annotations

# Tracing never records a handler's response: answers carry presigned URLs, member lists and heads.
FUNCTION_ENV: dict[str, str] = {
    "POWERTOOLS_SERVICE_NAME": "chat",
    "POWERTOOLS_METRICS_NAMESPACE": "Chat",
    "POWERTOOLS_TRACER_CAPTURE_RESPONSE": "false",
}
CALLBACK_URL_ENV = "WS_CALLBACK_URL"  # the @connections management endpoint
JWT_SECRET_ENV = "CHAT_JWT_SECRET"  # local HS256 secret (the local stack only)
JWKS_URL_ENV = "CHAT_JWKS_URL"  # Cognito JWKS (AWS)
JWT_ISSUER_ENV = "CHAT_JWT_ISSUER"
JWT_AUDIENCE_ENV = "CHAT_JWT_AUDIENCE"
# For the functions using the media CDN's key (wiring.SECRETS): the distribution's domain, and the
# id of the CloudFront public key its signed URLs name.
MEDIA_CDN_DOMAIN_ENV = "MEDIA_CDN_DOMAIN"
MEDIA_CDN_KEY_PAIR_ID_ENV = "MEDIA_CDN_KEY_PAIR_ID"
# JSON {platform: SNS platform application ARN} for the functions that send_push (CDK context on
# AWS; applications made in moto locally). A platform not named cannot be registered.
PUSH_PLATFORMS_ENV = "CHAT_PUSH_PLATFORMS"
PUSH_PLATFORMS = ("apns", "apns_sandbox", "fcm")
