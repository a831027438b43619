"""Throw-away TLS material for the tests' secured services: a CA and one server certificate.

Made with ``cryptography`` at start-up, valid for a day, never reused: the private broker of
``infra.secure_broker`` and the private Postgres of ``infra.database.start(..., tls=...)``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from infra.process import LOOPBACK

TLS_HOST = "localhost"  # the name the TLS servers are reached (and verified) by


@dataclass(frozen=True)
class Pki:
    ca: Path  # the CA certificate clients trust (KJS_KAFKA_SSL_CAFILE)
    server: Path  # the server's private key, then its certificate chain (PEM)


def make_pki(directory: Path, hosts: tuple[str, ...] = (TLS_HOST, LOOPBACK)) -> Pki:
    """A fresh CA and a server certificate it signed, valid for ``hosts`` for a day."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kjs test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    pem = serialization.Encoding.PEM
    pki = Pki(directory / "ca.pem", directory / "server.pem")
    pki.ca.write_bytes(ca_cert.public_bytes(pem))
    # One file for both servers: Kafka's PEM key store (the PKCS#8 key, then the chain from
    # the leaf up) is also what Postgres's ssl_key_file and ssl_cert_file can both read.
    private = key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    pki.server.write_bytes(private + cert.public_bytes(pem) + ca_cert.public_bytes(pem))
    pki.server.chmod(0o600)
    return pki
