"""What quantization does to the reference W0, and which geometry readings survive it.

    python benchmarks/quant_reference_gap.py                                   # SmolLM2-135M, 8bit and 4bit
    python benchmarks/quant_reference_gap.py --run runs/opd_dense --layers 4   # + one run's ΔW read against both W0s

Part 1, per module type and over the model: the gap between the dequantized W0_q of an 8-bit / 4-bit
(bitsandbytes) base and the full-precision W0 it was quantized from, as a relative Frobenius norm
‖W0_q − W0‖ / ‖W0‖ and as the bf16 "unchanged" share of W0_q against W0 (the sparsity test of
docs/geometry.md). A 40-step update moves W0 by ~1e-3 relative; the quantization gap is what a geometry
reading against W0_q would call an "update" if W0_q were compared with the full-precision checkpoint.

Part 2 (--run): the same ΔW (a finished run's adapter minus its start) read against W_start built on the
full-precision W0 and on each dequantized W0_q (the reference a quantized run's geometry uses), on the
matrices of `--layers` evenly spaced layers: every endpoint diagnostic's mean side by side, with the
relative change. A reading whose change is small survives quantization; one that moves by more than the
methods differ by does not. (ΔW is the fp32 update of a run on the full-precision base: this isolates the
reference, not the training, of a quantized run.)
"""

import argparse
import json
from collections import defaultdict
from pathlib import Path

import torch

from adapters_geo import base_weights, load_base
from adapters_geo.adapters.io import load_saved_deltas
from adapters_geo.geometry.aggregate import layer_subset, module_type
from adapters_geo.geometry.reference import reference_svd
from adapters_geo.geometry.sparsity import sparsity_bf16
from adapters_geo.geometry.suite import Settings, matrix_metrics
from adapters_geo.storage.runfolder import RunFolder

READINGS = ("sparsity_bf16", "rotation_right_max_deg", "rotation_left_max_deg", "spectral_drift", "principal_overlap",
            "low_magnitude_overlap", "principal_energy_ratio", "stable_rank", "update_norm_rel")


def gap_table(full: dict, quantized: dict) -> dict:
    """{type: {"rel": parameter-weighted ‖ΔW0‖/‖W0‖ (root of summed squares), "unchanged": bf16 unchanged share}}."""
    sums = defaultdict(lambda: [0.0, 0.0, 0.0, 0])  # |gap|², |W0|², unchanged entries, entries
    for name, w0 in full.items():
        for key in (module_type(name), "all"):
            row = sums[key]
            row[0] += (quantized[name] - w0).double().square().sum().item()
            row[1] += w0.double().square().sum().item()
            row[2] += sparsity_bf16(w0, quantized[name]) * w0.numel()
            row[3] += w0.numel()
    return {key: {"rel": (g / w) ** 0.5, "unchanged": u / n} for key, (g, w, u, n) in sums.items()}


def readings(starts: dict, deltas: dict, names: list, settings: Settings) -> dict:
    """Mean of each endpoint reading over `names`, ΔW read against `starts`."""
    rows = []
    for name in names:
        w0 = starts[name]
        ref = reference_svd(w0.double(), settings.reference_columns(w0.shape))
        rows.append(matrix_metrics(w0, deltas[name], ref, settings))
    return {key: sum(r[key] for r in rows) / len(rows) for key in READINGS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--quants", default="8bit,4bit")
    parser.add_argument("--run", help="a finished dense or LoRA run on the full-precision base (part 2)")
    parser.add_argument("--layers", type=int, default=4, help="layers whose matrices part 2 reads (evenly spaced)")
    parser.add_argument("--out", help="write the numbers as JSON here too")
    args = parser.parse_args()

    full = base_weights(load_base(args.model, "none").model)
    result = {"model": args.model, "gap": {}, "readings": {}}
    quantized = {}
    for quant in args.quants.split(","):
        quantized[quant] = base_weights(load_base(args.model, quant).model)
        result["gap"][quant] = gap_table(full, quantized[quant])
    print(f"{args.model}: dequantized W0_q against the full-precision W0 (bitsandbytes, per module type)")
    print(f"{'type':<6}" + "".join(f"{q + ' ‖ΔW0‖/‖W0‖':>22}{q + ' bf16 unchanged':>20}" for q in quantized))
    for key in sorted(result["gap"][next(iter(quantized))], key=lambda k: (k == "all", k)):
        print(f"{key:<6}" + "".join(f"{result['gap'][q][key]['rel']:>22.4f}{result['gap'][q][key]['unchanged']:>20.4f}"
                                    for q in quantized))

    if args.run:
        run = RunFolder(args.run)
        at_end = dict(load_saved_deltas(run.adapter)[1])
        init = (run.config_dict() or {}).get("init")  # the adapter the run started from (OPD / RLVR: the SFT anchor)
        start = dict(load_saved_deltas(init)[1]) if init else {n: torch.zeros_like(d) for n, d in at_end.items()}
        deltas = {n: at_end[n] - start[n] for n in at_end}
        names = layer_subset(sorted(deltas), args.layers)
        settings = Settings()
        refs = {"none": full, **quantized}
        for quant, w0 in refs.items():
            result["readings"][quant] = readings({n: w0[n] + start[n] for n in names}, deltas, names, settings)
        print(f"\n{args.run}: ΔW (its adapter minus its start) read against W_start on each W0, "
              f"{len(names)} matrices of {args.layers} layers (means)")
        print(f"{'reading':<24}" + "".join(f"{q:>14}" for q in refs) + "".join(f"{q + ' vs none':>16}" for q in quantized))
        for key in READINGS:
            base = result["readings"]["none"][key]
            values = "".join(f"{result['readings'][q][key]:>14.4g}" for q in refs)
            changes = "".join(f"{(result['readings'][q][key] - base) / abs(base) if base else float('nan'):>+16.1%}"
                              for q in quantized)
            print(f"{key:<24}{values}{changes}")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
