"""The subspace-locking test's own parts: continuing a run from its exact t0 state inside a frozen basis
(continuation.py) and the paired intervals over seeds and prompts its verdicts read (stats.py).
The locked adapter itself is adapters/locked.py; the experiment kind experiments/lock.py; the report report/locking.py."""
