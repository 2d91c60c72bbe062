"""MLflow only: client, offline journal and replay, Lightning callback, registry, pyfunc."""
