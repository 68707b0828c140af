"""MLflow: one run per stage (``runs``), the tag keys (``tags``), the store's health."""
