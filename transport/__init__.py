"""The transport: moves bytes between the parties, and knows nothing of learning.

Modules
-------
codec
    The msgpack wire format, derived from :mod:`tormentor.engine.protocol`, strictly decoded.
subjects, nats_server, auth_callout, errors
    NATS subjects and inbox prefixes; the embedded nats-server with its identities; the
    auth-callout service that admits anonymous clients; one error class per caller
    decision, translated from nats-py in one place.
broker_service, client_runner
    The broker on NATS (batched), and clients driven over NATS.
tor, tor_front, tor_client
    Real tor daemons (private network, onion service, SOCKS forwarders); the broker
    behind its onion service; clients dialling it.
load_clients
    The load generators and the echo baseline of ``tormentor-engine load``.
"""
