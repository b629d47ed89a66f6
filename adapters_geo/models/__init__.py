"""Model loading: specs, the embedded default, the tiny test model, quantized bases."""

from adapters_geo.models.loader import Base, BaseInfo, base_info, checkpoint_activations, load_base, load_teacher
from adapters_geo.models.weights import base_weights

__all__ = ["Base", "BaseInfo", "base_info", "base_weights", "checkpoint_activations", "load_base", "load_teacher"]
