"""Downloads through the media CDN: CloudFront signed URLs (canned policy: this one object, until
the expiry), signed with the private key of a key pair in the distribution's trusted key group.

The key (PEM, RSA) is read from Secrets Manager once per process, at the first URL, and kept; the
distribution serves the bucket through Origin Access Control and answers, like a presigned S3 GET,
`application/octet-stream` / `Content-Disposition: attachment` (its response headers policy).
"""

from __future__ import annotations

import datetime
import threading
import time
import urllib.parse
from typing import Any

from botocore.signers import CloudFrontSigner
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from chat_backend.dal.aws import client


class MediaCdn:
    def __init__(
        self, domain: str, key_pair_id: str, key_secret_arn: str, secrets: Any | None = None
    ) -> None:
        self.domain = domain
        self.key_pair_id = key_pair_id
        self.key_secret_arn = key_secret_arn
        self._secrets = secrets
        self._signer: CloudFrontSigner | None = None
        self._lock = threading.Lock()

    def presign_download(self, key: str, expires_s: int) -> str:
        """A signed GET of the object at `key`, valid for `expires_s` seconds from now."""
        url = f"https://{self.domain}/{urllib.parse.quote(key, safe='/')}"
        expires = datetime.datetime.fromtimestamp(int(time.time()) + expires_s, datetime.UTC)
        return self._cloudfront_signer().generate_presigned_url(url, date_less_than=expires)

    def _cloudfront_signer(self) -> CloudFrontSigner:
        with self._lock:
            if self._signer is None:
                key = _rsa_private_key(self._read_key())
                self._signer = CloudFrontSigner(
                    self.key_pair_id, lambda message: key.sign(message, padding.PKCS1v15(), hashes.SHA1())
                )
            return self._signer

    def _read_key(self) -> bytes:
        secrets = self._secrets or client("secretsmanager")
        value = secrets.get_secret_value(SecretId=self.key_secret_arn)
        return str(value["SecretString"]).encode()


def _rsa_private_key(pem: bytes) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("the media CDN signing key must be an RSA private key (PEM)")
    return key
