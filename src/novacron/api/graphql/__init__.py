"""GraphQL at ``/v1/graphql`` (Strawberry): the REST API's services, callers and tenant scoping.

``schema.py`` assembles the roots (``queries.py``, ``mutations.py``, ``subscriptions.py``) over the
types of ``types.py``, whose relations load in batches (``loaders.py``) within the limits of
``limits.py``; ``transport.py`` serves it over HTTP and WebSocket. The schema's text is committed as
``docs/schema.graphql`` (``scripts/graphql_schema.py --check`` in CI).
"""
