"""Many stage runs: the DVC plan, flow settings, reports and retries, scratch project copies."""
