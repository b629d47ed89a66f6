"""Rollouts: formatting prompts, sampling completions, scoring tokens under a model."""
