"""A LoRA continued inside a subspace: the subspace-locking test's locked arms for a LoRA source (docs/geometry.md).

The arm keeps the source's LoRA at t0 (A_t0 (r, n), B_t0 (m, r), scaling s, and its optimizer state, as the
unconstrained arm does) and confines what moves after t0, so that the merged increment
ΔW − ΔW_t0 = s (B A − B_t0 A_t0) has every row in span(V), V (n, K) orthonormal:
- A's update is projected onto span(V), δA ← δA V Vᵀ: A's part outside it, A⊥ = A_t0 (I − V Vᵀ), stays fixed;
- B's update is projected off the directions that would move B A⊥, δB ← δB (I − Q Qᵀ), Q (r, q) an orthonormal
  basis of A⊥'s column space (in R^r; directions whose singular value is below RTOL · σ_max(A_t0) are not held);
so B A⊥ = B_t0 A⊥ throughout and s (B A − B_t0 A_t0) = s (B A∥ − B_t0 A_t0∥), rows in span(V).
For the early basis of a LoRA trained from zero (ΔW_t0 = s B_t0 A_t0, rank ≤ r ≤ K), span(V) holds A_t0's rows:
A⊥ ≈ 0, B moves freely, and the arm is the unconstrained LoRA with A's update projected. For a random or final basis
A⊥ has rank up to r and B is held in as many directions (`confine` returns the share per matrix): the increment is
then ≈ s B_t0 δA, small while B_t0 is, so those arms move little. That is the price of exact confinement for a
factored update (letting B move would put its movement along A_t0's rows, the early subspace itself, into a random
arm); a LoRA lock compares the early arm with the unconstrained and frozen ones, its random arm is no longer a fair floor
(smoke run, tiny-llama, r = K = 16: increment² unconstrained 8.9, early 7.9 (all inside span(V)), random 0.024,
final 0.060).

Written here rather than taken from peft: peft trains A and B freely; confining their joint product to a subspace is
this toolkit's test. Modes (locking/continuation.py): `projected` projects the optimizer's update after each step
(the first locked step is the unconstrained one, projected: tests/locking/test_lora_lock.py); `gradient` projects
the gradients instead (g_A ← g_A V Vᵀ, g_B ← g_B (I − Q Qᵀ), the published recipe's analogue; Adam's per-coordinate
scaling then moves A out of span(V)).
"""

import torch

from adapters_geo.adapters.lora import ADAPTER_NAME, lora_layers
from adapters_geo.errors import AdaptersGeoError

CONFINED = "adapters_geo_confined_lora"  # model attribute: the Confined layers the optimizer projects
RTOL = 1e-3


class Confined:
    """One LoRA layer's A and B, their updates projected so that s (B A − B_t0 A_t0) stays in span(V) on the right."""

    def __init__(self, layer, right: torch.Tensor):
        if getattr(layer, "fan_in_fan_out", False):
            raise AdaptersGeoError("a LoRA layer stored fan_in_fan_out cannot be locked", "lock a LoRA of a Linear base layer")
        self.a, self.b = layer.lora_A[ADAPTER_NAME].weight, layer.lora_B[ADAPTER_NAME].weight
        if right.shape[0] != self.a.shape[1]:
            raise AdaptersGeoError(f"locking basis of {right.shape[0]} rows for a LoRA A of {self.a.shape[1]} columns",
                                   "build the basis from this source's update")
        self.v = right.to(self.a.device, torch.float32)
        with torch.no_grad():
            a = self.a.detach().float()
            outside = a - (a @ self.v) @ self.v.T  # A⊥ (r, n)
            u, s, _ = torch.linalg.svd(outside.double(), full_matrices=False)
            top = torch.linalg.matrix_norm(a.double(), ord=2)
            self.q = u[:, s > RTOL * top].float()  # (r, q)
        self.held = self.q.shape[1] / self.a.shape[0]
        self.before = None

    def project_a(self, update: torch.Tensor) -> torch.Tensor:
        return (update.float() @ self.v) @ self.v.T

    def project_b(self, update: torch.Tensor) -> torch.Tensor:
        update = update.float()
        return update - (update @ self.q) @ self.q.T if self.q.shape[1] else update

    @torch.no_grad()
    def before_step(self) -> None:
        self.before = (self.a.detach().clone(), self.b.detach().clone())

    @torch.no_grad()
    def project_update(self) -> None:
        """After an optimizer step: A ← A_prev + P_A(A − A_prev), B ← B_prev + P_B(B − B_prev)."""
        a0, b0 = self.before
        self.a.copy_(a0 + self.project_a(self.a - a0).to(a0.dtype))
        self.b.copy_(b0 + self.project_b(self.b - b0).to(b0.dtype))
        self.before = None

    def project_gradients(self) -> None:
        """From now on A's and B's gradients are projected before any optimizer sees them (mode `gradient`)."""
        self.a.register_hook(lambda g: self.project_a(g).to(g.dtype))
        self.b.register_hook(lambda g: self.project_b(g).to(g.dtype))


def confine(model, right: dict, mode: str = "projected") -> dict:
    """Confine every LoRA layer of `model` to its basis right[name]; returns {name: share of B's rank held}."""
    layers = lora_layers(model)
    missing = sorted(set(layers) - set(right))
    if missing:
        raise AdaptersGeoError(f"no locking basis for the LoRA layer {missing[0]} (and {len(missing) - 1} more)",
                               "build the bases from this source's own update")
    confined = {name: Confined(layer, right[name]) for name, layer in layers.items()}
    if mode == "gradient":
        for layer in confined.values():
            layer.project_gradients()
    elif mode == "projected":
        setattr(model, CONFINED, list(confined.values()))
    else:
        raise AdaptersGeoError(f"locking mode '{mode}' is not available for a LoRA source",
                               "use mode projected or gradient (adapter mode re-parametrises a dense update)")
    return {name: layer.held for name, layer in confined.items()}


def confined_layers(model) -> list:
    return list(getattr(model, CONFINED, []))
