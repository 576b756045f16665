"""Running apps: the processes of process releases, from activation to recovery.

`records` (what runs, on disk), `ports`, `process` (one run of a command: launched through the
platform's launcher, sandboxed, adoptable), `app_logs` (output to the LOGS stream, masked),
`health_check`, `env` (a process's environment), `supervisor` (restarts), `fleet` (every instance:
readiness, draining, previews, recovery), `activation` (a deployment of an app, zero downtime),
`shutdown` (stopping every app of a state dir: for whoever owns the platform's lifetime).
"""
