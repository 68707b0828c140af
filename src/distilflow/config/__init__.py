"""Settings: params.yaml typed (``params``, the root, with its sections in ``data_params``, ``training_params`` and
``release_params``), read with clear errors (``loading``), validation rule names (``rules``), YAML I/O. Imports only
the shared leaves."""
