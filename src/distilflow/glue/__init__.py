"""The GLUE suite across tasks, and its table."""
