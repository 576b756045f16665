"""The pure rules of a generation job: expanding variables into items, pricing, the budget,
the response-cache key and progress throttling. No HTTP, NATS or Postgres here: the control-api
and the generator both call these, so a rule is written once (docs/architecture.md)."""
