"""The logic: projects, builds, deployments, applying status events, settling abandoned jobs.

Functions take plain arguments (a connection, records, request bodies of `contracts.api`) and
raise `domain.errors`; they know neither HTTP nor NATS (commands leave through the outbox).
"""
