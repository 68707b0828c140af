"""The team stack (issue #30): PostgreSQL, MLflow with basic auth, Prefect and process workers, on one machine.

`distilflow team up|down|status|env` and `make team-up|team-down|team-status`; docs/team.md.
"""
