"""One device's Olm account and its pairwise Olm sessions with other devices (vodozemac), kept in
its DeviceStore. Olm carries key material only (Megolm session keys); messages go by Megolm.

Keys published (`publishKeys`): the account's curve25519 identity key, its fallback key as the
signed prekey (signed with the account's ed25519 key) and one-time keys. vodozemac names a key by
a base64 u64; the protocol by a u32, which these stay far below.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import vodozemac

from chat_client.crypto.store import DeviceStore

ONE_TIME_KEYS_TARGET = 50  # what the account keeps published (vodozemac holds at most 100)


@dataclass(frozen=True)
class OlmCiphertext:
    """An Olm message: type 0 (pre-key) or 1, and its bytes."""

    message_type: int
    body: bytes


class OlmError(Exception):
    """An Olm message that does not decrypt (no session for it, a reused one-time key, damage)."""


class OlmDevice:
    def __init__(self, store: DeviceStore) -> None:
        self.store = store
        state = store.load() or {}
        key = store.pickle_key
        self.account = (
            vodozemac.Account.from_pickle(state["account"], key)
            if "account" in state
            else vodozemac.Account()
        )
        # Sessions by the peer device's curve25519 key, newest last (a peer may have made a new one).
        self.sessions: dict[str, list[vodozemac.Session]] = {
            peer: [vodozemac.Session.from_pickle(p, key) for p in pickles]
            for peer, pickles in state.get("sessions", {}).items()
        }
        # Pickles of the sessions not used since they were last saved: a save re-pickles only
        # the peers whose sessions moved (a sender with a session per member of a big group).
        self._pickled: dict[str, list[str]] = dict(state.get("sessions", {}))
        self.extra: dict[str, Any] = state.get("extra", {})  # what other layers keep in the store
        self.inbound_sessions_started = 0  # since this process began: each used up a one-time key
        if "account" not in state:
            self.save()

    @property
    def identity_key(self) -> str:
        return str(self.account.curve25519_key.to_base64())

    @property
    def signing_key(self) -> str:
        return str(self.account.ed25519_key.to_base64())

    def save(self) -> None:
        key = self.store.pickle_key
        self.store.save(
            {
                "account": self.account.pickle(key),
                "sessions": self._session_pickles(),
                "extra": self.extra,
            }
        )

    def _session_pickles(self) -> dict[str, list[str]]:
        key = self.store.pickle_key
        for peer, sessions in self.sessions.items():
            if peer not in self._pickled:
                self._pickled[peer] = [s.pickle(key) for s in sessions]
        return self._pickled

    def publish_keys_frame(
        self, one_time_keys: int = ONE_TIME_KEYS_TARGET, rotate_fallback: bool = False
    ) -> dict[str, Any]:
        """A publishKeys frame with `one_time_keys` new one-time keys (the server says how many
        unused ones it holds: top up by the difference) and the signed prekey: the account's
        fallback key, made anew when there is none yet or `rotate_fallback` (vodozemac still
        accepts the previous one, for sessions begun with it in flight). The keys are marked
        published, and the account saved, before the frame goes out: a key published twice is
        harmless, one never published but marked so is lost."""
        if one_time_keys > 0:
            self.account.generate_one_time_keys(one_time_keys)
        signed = self.extra.get("signedPreKey")
        if signed is None or rotate_fallback:
            # vodozemac's type stubs leave the fallback key out (it is there at runtime).
            account: Any = self.account
            account.generate_fallback_key()
            fallback_id, fallback = next(iter(account.fallback_key.items()))
            fallback_b64 = fallback.to_base64()
            signed = {
                "keyId": _key_id(fallback_id),
                "publicKey": fallback_b64,
                "signature": self.account.sign(fallback_b64.encode()).to_base64(),
            }
            self.extra["signedPreKey"] = signed
        otks = self.account.one_time_keys
        frame = {
            "action": "publishKeys",
            "identityKey": self.identity_key,
            "signingKey": self.signing_key,
            "signedPreKey": dict(signed),
            "oneTimePreKeys": [{"keyId": _key_id(i), "publicKey": k.to_base64()} for i, k in otks.items()],
        }
        self.account.mark_keys_as_published()
        self.save()
        return frame

    def encrypt(
        self, peer_identity_key: str, one_time_key: str | None, plaintext: bytes, save: bool = True
    ) -> OlmCiphertext:
        """Encrypt for a peer device: on our newest session with it, else a new one started from
        the key it published (its one-time key, or its signed fallback key when none was left)."""
        sessions = self.sessions.get(peer_identity_key)
        if not sessions:
            if one_time_key is None:
                raise OlmError("no session with this device and no key to start one")
            session = self.account.create_outbound_session(
                vodozemac.Curve25519PublicKey.from_base64(peer_identity_key),
                vodozemac.Curve25519PublicKey.from_base64(one_time_key),
            )
            sessions = self.sessions.setdefault(peer_identity_key, [session])
        message = sessions[-1].encrypt(plaintext)
        self._pickled.pop(peer_identity_key, None)
        if save:  # False: the caller saves once after a batch (a rotation to many devices)
            self.save()
        message_type, body = message.to_parts()
        return OlmCiphertext(message_type, bytes(body))

    def decrypt(self, peer_identity_key: str, ciphertext: OlmCiphertext) -> bytes:
        """Decrypt a peer device's Olm message: on a session we have with it, else (a pre-key
        message) on a new inbound one, which uses up the one-time key it names."""
        message = vodozemac.AnyOlmMessage.from_parts(ciphertext.message_type, ciphertext.body)
        for session in reversed(self.sessions.get(peer_identity_key, [])):
            try:
                plaintext = bytes(session.decrypt(message))
            except vodozemac.OlmDecryptionException:
                continue
            self._pickled.pop(peer_identity_key, None)
            self.save()
            return plaintext
        pre_key = message.to_pre_key()
        if pre_key is None:
            raise OlmError("an Olm message for a session this device does not have")
        try:
            session, plaintext = self.account.create_inbound_session(
                vodozemac.Curve25519PublicKey.from_base64(peer_identity_key), pre_key
            )
        except (vodozemac.SessionCreationException, vodozemac.KeyException) as exc:
            raise OlmError(f"the pre-key message does not start a session: {exc}") from exc
        self.sessions.setdefault(peer_identity_key, []).append(session)
        self._pickled.pop(peer_identity_key, None)
        self.inbound_sessions_started += 1
        self.save()
        return bytes(plaintext)


def _key_id(vodozemac_id: str) -> int:
    return int.from_bytes(unpadded_b64decode(vodozemac_id), "big") % 2**32


def unpadded_b64decode(value: str) -> bytes:
    """vodozemac writes base64 without padding."""
    return base64.b64decode(value + "=" * (-len(value) % 4))


def signed_prekey(device: dict[str, Any]) -> str | None:
    """The public key of a listed device's signed prekey (a DEVICES entry), when its signature
    checks against the device's ed25519 `signingKey`; None otherwise (a device without a signing
    key, or a forged prekey): such a device is reached only through a claimed one-time key."""
    try:
        signed = device["signedPreKey"]
        vodozemac.Ed25519PublicKey.from_base64(device["signingKey"]).verify_signature(
            signed["publicKey"].encode(), vodozemac.Ed25519Signature.from_base64(signed["signature"])
        )
        return str(signed["publicKey"])
    except (KeyError, TypeError, AttributeError, vodozemac.KeyException, vodozemac.SignatureException):
        return None
