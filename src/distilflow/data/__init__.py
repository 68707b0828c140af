"""The data: GLUE files in and out, their validation (Great Expectations), rewrites of training text."""
