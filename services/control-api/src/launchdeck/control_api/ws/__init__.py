"""WebSocket transport (SPEC §4): routes, the per-socket outbox and writer, the channels of the
multiplexed socket, and the reading of client messages. Frames are `launchdeck.contracts.ws`.
"""
