"""Configuration: a run file as typed sections (run.py: RunConfig, load_config), the strict pydantic base every
section and experiment file shares (schema.py), and the YAML loader with `--set` overrides (yamlfile.py).

Nothing is imported here, so that a section's config (training/config.py, methods/config.py) can import
config/schema.py without loading the run config that imports it back."""
