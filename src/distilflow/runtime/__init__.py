"""One stage process: the stage dispatch, the warm host, locks, hub mode, progress, dvc.yaml read as a file."""
