"""The gateway's Ed25519 key, and where a record's signature travels.

Every record is signed by the gateway that made it, so central can tell a record this
gateway published from one any other broker client published in its name. The rule is
byte-exact, so a verifier needs nothing but the payload bytes and the public key:

- the gateway serialises the envelope as before (compact JSON, ``prev`` last) and signs
  :data:`RECORD_CONTEXT` followed by exactly those bytes (Ed25519, RFC 8032);
- the published payload is those bytes with their closing ``}`` replaced by
  ``,"sig":"<signature, standard base64, 88 characters>"}``;
- so a verifier strips the final ``,"sig":"…"`` member (the last 98 bytes before the
  closing brace) and checks the signature over what is left, plus the brace.

``prev`` is the SHA-256 of the previous payload as published, signature included, so
the hash chain also covers the signatures. Why in the payload and not in an MQTT 5 user
property: central systems store payloads (databases, files, archives) and bridges or
MQTT 3.1.1 hops drop properties; evidence must carry its proof wherever its bytes go.

The key: a configured PEM file (``gateway.signing_key``), else a systemd credential
``signing-key`` (``LoadCredential=signing-key:/etc/…``), else
``{data_dir}/signing-key.pem``, generated at first start with mode 0600. The public key
is kept next to it in ``signing-key.pub`` (readable by technicians:
``gatewayctl keys show``) and published retained on ``{root}/key``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.errors import ConfigError
from gateway.statefile import StateFile

RECORD_CONTEXT = b"customs-edge-gateway record/1\x00"
"""Prefixed to the unsigned envelope before signing, so no other signed message of this
key can pass for a record."""

SIG_OPEN = b',"sig":"'
SIG_CHARS = 88  # base64 of 64 bytes, with its "==" padding
SIG_SUFFIX_BYTES = len(SIG_OPEN) + SIG_CHARS + 2  # the member and the closing '"}'

DEFAULT_KEY_NAME = "signing-key.pem"
PUBLIC_KEY_NAME = "signing-key.pub"
CREDENTIAL_NAME = "signing-key"
KEY_SCHEMA = "key/1"


def fingerprint(public_raw: bytes) -> str:
    """How a public key is named for enrolment: SHA-256 of its 32 raw bytes, hex."""
    return hashlib.sha256(public_raw).hexdigest()


def public_key_from_text(text: str) -> Ed25519PublicKey:
    """A public key given as base64 of its 32 raw bytes, a PEM, or a ``key/1`` message.

    Raises ``ValueError`` with what was wrong.
    """
    text = text.strip()
    if text.startswith("{"):
        message = json.loads(text)
        if not isinstance(message, dict) or message.get("schema") != KEY_SCHEMA:
            raise ValueError(f"a JSON key must be a {KEY_SCHEMA} message")
        text = str(message.get("public_key", ""))
    if text.startswith("-----BEGIN"):
        key = serialization.load_pem_public_key(text.encode())
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("the PEM public key is not an Ed25519 key")
        return key
    try:
        raw = base64.b64decode(text, validate=True)
    except binascii.Error:
        raise ValueError("a public key is base64 of 32 bytes, a PEM, or a key/1 message") from None
    if len(raw) != 32:  # RFC 8032 §5.1.5: an Ed25519 public key is 32 bytes
        raise ValueError(f"an Ed25519 public key is 32 bytes, this is {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


def public_raw(key: Ed25519PublicKey) -> bytes:
    """The 32 raw bytes of a public key."""
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def split_signed(payload: bytes) -> tuple[bytes, bytes] | None:
    """(the bytes that were signed without the context, the signature), or ``None``.

    ``None`` when the payload does not end with a ``sig`` member of the right form.
    """
    if len(payload) < SIG_SUFFIX_BYTES + 2 or not payload.endswith(b'"}'):
        return None
    start = len(payload) - SIG_SUFFIX_BYTES
    if payload[start : start + len(SIG_OPEN)] != SIG_OPEN:
        return None
    encoded = payload[start + len(SIG_OPEN) : -2]
    try:
        signature = base64.b64decode(encoded, validate=True)
    except binascii.Error:
        return None
    return payload[:start] + b"}", signature


def signature_valid(payload: bytes, key: Ed25519PublicKey) -> bool | None:
    """``True`` if signed by ``key``, ``False`` if signed otherwise, ``None`` if unsigned."""
    parts = split_signed(payload)
    if parts is None:
        return None
    signed, signature = parts
    try:
        key.verify(signature, RECORD_CONTEXT + signed)
    except InvalidSignature:
        return False
    return True


@dataclass(frozen=True, slots=True)
class RecordSigner:
    """Signs envelopes with the gateway's private key."""

    private: Ed25519PrivateKey
    path: Path
    """Where the private key was loaded from (shown to technicians, never its bytes)."""

    @property
    def public_raw(self) -> bytes:
        """The 32 raw bytes of the public key."""
        return public_raw(self.private.public_key())

    @property
    def public_b64(self) -> str:
        """The public key as published: standard base64 of its raw bytes."""
        return base64.b64encode(self.public_raw).decode()

    @property
    def fingerprint(self) -> str:
        """See :func:`fingerprint`."""
        return fingerprint(self.public_raw)

    def sign(self, unsigned: bytes) -> bytes:
        """The published payload of an envelope serialised without ``sig``."""
        if not unsigned.endswith(b"}"):
            raise ValueError("an envelope is a JSON object")
        signature = base64.b64encode(self.private.sign(RECORD_CONTEXT + unsigned))
        return unsigned[:-1] + SIG_OPEN + signature + b'"}'

    def key_message(self) -> bytes:
        """The retained ``{root}/key`` payload."""
        message = {
            "schema": KEY_SCHEMA,
            "alg": "ed25519",
            "public_key": self.public_b64,
            "fingerprint": self.fingerprint,
        }
        return json.dumps(message, separators=(",", ":")).encode()


