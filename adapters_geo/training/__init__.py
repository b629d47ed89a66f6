"""Training: the one loop (loop.py), its config (config.py), the tracker that records the update
(tracker.py) and the resumable checkpoint (checkpoint.py)."""
