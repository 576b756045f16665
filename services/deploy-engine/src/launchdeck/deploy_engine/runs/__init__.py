"""One-off runs: a command of a project's live production release, run once in its own process
(`ld.jobs.run`; docs/architecture.md, "Runs")."""
