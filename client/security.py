"""How the client secures its channels: TLS trusting a CA, a client certificate (mutual TLS), a shared token."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from clipsearch.auth import TOKEN_FILE_VARIABLE, TOKEN_VARIABLE, BearerTokenInterceptor, token_from_env
from clipsearch.envconfig import ConfigError
from clipsearch.tls import channel_credentials, read_pem, ssl_reason

CA_VARIABLE = "CLIPSEARCH_TLS_CA"
CERT_VARIABLE = "CLIPSEARCH_TLS_CERT"
KEY_VARIABLE = "CLIPSEARCH_TLS_KEY"
SERVER_NAME_VARIABLE = "CLIPSEARCH_TLS_SERVER_NAME"

# What each setting is called, in the environment and on the command line, for error messages.
CA_SETTING = f"{CA_VARIABLE} (--tls-ca)"
CERT_SETTING = f"{CERT_VARIABLE} (--tls-cert)"
KEY_SETTING = f"{KEY_VARIABLE} (--tls-key)"
TOKEN_SETTING = f"{TOKEN_VARIABLE} or {TOKEN_FILE_VARIABLE} (or --token-file)"

_DIAGNOSIS_TIMEOUT_SECONDS = 2.0


def _optional_path(env: Mapping[str, str], name: str) -> Path | None:
    value = env.get(name, "").strip()
    return Path(value).expanduser() if value else None


def token_from_file(path: Path, setting: str = "--token-file") -> str:
    """The token in `path` (surrounding whitespace ignored); ConfigError names `setting`."""
    try:
        token = token_from_env({TOKEN_FILE_VARIABLE: str(path)})
    except ConfigError as error:
        raise ConfigError(str(error).replace(TOKEN_FILE_VARIABLE, setting, 1)) from None
    assert token is not None  # an empty file is an error above
    return token


@dataclass(frozen=True)
class ChannelSecurity:
    """TLS is on when ca_file is set: the services' certificates must chain to it and name the address
    dialled (or server_name). cert_file and key_file are the client's certificate for services that
    require one. token, when set, goes with every call as `authorization: Bearer <token>`."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    server_name: str | None = None
    token: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ChannelSecurity:
        """CLIPSEARCH_TLS_CA, _CERT, _KEY, _SERVER_NAME and CLIPSEARCH_AUTH_TOKEN[_FILE]; load() checks
        that they go together and reads the files."""
        return cls(
            ca_file=_optional_path(env, CA_VARIABLE),
            cert_file=_optional_path(env, CERT_VARIABLE),
            key_file=_optional_path(env, KEY_VARIABLE),
            server_name=env.get(SERVER_NAME_VARIABLE, "").strip() or None,
            token=token_from_env(env),
        )

    @property
    def tls(self) -> bool:
        return self.ca_file is not None

    @property
    def mutual(self) -> bool:
        return self.cert_file is not None

    def check(self) -> None:
        """Refuses settings that do not go together (the files themselves are read by load())."""
        if (self.cert_file is None) != (self.key_file is None):
            given, missing = (CERT_SETTING, KEY_SETTING) if self.key_file is None else (KEY_SETTING, CERT_SETTING)
            raise ConfigError(f"{given} is set but {missing} is not: a client certificate needs both")
        if not self.tls:
            extra = [
                name
                for name, value in ((CERT_SETTING, self.cert_file), (SERVER_NAME_VARIABLE, self.server_name))
                if value
            ]
            if extra:
                raise ConfigError(
                    f"{extra[0]} needs {CA_SETTING}, the CA that signed the services' "
                    "certificates (setting it turns TLS on)"
                )
        if self.server_name is not None and not all(0x21 <= ord(c) <= 0x7E for c in self.server_name):
            raise ConfigError(f"{SERVER_NAME_VARIABLE}={self.server_name!r} is not a host name")

    def load(self) -> ChannelFactory:
        """Reads and checks the files, once; ConfigError names the setting of a bad one."""
        return ChannelFactory(self)


def _no_password() -> bytes:
    raise ConfigError(f"{KEY_SETTING}: the private key is encrypted; gRPC needs it unencrypted")


