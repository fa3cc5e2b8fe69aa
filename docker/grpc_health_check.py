#!/usr/bin/env python3
"""Container healthcheck: exits 0 when a server reports SERVING over grpc.health.v1, else 1.

It runs in the service's own container and speaks TLS when the service does, i.e. when the service's
<PREFIX>_TLS_CERT is set (EMBEDDER_ or SEARCH_, from the service checked, else whichever is set):
  - it trusts --ca, else CLIPSEARCH_TLS_CA, else the service's <PREFIX>_TLS_CLIENT_CA (in a private PKI,
    the CA that signs the clients' certificates often signed the server's too);
  - where the service requires client certificates (<PREFIX>_TLS_CLIENT_CA), it presents --cert/--key,
    else CLIPSEARCH_TLS_CERT/_KEY, else the service's own certificate and key: that works only when the
    client CA signed that certificate and it allows client authentication (extendedKeyUsage
    serverAuth,clientAuth); otherwise give the probe a client certificate of its own;
  - it dials 127.0.0.1, so the certificate must name it (IP:127.0.0.1), or give the name it holds with
    --server-name or CLIPSEARCH_TLS_SERVER_NAME.
Health checks need no token: the services exempt them from authentication.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

PREFIXES = {"clipsearch.v1.Embedder": "EMBEDDER", "clipsearch.v1.Search": "SEARCH"}


class ProbeError(Exception):
    """The probe's TLS settings are incomplete or unreadable."""


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError as error:
        raise ProbeError(f"{what} {path!r} cannot be read: {error.strerror or error}") from None


def _prefix(service: str, env: Mapping[str, str]) -> str | None:
    """EMBEDDER or SEARCH when that service speaks TLS, else None."""
    candidates = [PREFIXES[service]] if service in PREFIXES else list(PREFIXES.values())
    return next((p for p in candidates if env.get(f"{p}_TLS_CERT", "").strip()), None)


def credentials(args: argparse.Namespace, env: Mapping[str, str]) -> tuple[grpc.ChannelCredentials | None, str]:
    """TLS credentials for the probe (None: plaintext) and the name the certificate must hold ("": the
    address's host)."""

    def setting(option: str | None, *names: str) -> str:
        return option or next((env[n].strip() for n in names if env.get(n, "").strip()), "")

    prefix = _prefix(args.service, env)
    if prefix is None and not args.ca:
        return None, ""
    ca = setting(args.ca, "CLIPSEARCH_TLS_CA", *([f"{prefix}_TLS_CLIENT_CA"] if prefix else []))
    if not ca:
        raise ProbeError(f"{prefix}_TLS_CERT is set: give --ca or CLIPSEARCH_TLS_CA, the CA that signed it")
    cert = setting(args.cert, "CLIPSEARCH_TLS_CERT")
    key = setting(args.key, "CLIPSEARCH_TLS_KEY")
    if not cert and not key and prefix and env.get(f"{prefix}_TLS_CLIENT_CA", "").strip():
        cert, key = env[f"{prefix}_TLS_CERT"].strip(), env.get(f"{prefix}_TLS_KEY", "").strip()
    if bool(cert) != bool(key):
        raise ProbeError("a client certificate needs its key, and the key its certificate")
    return grpc.ssl_channel_credentials(
        root_certificates=_read(ca, "CA file"),
        private_key=_read(key, "client key") if key else None,
        certificate_chain=_read(cert, "client certificate") if cert else None,
    ), setting(args.server_name, "CLIPSEARCH_TLS_SERVER_NAME")


def main(argv: list[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("address", help="host:port of the gRPC server, e.g. 127.0.0.1:50051")
    parser.add_argument(
        "service",
        nargs="?",
        default="",
        help="service to check, e.g. clipsearch.v1.Embedder (default: the whole server)",
    )
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for the answer")
    parser.add_argument("--ca", help="PEM CA that signed the server's certificate; turns TLS on")
    parser.add_argument("--cert", help="PEM client certificate, for a server that requires one")
    parser.add_argument("--key", help="the client certificate's PEM key")
    parser.add_argument("--server-name", help="the name the server's certificate holds, if not the address's")
    args = parser.parse_args(argv)
    target = f"{args.address} {args.service or '(server)'}"
    try:
        tls, server_name = credentials(args, os.environ if env is None else env)
    except ProbeError as error:
        print(f"{target}: {error}", file=sys.stderr)
        return 1
    if tls is None:
        channel = grpc.insecure_channel(args.address)
    else:
        options = [("grpc.ssl_target_name_override", server_name)] if server_name else []
        channel = grpc.secure_channel(args.address, tls, options=options)
    with channel:
        try:
            response = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout
            )
        except grpc.RpcError as error:
            print(f"{target}: {error.code().name}: {error.details()}", file=sys.stderr)
            return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    print(f"{target}: {status}")
    return 0 if response.status == health_pb2.HealthCheckResponse.SERVING else 1


if __name__ == "__main__":
    sys.exit(main())
