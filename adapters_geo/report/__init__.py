"""Writing results for people: geometry.json + summary + plots (geometry.py), trajectory.json +
plot (trajectory.py), the cross-run report.md (runs.py), all through one plotting helper
(plots.py). No maths here: the numbers come from geometry/, read through pipeline/analysis.py."""
