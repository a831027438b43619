"""KJS_KAFKA_SECURITY_PROTOCOL / SASL / SSL settings and their one mapping to each client."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pytest
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from faust.types.auth import AuthProtocol, SASLMechanism
from pydantic import ValidationError

from core.settings import KafkaSettings, check_environment, known_env_names
from infra.pki import Pki, make_pki
from topics.security import (
    aiokafka_config,
    faust_broker,
    faust_credentials,
    librdkafka_config,
    ssl_context,
)

SCRAM: dict[str, Any] = {
    "kafka_sasl_mechanism": "SCRAM-SHA-512",
    "kafka_sasl_username": "kjs",
    "kafka_sasl_password": "s3cret",
}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def test_plaintext_is_the_default_and_adds_nothing() -> None:
    kafka = KafkaSettings(kafka_bootstrap="a:1,b:2")
    assert librdkafka_config(kafka) == {
        "bootstrap.servers": "a:1,b:2",
        "security.protocol": "plaintext",
    }
    assert aiokafka_config(kafka) == {
        "bootstrap_servers": "a:1,b:2",
        "security_protocol": "PLAINTEXT",
    }
    assert faust_credentials(kafka) is None
    assert faust_broker(kafka) == ["kafka://a:1", "kafka://b:2"]


def test_sasl_scram_reaches_every_client() -> None:
    kafka = KafkaSettings(kafka_bootstrap="b:9", kafka_security_protocol="SASL_PLAINTEXT", **SCRAM)
    assert librdkafka_config(kafka) == {
        "bootstrap.servers": "b:9",
        "security.protocol": "sasl_plaintext",
        "sasl.mechanisms": "SCRAM-SHA-512",
        "sasl.username": "kjs",
        "sasl.password": "s3cret",
    }
    aio = aiokafka_config(kafka)
    assert aio == {
        "bootstrap_servers": "b:9",
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "kjs",
        "sasl_plain_password": "s3cret",
    }
    creds = faust_credentials(kafka)
    assert creds is not None
    assert creds.protocol is AuthProtocol.SASL_PLAINTEXT
    assert creds.mechanism is SASLMechanism.SCRAM_SHA_512  # type: ignore[attr-defined]
    # What faust hands its aiokafka consumers and producers is exactly our aiokafka mapping.
    faust_auth = credentials_to_aiokafka_auth(creds)
    assert faust_auth == {"ssl_context": None} | {
        k: v for k, v in aio.items() if k != "bootstrap_servers"
    }


def test_sasl_ssl_verifies_the_broker_with_the_ca(pki: Pki) -> None:
    kafka = KafkaSettings(kafka_security_protocol="SASL_SSL", kafka_ssl_cafile=pki.ca, **SCRAM)
    rd = librdkafka_config(kafka)
    assert rd["security.protocol"] == "sasl_ssl"
    assert rd["ssl.ca.location"] == str(pki.ca)
    assert rd["ssl.endpoint.identification.algorithm"] == "https"
    assert "ssl.certificate.location" not in rd
    aio = aiokafka_config(kafka)
    context = aio["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
    assert any(c["subject"] == ((("commonName", "kjs test CA"),),) for c in context.get_ca_certs())
    creds = faust_credentials(kafka)
    assert creds is not None and creds.protocol is AuthProtocol.SASL_SSL
    assert credentials_to_aiokafka_auth(creds)["ssl_context"] is not None


def test_mutual_tls_files_and_hostname_check(pki: Pki) -> None:
    # The broker's PEM holds a key and its chain: good enough to stand in for a client's.
    kafka = KafkaSettings(
        kafka_security_protocol="SSL",
        kafka_ssl_cafile=pki.ca,
        kafka_ssl_certfile=pki.server,
        kafka_ssl_keyfile=pki.server,
        kafka_ssl_check_hostname=False,
    )
    rd = librdkafka_config(kafka)
    assert rd["ssl.certificate.location"] == rd["ssl.key.location"] == str(pki.server)
    assert rd["ssl.endpoint.identification.algorithm"] == "none"
    assert "sasl.mechanisms" not in rd
    context = ssl_context(kafka)
    assert context is not None
    assert not context.check_hostname and context.verify_mode is ssl.CERT_REQUIRED
    creds = faust_credentials(kafka)
    assert creds is not None and creds.protocol is AuthProtocol.SSL
    auth = credentials_to_aiokafka_auth(creds)
    assert auth["security_protocol"] == "SSL" and auth["ssl_context"] is not None


def test_key_password_is_passed_to_librdkafka(pki: Pki) -> None:
    kafka = KafkaSettings(
        kafka_security_protocol="SSL",
        kafka_ssl_certfile=pki.server,
        kafka_ssl_keyfile=pki.server,
        kafka_ssl_key_password="k",
    )
    assert librdkafka_config(kafka)["ssl.key.password"] == "k"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"kafka_security_protocol": "SASL_SSL"}, "SASL_SSL needs KJS_KAFKA_SASL_MECHANISM"),
        (
            {"kafka_security_protocol": "SASL_PLAINTEXT", **SCRAM, "kafka_sasl_username": None},
            "needs KJS_KAFKA_SASL_USERNAME",
        ),
        ({"kafka_sasl_password": "s3cret"}, "KJS_KAFKA_SASL_PASSWORD set but"),
        ({"kafka_ssl_cafile": "/etc/hostname"}, "KJS_KAFKA_SSL_CAFILE set but"),
        (
            {"kafka_security_protocol": "SSL", "kafka_ssl_cafile": "/no/such/ca.pem"},
            "KJS_KAFKA_SSL_CAFILE=/no/such/ca.pem is not a file",
        ),
        (
            {"kafka_security_protocol": "SSL", "kafka_ssl_keyfile": "/etc/hostname"},
            "KJS_KAFKA_SSL_CERTFILE and KJS_KAFKA_SSL_KEYFILE go together",
        ),
        (
            {"kafka_security_protocol": "SSL", "kafka_ssl_key_password": "k"},
            "KJS_KAFKA_SSL_KEY_PASSWORD needs KJS_KAFKA_SSL_KEYFILE",
        ),
        ({"kafka_security_protocol": "TLS"}, "kafka_security_protocol"),
        (
            {
                "kafka_security_protocol": "SASL_PLAINTEXT",
                **SCRAM,
                "kafka_sasl_mechanism": "GSSAPI",
            },
            "kafka_sasl_mechanism",
        ),
    ],
)
def test_inconsistent_settings_are_refused(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        KafkaSettings(**fields)
    assert message in str(caught.value)
    assert "s3cret" not in str(caught.value)


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch, pki: Pki) -> None:
    env = {
        "KJS_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KJS_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
        "KJS_KAFKA_SASL_USERNAME": "kjs",
        "KJS_KAFKA_SASL_PASSWORD": "s3cret",
        "KJS_KAFKA_SSL_CAFILE": str(pki.ca),
        "KJS_KAFKA_SSL_CHECK_HOSTNAME": "false",
    }
    assert set(env) <= known_env_names()
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    check_environment()
    kafka = KafkaSettings()
    assert kafka.kafka_ssl_cafile == Path(pki.ca)
    assert not kafka.kafka_ssl_check_hostname
    assert librdkafka_config(kafka)["sasl.mechanisms"] == "SCRAM-SHA-256"
    assert "s3cret" not in repr(kafka)


def test_no_client_is_built_around_the_mapping() -> None:
    """Only topics/security.py reads the bootstrap servers: a client built elsewhere from
    them alone would speak PLAINTEXT to a secured broker."""
    root = Path(__file__).resolve().parents[2]
    allowed = {Path("topics/security.py"), Path("core/settings.py")}
    offenders = []
    for package in ("api", "kjs", "scheduler", "topics", "workers"):
        for path in (root / package).rglob("*.py"):
            name = path.relative_to(root)
            if name in allowed:
                continue
            text = path.read_text()
            for needle in ("kafka_bootstrap", "bootstrap_servers", "bootstrap.servers"):
                if needle in text:
                    offenders.append(f"{name}: {needle}")
    assert offenders == []
