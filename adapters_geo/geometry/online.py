"""Cheap geometry scalars for tracked training steps (TensorBoard), from ΔW and its top spectrum.

bf16 sparsity (parameter-weighted), update_norm_rel and stable rank (σ₁ from the randomized
top-r SVD the trajectory already computes), overall and per module type. The full suite runs
on the final update; this keeps a tracked step cheap.
"""

from adapters_geo.geometry.aggregate import module_type
from adapters_geo.geometry.sparsity import sparsity_bf16


def online_scalars(reference: dict, deltas: dict, spectra: dict) -> dict:
    """{"overall": {...}, "<type>": {...}} of sparsity_bf16, update_norm_rel, stable_rank."""
    groups = {}
    for name, delta in deltas.items():
        w0 = reference[name]
        sigma1 = float(spectra[name][0]) if spectra[name].numel() else 0.0
        norm = delta.norm().item()
        row = {
            "params": delta.numel(),
            "sparsity_bf16": sparsity_bf16(w0, w0 + delta),
            "update_norm_rel": norm / max(w0.norm().item(), 1e-12),
            "stable_rank": (norm**2 / sigma1**2) if sigma1 > 0 else 0.0,
        }
        for group in ("overall", module_type(name)):
            groups.setdefault(group, []).append(row)
    out = {}
    for group, rows in groups.items():
        params = sum(r["params"] for r in rows)
        out[group] = {
            "sparsity_bf16": sum(r["sparsity_bf16"] * r["params"] for r in rows) / params,
            "update_norm_rel": sum(r["update_norm_rel"] for r in rows) / len(rows),
            "stable_rank": sum(r["stable_rank"] for r in rows) / len(rows),
        }
    return out
