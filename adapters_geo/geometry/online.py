"""Cheap geometry scalars for tracked training steps (TensorBoard), from ΔW and its exact spectrum.

bf16 sparsity (parameter-weighted), update_norm_rel and stable rank (spectrum.stable_rank of the
spectrum the trajectory already computes; undefined for a zero update and then left out of the
mean), overall and per module type. The full suite runs on the final update; this keeps a
tracked step cheap.
"""

import math

from adapters_geo.geometry.aggregate import module_type
from adapters_geo.geometry.sparsity import sparsity_bf16
from adapters_geo.geometry.spectrum import stable_rank


def online_scalars(reference, deltas: dict, spectra: dict) -> dict:
    """{"overall": {...}, "<type>": {...}} of sparsity_bf16, update_norm_rel, stable_rank.

    reference {name: W_start} (a mapping, read one matrix at a time), deltas {name: ΔW_t},
    spectra {name: singular values of ΔW_t, descending}.
    """
    groups = {}
    for name, delta in deltas.items():
        w0 = reference[name]
        row = {
            "params": delta.numel(),
            "sparsity_bf16": sparsity_bf16(w0, w0 + delta),
            "update_norm_rel": delta.norm().item() / max(w0.norm().item(), 1e-12),
            "stable_rank": stable_rank(spectra[name]) if spectra[name].numel() else math.nan,
        }
        for group in ("overall", module_type(name)):
            groups.setdefault(group, []).append(row)
    out = {}
    for group, rows in groups.items():
        params = sum(r["params"] for r in rows)
        ranks = [r["stable_rank"] for r in rows if not math.isnan(r["stable_rank"])]
        out[group] = {
            "sparsity_bf16": sum(r["sparsity_bf16"] * r["params"] for r in rows) / params,
            "update_norm_rel": sum(r["update_norm_rel"] for r in rows) / len(rows),
            "stable_rank": sum(ranks) / len(ranks) if ranks else math.nan,
        }
    return out
