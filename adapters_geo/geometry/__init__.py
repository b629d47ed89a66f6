"""The geometry of an update: pure maths, tensors in, numbers out (docs/geometry.md defines every metric).
linalg.py (float64 SVD, angles), sparsity.py, rotation.py, spectrum.py, suite.py (all metrics of one matrix),
reference.py (the base's decomposition), aggregate.py, online.py (during training), trajectory.py (along ΔW_t)."""
