"""A real SMTP server for tests (aiosmtpd on a local port) that behaves like a mail provider's
submission port: STARTTLS is required before anything else, AUTH only over TLS, per-recipient answers
(550 unknown mailbox, 451 try later), and every accepted message kept as parsed e-mail."""

from __future__ import annotations

import datetime
import email.policy
import ipaddress
import socket
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key; the certificate doubles as the CA file clients trust."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "smtp.test")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_file, key_file


@dataclass
class Delivered:
    sender: str
    recipients: list[str]
    message: EmailMessage
    over_tls: bool
    login: str | None


@dataclass
class _Handler:
    unknown: set[str] = field(default_factory=set)
    busy: set[str] = field(default_factory=set)
    delivered: list[Delivered] = field(default_factory=list)

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if address in self.unknown:
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        if address in self.busy:
            return "451 4.3.0 Mailbox temporarily unavailable, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        message = BytesParser(policy=email.policy.default).parsebytes(envelope.content)
        assert isinstance(message, EmailMessage)
        auth = session.auth_data
        login = auth.login.decode() if session.authenticated and isinstance(auth, LoginPassword) else None
        self.delivered.append(
            Delivered(envelope.mail_from, list(envelope.rcpt_tos), message, session.ssl is not None, login)
        )
        return "250 2.0.0 Ok: queued"


class FakeSmtp:
    def __init__(self, directory: Path, *, username: str = "relay", password: str = "smtp-pass-123") -> None:
        self.username, self.password = username, password
        self.ca_file, key_file = self_signed(directory)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.ca_file, key_file)
        self.handler = _Handler()
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self._controller = Controller(
            self.handler,
            hostname="127.0.0.1",
            port=self.port,
            tls_context=context,
            require_starttls=True,
            auth_require_tls=True,
            authenticator=self._authenticate,
        )

    def _authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            self.username.encode(),
            self.password.encode(),
        )
        return AuthResult(success=ok, handled=False, auth_data=data)

    @property
    def delivered(self) -> list[Delivered]:
        return self.handler.delivered

    def __enter__(self) -> FakeSmtp:
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()
