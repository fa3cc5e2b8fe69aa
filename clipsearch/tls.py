"""TLS for the gRPC servers and their clients: server credentials (mTLS optional) and channel credentials.

A service reads three variables, named after its prefix (EMBEDDER or SEARCH):
  <PREFIX>_TLS_CERT       PEM certificate chain of the server, leaf first (its SAN must name the address
                          clients dial, e.g. IP:127.0.0.1 or DNS:embedder)
  <PREFIX>_TLS_KEY        PEM private key of that certificate (unencrypted)
  <PREFIX>_TLS_CLIENT_CA  PEM CA certificate(s); when set, every client must present a certificate they
                          signed (mutual TLS)
Certificate and key go together; without them the server speaks plaintext. The files are read and checked
once at start-up, so a wrong path or a key that does not match its certificate stops the start with a
message naming the variable.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from clipsearch.auth import token_call_credentials
from clipsearch.envconfig import ConfigError


@dataclass(frozen=True)
class ServerTls:
    """A server's certificate chain and key, and the CA its clients' certificates must chain to (mTLS)."""

    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None
    certificate_chain: bytes = field(default=b"", repr=False)
    private_key: bytes = field(default=b"", repr=False)
    client_ca: bytes | None = field(default=None, repr=False)

    @property
    def mutual(self) -> bool:
        """True when clients must present a certificate signed by client_ca."""
        return self.client_ca is not None

    @classmethod
    def load(
        cls,
        cert_file: Path,
        key_file: Path,
        client_ca_file: Path | None = None,
        *,
        names: tuple[str, str, str] = ("certificate", "private key", "client CA"),
    ) -> ServerTls:
        """Reads and checks the PEM files; errors name the file by `names` (e.g. the variables)."""
        cert_name, key_name, ca_name = names
        chain = _read(cert_file, cert_name)
        key = _read(key_file, key_name)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            context.load_cert_chain(cert_file, key_file, password=_no_password)
        except (ssl.SSLError, _EncryptedKey) as error:
            raise ConfigError(
                f"{cert_name}={str(cert_file)!r} and {key_name}={str(key_file)!r} are not a PEM "
                f"certificate and its unencrypted private key: {ssl_reason(error)}"
            ) from None
        client_ca = None
        if client_ca_file is not None:
            client_ca = _read(client_ca_file, ca_name)
            try:
                context.load_verify_locations(cafile=client_ca_file)
            except ssl.SSLError as error:
                raise ConfigError(
                    f"{ca_name}={str(client_ca_file)!r} holds no PEM CA certificate: {ssl_reason(error)}"
                ) from None
        return cls(cert_file, key_file, client_ca_file, chain, key, client_ca)

    @classmethod
    def from_env(cls, env: Mapping[str, str], prefix: str) -> ServerTls | None:
        """TLS settings from <prefix>_TLS_CERT, _TLS_KEY and _TLS_CLIENT_CA; None when TLS is off."""
        names = (f"{prefix}_TLS_CERT", f"{prefix}_TLS_KEY", f"{prefix}_TLS_CLIENT_CA")
        cert, key, client_ca = (env.get(name, "").strip() for name in names)
        if not cert and not key:
            if client_ca:
                raise ConfigError(f"{names[2]} needs {names[0]} and {names[1]} (mutual TLS is TLS first)")
            return None
        if not cert or not key:
            missing, given = (names[0], names[1]) if not cert else (names[1], names[0])
            raise ConfigError(f"{given} is set but {missing} is not: TLS needs both")
        return cls.load(Path(cert), Path(key), Path(client_ca) if client_ca else None, names=names)


class _EncryptedKey(Exception):
    """The private key asks for a password; gRPC cannot use encrypted keys."""


def _no_password() -> bytes:
    raise _EncryptedKey("the private key is encrypted; gRPC needs it unencrypted")


def ssl_reason(error: Exception) -> str:
    """What an ssl error (or one of gRPC's) says went wrong, in words where OpenSSL's code is cryptic."""
    reason = getattr(error, "reason", None) or str(error)
    return "the private key does not belong to the certificate" if reason == "KEY_VALUES_MISMATCH" else reason


def read_pem(path: Path, where: str) -> bytes:
    """The bytes of a PEM file; ConfigError opens with `where` (e.g. "SEARCH_TLS_CERT=") before the path."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ConfigError(f"{where}{str(path)!r} cannot be read: {error.strerror or error}") from None
    if b"-----BEGIN " not in data:
        raise ConfigError(f"{where}{str(path)!r} is not a PEM file (no '-----BEGIN' line)")
    return data


def _read(path: Path, name: str) -> bytes:
    return read_pem(path, f"{name}=")


def server_credentials(tls: ServerTls) -> grpc.ServerCredentials:
    """gRPC server credentials for `tls`; with a client CA, clients without a valid certificate are refused."""
    return grpc.ssl_server_credentials(
        [(tls.private_key, tls.certificate_chain)], root_certificates=tls.client_ca, require_client_auth=tls.mutual
    )


def optional_server_credentials(tls: ServerTls | None) -> grpc.ServerCredentials | None:
    """Server credentials for `tls`, or None (plaintext) when TLS is off."""
    return None if tls is None else server_credentials(tls)


def security_summary(tls: ServerTls | None, token: str | None) -> str:
    """How a server is secured, for its start-up log line (never the secrets themselves)."""
    transport = "plaintext" if tls is None else ("mutual TLS" if tls.mutual else "TLS")
    return f"{transport}, {'bearer token required' if token else 'no authentication'}"


# --- the client side ------------------------------------------------------------------------------


def channel_credentials(
    *,
    ca_file: Path | None = None,
    cert_file: Path | None = None,
    key_file: Path | None = None,
    token: str | None = None,
) -> grpc.ChannelCredentials:
    """Credentials for grpc.secure_channel: trust `ca_file` (None: the system's roots), present
    `cert_file`/`key_file` to a server that requires client certificates, and send `token` on every call."""
    if (cert_file is None) != (key_file is None):
        raise ConfigError("a client certificate needs its private key, and the key its certificate")
    credentials = grpc.ssl_channel_credentials(
        root_certificates=_read(ca_file, "CA file") if ca_file is not None else None,
        private_key=_read(key_file, "client key") if key_file is not None else None,
        certificate_chain=_read(cert_file, "client certificate") if cert_file is not None else None,
    )
    if token is None:
        return credentials
    return grpc.composite_channel_credentials(credentials, token_call_credentials(token))
