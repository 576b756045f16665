"""HTTP transport: one module per resource (projects, builds, deployments, logs, system), plus
authentication, problem+json errors, pagination, JSON bodies and per-request observation.

Handlers parse the request, check the token, call `domain` (or `logs`, or `store` for plain
reads) with plain arguments, and present the result with the types of `launchdeck.contracts.api`.
No SQL here and no logic worth testing without HTTP.
"""
