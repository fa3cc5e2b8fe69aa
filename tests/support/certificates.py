"""Test-time X.509 certificates made with the openssl command: a CA, a server and a client certificate."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

VALID_DAYS = "2"
# EC keys: generating them takes milliseconds, where RSA keys take up to a second each.
_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


@dataclass(frozen=True)
class Identity:
    """A certificate (PEM) and its private key (PEM), as files."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class TestPki:
    """Everything a TLS test needs: a CA, a server identity it signed, a client identity it signed, and a
    client identity from a second, untrusted CA."""

    __test__ = False  # not a pytest test class, despite the name

    ca: Identity
    server: Identity
    client: Identity
    other_ca: Identity
    stranger: Identity


def openssl_available() -> bool:
    return shutil.which("openssl") is not None


def _openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {result.stderr.strip()}")


def make_ca(directory: Path, name: str) -> Identity:
    """A self-signed CA certificate that may sign others."""
    identity = Identity(directory / f"{name}.pem", directory / f"{name}.key")
    _openssl(
        "req",
        "-x509",
        *_KEY,
        "-keyout",
        identity.key.name,
        "-out",
        identity.cert.name,
        "-days",
        VALID_DAYS,
        "-subj",
        f"/CN=clipsearch test {name}",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )
    return identity


def issue(directory: Path, ca: Identity, name: str, *, usage: str, alt_names: str | None = None) -> Identity:
    """A leaf certificate for `usage` (serverAuth or clientAuth) signed by `ca`."""
    identity = Identity(directory / f"{name}.pem", directory / f"{name}.key")
    request = directory / f"{name}.csr"
    extensions = directory / f"{name}.ext"
    lines = ["basicConstraints=critical,CA:FALSE", "keyUsage=critical,digitalSignature", f"extendedKeyUsage={usage}"]
    if alt_names:
        lines.append(f"subjectAltName={alt_names}")
    extensions.write_text("\n".join(lines) + "\n")
    _openssl(
        "req",
        "-new",
        *_KEY,
        "-keyout",
        identity.key.name,
        "-out",
        request.name,
        "-subj",
        f"/CN=clipsearch test {name}",
        cwd=directory,
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        request.name,
        "-CA",
        ca.cert.name,
        "-CAkey",
        ca.key.name,
        "-CAcreateserial",
        "-out",
        identity.cert.name,
        "-days",
        VALID_DAYS,
        "-extfile",
        extensions.name,
        cwd=directory,
    )
    return identity


def make_pki(directory: Path) -> TestPki:
    """A CA; a server certificate for 127.0.0.1 and localhost; a client certificate; and a client
    certificate from another CA, which a server trusting only the first must refuse."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = make_ca(directory, "ca")
    other_ca = make_ca(directory, "other-ca")
    return TestPki(
        ca=ca,
        server=issue(directory, ca, "server", usage="serverAuth", alt_names="IP:127.0.0.1,DNS:localhost"),
        client=issue(directory, ca, "client", usage="clientAuth"),
        other_ca=other_ca,
        stranger=issue(directory, other_ca, "stranger", usage="clientAuth"),
    )
