"""The pipelines a command runs: a config to a finished run folder (runner.py: train, then geometry), and the
analysis drivers that read an update from disk (sources.py) and hand it to geometry/ and report/ (analysis.py)."""
