"""adapters_geo: where does fine-tuning move a language model's weights?

Load a (quantized) base, attach a dense, LoRA or locked adapter, train, and measure the
geometry of the merged update ΔW against the dequantized base weights. The command line's
jobs are functions here too (api.py): train, run_experiment, geometry_of, trajectory_of,
export_merged, write_report.
"""

import logging

# bitsandbytes warns at import, on AVX512-BF16 CPUs, that an optional 4-bit CPU kernel package is
# missing; our loader keeps the layer layout that does not use that kernel (models/quant.py).
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)

from adapters_geo.adapters import (  # noqa: E402
    DenseConfig,
    LockedConfig,
    LoraConfig,
    adapter_kind,
    attach_adapter,
    merged_deltas,
    random_orthonormal_basis,
    top_singular_basis,
)
from adapters_geo.adapters.io import load_adapter, save_adapter  # noqa: E402
from adapters_geo.api import export_merged, geometry_of, run_experiment, train, trajectory_of, write_report  # noqa: E402
from adapters_geo.errors import AdaptersGeoError  # noqa: E402
from adapters_geo.models import base_info, base_weights, load_base, load_teacher  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    # the command line's jobs as functions (api.py)
    "train", "run_experiment", "geometry_of", "trajectory_of", "export_merged", "write_report",
    # the building blocks
    "AdaptersGeoError", "DenseConfig", "LockedConfig", "LoraConfig", "adapter_kind", "attach_adapter",
    "base_info", "base_weights", "load_adapter", "load_base", "load_teacher", "merged_deltas",
    "random_orthonormal_basis", "save_adapter", "top_singular_basis",
]
