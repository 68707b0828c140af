"""The MLflow model registry: registration, the promotion gate, aliases, the promotion lock, lineage, model cards,
packaging."""
