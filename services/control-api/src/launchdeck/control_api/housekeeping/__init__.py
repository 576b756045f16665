"""What keeps the platform's stores bounded: periodic pruning of archived logs, the event inbox
and the `artifacts` object store, one replica at a time (`prune`); the object store side of it
(`artifacts`). The decisions are `domain.artifacts` and the retention settings."""