def key_location(data_dir: Path, configured: Path | None) -> Path:
    """Where the private key is: configured, a systemd credential, or in ``data_dir``."""
    if configured is not None:
        return configured
    credentials = os.environ.get("CREDENTIALS_DIRECTORY")
    if credentials and (Path(credentials) / CREDENTIAL_NAME).exists():
        return Path(credentials) / CREDENTIAL_NAME
    return data_dir / DEFAULT_KEY_NAME


def load_private(path: Path) -> Ed25519PrivateKey:
    """The Ed25519 private key in the PEM (PKCS#8) file ``path``."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the signing key: {exc.strerror}") from None
    except ValueError as exc:
        raise ConfigError(
            f"{path}: not a PEM private key ({exc}); make one with"
            " `openssl genpkey -algorithm ed25519 -out FILE`"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path}: the signing key must be Ed25519, not {type(key).__name__}")
    return key


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Write a file that must not exist yet, with ``mode``, durably."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def load_or_create(data_dir: Path, configured: Path | None) -> RecordSigner:
    """The gateway's signer; generates ``{data_dir}/signing-key.pem`` at first start.

    A configured key or credential must exist: only the default location is created.
    """
    path = key_location(data_dir, configured)
    if not path.exists() and path == data_dir / DEFAULT_KEY_NAME:
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        with contextlib.suppress(FileExistsError):  # another process made it first: use it
            _write_new(path, pem, 0o600)
        fd = os.open(data_dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)  # the new name is durable before any record is signed with it
        finally:
            os.close(fd)
    signer = RecordSigner(load_private(path), path)
    public = StateFile(data_dir / PUBLIC_KEY_NAME)  # 0640: technicians are in the group
    text = f"{signer.public_b64}\n".encode()
    if public.read() != text:
        public.write(text)
    return signer


def read_public(data_dir: Path, configured: Path | None) -> tuple[Ed25519PublicKey, Path]:
    """The gateway's public key for ``gatewayctl keys show`` (without the private key
    when the published copy is there), and the file it came from."""
    public_path = data_dir / PUBLIC_KEY_NAME
    if public_path.exists():
        try:
            return public_key_from_text(public_path.read_text()), public_path
        except ValueError as exc:
            raise ConfigError(f"{public_path}: {exc}") from None
    path = key_location(data_dir, configured)
    if not path.exists():
        raise ConfigError(f"no signing key yet at {path}: the daemon makes one at its first start")
    return load_private(path).public_key(), path
