"""NATS transport of what the control-api consumes: status events (a durable JetStream
consumer) and max-deliveries advisories (core NATS). Each decodes, hands a plain message to
`domain`, and turns the outcome into acks or publishes.
"""
