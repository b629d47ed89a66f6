"""adapters_geo: where does fine-tuning move a language model's weights?

Load a (quantized) base, attach a dense, LoRA or locked adapter, train, and measure the
geometry of the merged update ΔW against the dequantized base weights.
"""

from adapters_geo.adapters import (
    DenseConfig,
    LockedConfig,
    LoraConfig,
    adapter_kind,
    attach_adapter,
    merged_deltas,
    random_orthonormal_basis,
    top_singular_basis,
)
from adapters_geo.adapters.io import load_adapter, save_adapter
from adapters_geo.errors import AdaptersGeoError
from adapters_geo.models import base_info, base_weights, load_base, load_teacher

__version__ = "0.1.0"

__all__ = [
    "AdaptersGeoError", "DenseConfig", "LockedConfig", "LoraConfig", "adapter_kind", "attach_adapter",
    "base_info", "base_weights", "load_adapter", "load_base", "load_teacher", "merged_deltas",
    "random_orthonormal_basis", "save_adapter", "top_singular_basis",
]
