"""Throwaway certificates for TLS tests, made with the openssl CLI.

Everything is EC (prime256v1) so a whole set takes a few tens of milliseconds. The
certificates carry the extensions strict X.509 verification asks for (critical
basicConstraints, keyUsage, subject/authority key identifiers), so they also pass
Python's ``VERIFY_X509_STRICT``.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

_REQ_CONFIG = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[v3_ca]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
"""

_LEAF_EXTENSIONS = """\
[leaf]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = {usage}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
{san}
"""

_EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def _openssl(*args: str | Path) -> None:
    binary = shutil.which("openssl")
    if binary is None:
        raise RuntimeError("the openssl CLI is not installed")
    done = subprocess.run([binary, *map(str, args)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {done.stderr.strip()}")


@dataclass(frozen=True)
class CertificateAuthority:
    """A self-signed CA that can issue leaf certificates."""

    name: str
    cert: Path
    key: Path
    workdir: Path

    @classmethod
    def create(cls, workdir: Path, name: str, days: int = 2) -> CertificateAuthority:
        """A new CA key and self-signed certificate in ``workdir``."""
        workdir.mkdir(parents=True, exist_ok=True)
        config = workdir / "req.cnf"
        config.write_text(_REQ_CONFIG)
        cert, key = workdir / f"{name}.pem", workdir / f"{name}.key"
        _openssl(
            "req",
            "-x509",
            *_EC,
            "-keyout",
            key,
            "-out",
            cert,
            "-days",
            str(days),
            "-subj",
            f"/CN={name}",
            "-config",
            config,
            "-extensions",
            "v3_ca",
        )
        return cls(name, cert, key, workdir)

    def issue(
        self,
        name: str,
        *,
        server: bool,
        dns: tuple[str, ...] = (),
        ips: tuple[str, ...] = (),
        days: int = 2,
    ) -> Leaf:
        """A leaf certificate for a server (with SANs) or a client, signed by this CA."""
        cert, key = self.workdir / f"{name}.pem", self.workdir / f"{name}.key"
        csr, ext = self.workdir / f"{name}.csr", self.workdir / f"{name}.ext"
        sans = [f"DNS:{d}" for d in dns] + [f"IP:{i}" for i in ips]
        ext.write_text(
            _LEAF_EXTENSIONS.format(
                usage="serverAuth" if server else "clientAuth",
                san=f"subjectAltName = {', '.join(sans)}" if sans else "",
            )
        )
        common_name = (ips or dns or (name,))[0]
        _openssl(
            "req",
            "-new",
            *_EC,
            "-keyout",
            key,
            "-out",
            csr,
            "-subj",
            f"/CN={common_name}",
            "-config",
            self.workdir / "req.cnf",
        )
        _openssl(
            "x509",
            "-req",
            "-in",
            csr,
            "-CA",
            self.cert,
            "-CAkey",
            self.key,
            "-set_serial",
            str(secrets.randbits(63)),
            "-days",
            str(days),
            "-sha256",
            "-extfile",
            ext,
            "-extensions",
            "leaf",
            "-out",
            cert,
        )
        return Leaf(cert, key)


@dataclass(frozen=True)
class Leaf:
    """A certificate and its private key (PEM files)."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class Pki:
    """Everything the TLS tests need.

    - ``server``: for ``127.0.0.1`` (IP SAN) and ``localhost``, signed by ``ca``;
    - ``other_host``: signed by ``ca`` but only for ``other.example``;
    - ``client``: a client certificate signed by ``ca``;
    - ``rogue_ca``: a CA that signed none of the above.
    """

    ca: CertificateAuthority
    rogue_ca: CertificateAuthority
    server: Leaf
    other_host: Leaf
    client: Leaf


def make_pki(workdir: Path) -> Pki:
    """Create a fresh CA, a rogue CA and the leaf certificates in ``workdir``."""
    ca = CertificateAuthority.create(workdir / "ca", "test-ca")
    rogue = CertificateAuthority.create(workdir / "rogue", "rogue-ca")
    return Pki(
        ca=ca,
        rogue_ca=rogue,
        server=ca.issue("server", server=True, dns=("localhost",), ips=("127.0.0.1",)),
        other_host=ca.issue("other-host", server=True, dns=("other.example",)),
        client=ca.issue("client", server=False, dns=("edge-gateway-test",)),
    )
