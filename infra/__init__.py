"""Local Kafka broker and Postgres for development, CI and tests; see :mod:`infra.supervisor`."""
