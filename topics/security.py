"""How every Kafka client kjs opens connects: bootstrap servers plus transport security.

``KafkaSettings`` (``KJS_KAFKA_SECURITY_PROTOCOL``, ``KJS_KAFKA_SASL_*``, ``KJS_KAFKA_SSL_*``)
is mapped here, once, to each client library's own vocabulary:

- :func:`librdkafka_config` for confluent-kafka's ``AdminClient`` (topic creation, lag);
- :func:`aiokafka_config` for ``AIOKafkaProducer`` / ``AIOKafkaConsumer`` (API, workers,
  ``kjs dlq``, the lag reader's record consumer, the kafka target through the worker's
  producer);
- :func:`faust_credentials` for the scheduler's ``faust.App(broker_credentials=...)``, which
  faust hands to the aiokafka consumers and producers it builds (derived from the aiokafka
  mapping, so the two cannot drift apart).

A client built without these would silently speak PLAINTEXT to a secured broker, so the
call sites pass the whole ``KafkaSettings`` and get the bootstrap servers from here too.
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING, Any

from aiokafka.helpers import create_ssl_context

from core.settings import KafkaSettings

if TYPE_CHECKING:
    from faust.types.auth import CredentialsT


def uses_tls(kafka: KafkaSettings) -> bool:
    return kafka.kafka_security_protocol in ("SSL", "SASL_SSL")


def uses_sasl(kafka: KafkaSettings) -> bool:
    return kafka.kafka_security_protocol in ("SASL_PLAINTEXT", "SASL_SSL")


def _secret(kafka: KafkaSettings, name: str) -> str | None:
    value = getattr(kafka, name)
    return None if value is None else str(value.get_secret_value())


def librdkafka_config(kafka: KafkaSettings) -> dict[str, Any]:
    """``bootstrap.servers`` and the ``security.protocol``/``sasl.*``/``ssl.*`` properties."""
    config: dict[str, Any] = {
        "bootstrap.servers": kafka.kafka_bootstrap,
        "security.protocol": kafka.kafka_security_protocol.lower(),
    }
    if uses_sasl(kafka):
        config["sasl.mechanisms"] = kafka.kafka_sasl_mechanism
        config["sasl.username"] = kafka.kafka_sasl_username
        config["sasl.password"] = _secret(kafka, "kafka_sasl_password")
    if uses_tls(kafka):
        files = {
            "ssl.ca.location": kafka.kafka_ssl_cafile,
            "ssl.certificate.location": kafka.kafka_ssl_certfile,
            "ssl.key.location": kafka.kafka_ssl_keyfile,
        }
        config.update({key: str(path) for key, path in files.items() if path is not None})
        key_password = _secret(kafka, "kafka_ssl_key_password")
        if key_password is not None:
            config["ssl.key.password"] = key_password
        # librdkafka verifies the certificate chain either way; this is the host name check.
        check = "https" if kafka.kafka_ssl_check_hostname else "none"
        config["ssl.endpoint.identification.algorithm"] = check
    return config


def ssl_context(kafka: KafkaSettings) -> ssl.SSLContext | None:
    """The TLS context of the Python clients; None unless the protocol is SSL or SASL_SSL.

    Without a CA file the system's trust store verifies the broker, as librdkafka does.
    """
    if not uses_tls(kafka):
        return None
    context = create_ssl_context(
        cafile=kafka.kafka_ssl_cafile,
        certfile=kafka.kafka_ssl_certfile,
        keyfile=kafka.kafka_ssl_keyfile,
        password=_secret(kafka, "kafka_ssl_key_password"),
    )
    context.check_hostname = kafka.kafka_ssl_check_hostname
    return context


def aiokafka_config(kafka: KafkaSettings) -> dict[str, Any]:
    """``bootstrap_servers`` and the security keyword arguments of aiokafka's clients."""
    config: dict[str, Any] = {
        "bootstrap_servers": kafka.kafka_bootstrap,
        "security_protocol": kafka.kafka_security_protocol,
    }
    context = ssl_context(kafka)
    if context is not None:
        config["ssl_context"] = context
    if uses_sasl(kafka):
        config["sasl_mechanism"] = kafka.kafka_sasl_mechanism
        config["sasl_plain_username"] = kafka.kafka_sasl_username
        config["sasl_plain_password"] = _secret(kafka, "kafka_sasl_password")
    return config


def faust_broker(kafka: KafkaSettings) -> list[str]:
    """faust's broker URLs: one ``kafka://host:port`` per bootstrap server."""
    return [f"kafka://{b.strip()}" for b in kafka.kafka_bootstrap.split(",") if b.strip()]


def faust_credentials(kafka: KafkaSettings) -> CredentialsT | None:
    """``broker_credentials`` for ``faust.App``; None for PLAINTEXT.

    faust turns these back into aiokafka's ``security_protocol``/``sasl_*``/``ssl_context``
    (``credentials_to_aiokafka_auth``) for every consumer and producer it creates; SCRAM is
    one of its ``SASLMechanism`` values. A SASL credential with a context means SASL_SSL.
    """
    import faust  # only the scheduler needs it; it is slow to import

    config = aiokafka_config(kafka)
    if uses_sasl(kafka):
        return faust.SASLCredentials(
            username=config["sasl_plain_username"],
            password=config["sasl_plain_password"],
            ssl_context=config.get("ssl_context"),
            mechanism=config["sasl_mechanism"],
        )
    if uses_tls(kafka):
        return faust.SSLCredentials(config["ssl_context"])
    return None
