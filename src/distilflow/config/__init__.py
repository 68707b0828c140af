"""Settings: params.yaml typed (``params``), validation rule names (``rules``), YAML I/O. Imports only the shared
leaves."""