def _client_context(security: ChannelSecurity) -> ssl.SSLContext:
    """An ssl context equivalent to the channel's credentials, to check the files and diagnose handshakes."""
    assert security.ca_file is not None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_verify_locations(cafile=security.ca_file)
    except ssl.SSLError as error:
        raise ConfigError(
            f"{CA_SETTING}: {str(security.ca_file)!r} holds no PEM CA certificate: {ssl_reason(error)}"
        ) from None
    if security.cert_file is not None and security.key_file is not None:
        try:
            context.load_cert_chain(security.cert_file, security.key_file, password=_no_password)
        except ssl.SSLError as error:
            raise ConfigError(
                f"{CERT_SETTING} {str(security.cert_file)!r} and {KEY_SETTING} "
                f"{str(security.key_file)!r} are not a PEM certificate and its private key: "
                f"{ssl_reason(error)}"
            ) from None
    context.set_alpn_protocols(["h2"])  # as gRPC does; a gRPC server may drop a connection without it
    return context


class ChannelFactory:
    """Opens channels secured as a ChannelSecurity says, with its files read and checked once."""

    def __init__(self, security: ChannelSecurity) -> None:
        security.check()
        self.security = security
        self._credentials: grpc.ChannelCredentials | None = None
        self._context: ssl.SSLContext | None = None
        if security.tls:
            for path, setting in (
                (security.ca_file, CA_SETTING),
                (security.cert_file, CERT_SETTING),
                (security.key_file, KEY_SETTING),
            ):
                if path is not None:
                    read_pem(path, f"{setting}: ")
            self._context = _client_context(security)
            self._credentials = channel_credentials(
                ca_file=security.ca_file, cert_file=security.cert_file, key_file=security.key_file, token=security.token
            )

    def open(
        self, target: str, options: Sequence[tuple[str, Any]] = (), *, server_name: str | None = None
    ) -> grpc.Channel:
        """A channel to `target`. With TLS, the certificate must name `server_name` (the security's own
        server_name wins; default: the target's host)."""
        if self._credentials is not None:
            name = self.security.server_name or server_name
            extra = [("grpc.ssl_target_name_override", name)] if name else []
            return grpc.secure_channel(target, self._credentials, options=[*options, *extra])
        channel = grpc.insecure_channel(target, options=list(options))
        if self.security.token is not None:
            # gRPC sends call credentials over TLS only; over plaintext an interceptor adds the token.
            channel = grpc.intercept_channel(channel, BearerTokenInterceptor(self.security.token))
        return channel

    def diagnose(
        self, host: str, port: int, *, server_name: str | None = None, timeout: float = _DIAGNOSIS_TIMEOUT_SECONDS
    ) -> str:
        """Why this client cannot open a gRPC connection to host:port at the TLS level, in words with the
        setting to change; "" when nothing answers there or the handshake succeeds. server_name: as for
        open()."""
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
        except OSError:
            return ""
        with sock:
            if self._context is None:
                return _speaks_tls(sock, host)
            return self._handshake_problem(sock, self.security.server_name or server_name or host)

    def _handshake_problem(self, sock: socket.socket, name: str) -> str:
        assert self._context is not None
        try:
            with self._context.wrap_socket(sock, server_hostname=name) as tls:
                # Under TLS 1.3 a server checks the client's certificate after the handshake, and closes
                # the connection when it refuses it; a gRPC server that accepts it sends its settings.
                try:
                    accepted = tls.recv(1) != b""
                except OSError as error:  # ssl.SSLError and TimeoutError included
                    accepted = isinstance(error, TimeoutError)
        except ssl.SSLCertVerificationError as error:
            message = error.verify_message or ssl_reason(error)
            if "mismatch" in message.lower():
                return (
                    f"its certificate does not name {name!r} ({message}); dial a name it holds, or set "
                    f"{SERVER_NAME_VARIABLE} to one"
                )
            return (
                f"its certificate is not trusted ({message}); {CA_SETTING} must be the CA that signed "
                "the services' certificates"
            )
        except ssl.SSLError as error:
            if error.reason in ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG"):
                return f"it speaks plaintext, not TLS; unset {CA_SETTING}, or enable TLS on the service"
            return f"the TLS handshake failed ({ssl_reason(error)})"
        except OSError:
            return ""
        if accepted:
            return ""
        if not self.security.mutual:
            return (
                f"it requires a client certificate (mutual TLS); set {CERT_SETTING} and {KEY_SETTING} "
                "to one signed by the CA the service trusts"
            )
        return (
            f"it refused the client certificate {str(self.security.cert_file)!r}: it must be signed by "
            "the CA the service trusts for clients and allow client authentication"
        )


def _speaks_tls(sock: socket.socket, host: str) -> str:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # only asks whether TLS answers at all
    context.set_alpn_protocols(["h2"])
    try:
        with context.wrap_socket(sock, server_hostname=host):
            pass
    except (ssl.SSLError, OSError):
        return ""
    return f"it speaks TLS; set {CA_SETTING} to the CA that signed its certificate"
