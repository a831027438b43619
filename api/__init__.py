"""The HTTP gateway: validates submissions and turns them into Kafka commands, reads Postgres.

The API never writes job state itself. A submit or cancel becomes a command on the tenant's
partition of ``jobs.commands`` and is answered once Kafka acknowledged it, so submissions go on
being accepted while Postgres is down; reads come from Postgres, the source of truth.
"""
