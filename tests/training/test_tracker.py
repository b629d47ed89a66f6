"""The tracker's online geometry: Sim_K to the first tracked update, effective rank, and rotation /
principal energy on a fixed layer subset, equal to the offline definitions on the stored snapshots.

Run: python -m pytest -q tests/training/test_tracker.py
"""

import math

import pytest
import torch

from adapters_geo import DenseConfig, LoraConfig, attach_adapter, load_base
from adapters_geo.geometry.aggregate import layer_subset
from adapters_geo.geometry.linalg import decompose64
from adapters_geo.geometry.online import group_means, similarity_to_first
from adapters_geo.geometry.reference import reference_svd
from adapters_geo.geometry.rotation import default_k
from adapters_geo.geometry.spectrum import effective_rank
from adapters_geo.geometry.trajectory import endpoint_along, subspace_similarity, top_vectors
from adapters_geo.models import base_weights
from adapters_geo.storage.snapshots import read_trajectory
from adapters_geo.training.tracker import Tracker


class Recorder:
    def __init__(self):
        self.rows = {}

    def scalars(self, step, values, prefix=""):
        self.rows[(step, prefix)] = values

    def histogram(self, step, name, values):
        pass


def perturb(model, scale: float, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(scale * torch.randn(p.shape, generator=generator))


def test_layer_subset_takes_every_matrix_of_evenly_spaced_layers():
    names = [f"model.layers.{i}.self_attn.{m}_proj.weight" for i in range(30) for m in "qk"] + ["lm.extra.weight"]
    chosen = layer_subset(names, 4)
    assert sorted({int(n.split(".")[2]) for n in chosen if "layers" in n}) == [0, 8, 16, 24]
    assert len(chosen) == 4 * 2 + 1 and layer_subset(names[:4], 4) == names[:4]  # 2 layers: all of them


def test_similarity_to_first_uses_the_common_rank_and_is_nan_for_a_zero_update():
    v = torch.linalg.qr(torch.randn(20, 16, dtype=torch.float64))[0]
    assert abs(similarity_to_first(v, v) - 1) < 1e-12
    assert abs(similarity_to_first(v[:, :4], v) - 1) < 1e-12  # a rank-4 update against a full one: over K = 4
    assert math.isnan(similarity_to_first(None, v))


def test_group_means_weight_fractions_by_parameters():
    rows = {"model.layers.0.mlp.up_proj.weight": {"params": 3, "principal_energy": 1.0, "rotation_right_max_deg": 2.0},
            "model.layers.0.self_attn.q_proj.weight": {"params": 1, "principal_energy": 0.0, "rotation_right_max_deg": 4.0}}
    out = group_means(rows)
    assert out["overall"] == {"principal_energy": 0.75, "rotation_right_max_deg": 3.0}
    assert out["q"]["principal_energy"] == 0.0 and set(out) == {"overall", "up", "q"}


def test_tracked_scalars_equal_the_offline_definitions(tmp_path):
    model = attach_adapter(load_base("tiny-llama").model, DenseConfig())
    tracker = Tracker(model, tmp_path, total_steps=2, steps=[1, 2], t0=1)
    log = Recorder()
    perturb(model, 1e-2, 0)
    tracker.on_step(1, log)
    first = log.rows[(1, "geometry/overall")]
    assert abs(first["sim_right_to_first"] - 1) < 1e-5
    perturb(model, 1e-2, 1)
    tracker.on_step(2, log)
    w0, snapshots = base_weights(model), read_trajectory(tmp_path)
    rotations, sims, ranks = [], [], []
    for name in layer_subset(list(w0)):  # tiny-llama has 2 layers: every matrix
        ref = reference_svd(w0[name], default_k(w0[name].shape))
        rotations.append(endpoint_along(w0[name], ref.u, ref.v, snapshots[2][name])["rotation_right_max_deg"])
        sims.append(subspace_similarity(top_vectors(snapshots[2][name].double(), 16), top_vectors(snapshots[1][name].double(), 16)))
        ranks.append(effective_rank(torch.linalg.svdvals(snapshots[2][name].double())))
    second = log.rows[(2, "geometry/overall")]
    assert abs(second["rotation_right_max_deg"] - sum(rotations) / len(rotations)) < 1e-3
    assert abs(second["sim_right_to_first"] - sum(sims) / len(sims)) < 1e-3  # step 1 is kept in bf16
    assert abs(second["effective_rank"] - sum(ranks) / len(ranks)) < 1e-3 * second["effective_rank"]
    assert 0 < second["principal_energy"] < 1 and 0 < second["sim_right_to_first"] < 1
    assert {"sim_right_to_first", "principal_energy", "rotation_right_max_deg"} <= set(log.rows[(2, "geometry/q")])


def test_a_resumed_tracker_measures_sim_against_the_same_first_update(tmp_path):
    model = attach_adapter(load_base("tiny-llama").model, LoraConfig(r=2))
    tracker = Tracker(model, tmp_path / "a", total_steps=3, steps=[1, 2, 3], t0=1, along_layers=0)
    resumed = Tracker(model, tmp_path / "b", total_steps=3, steps=[1, 2, 3], t0=1, along_layers=0)  # built at the start, as in a run
    perturb(model, 1e-2, 0)
    tracker.on_step(1, Recorder())
    assert all(v.shape[1] == 2 for v in tracker.first_right.values())  # a rank-2 LoRA: K = 2
    resumed.load_state_dict(tracker.state_dict())  # what a checkpoint after step 1 gives back
    perturb(model, 1e-2, 1)
    logs = Recorder(), Recorder()
    tracker.on_step(2, logs[0])
    resumed.on_step(2, logs[1])
    assert logs[0].rows[(2, "geometry/overall")] == logs[1].rows[(2, "geometry/overall")]
    assert "rotation_right_max_deg" not in logs[1].rows[(2, "geometry/overall")]  # along_layers=0: no subset metrics


def test_a_checkpoint_names_the_start_adapter_and_refuses_one_that_changed(tmp_path):
    # A run from a saved adapter: its checkpoint names that adapter (with adapter.json's hash) instead of
    # holding another copy of ΔW_start; a resume after the adapter was replaced is refused, not mismeasured.
    import pytest

    from adapters_geo.adapters.io import load_adapter, save_adapter
    from adapters_geo.errors import AdaptersGeoError
    from adapters_geo.training.tracker import Tracker

    torch.manual_seed(0)
    model = attach_adapter(load_base("tiny-llama").model, DenseConfig())
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.normal_(0, 1e-3)
    init = save_adapter(model, tmp_path / "init")
    resumed = load_adapter(load_base("tiny-llama").model, init)
    tracker = Tracker(resumed, tmp_path / "trajectory", 4, [], start=str(init))
    state = tracker.state_dict()
    assert state["start_deltas"] is None and state["start_adapter"] == str(init) and tracker.start
    again = Tracker(resumed, tmp_path / "trajectory2", 4, [], start=str(init))
    again.load_state_dict(state)
    assert again.start.keys() == tracker.start.keys()
    meta = init / "adapter.json"
    meta.write_text(meta.read_text() + " ")
    with pytest.raises(AdaptersGeoError, match="changed or went"):
        Tracker(resumed, tmp_path / "trajectory3", 4, [], start=str(init)).load_state_dict(state)


def test_a_lora_is_measured_from_its_factors_exactly_and_one_matrix_at_a_time(tmp_path, monkeypatch):
    # LoRA spectra come from the factors (QR + r × r SVD), also relative to a non-zero start (rank ≤ 2r);
    # they equal the dense SVD of ΔW_t − ΔW_start, and the tracker never holds every ΔW at once
    import weakref

    import adapters_geo.training.tracker as tracker_module
    from adapters_geo.adapters import delta_readers, merged_deltas
    from adapters_geo.storage.snapshots import read_spectra

    model = attach_adapter(load_base("tiny-llama").model, LoraConfig(r=2))
    perturb(model, 1e-1, 0)  # a run from a trained adapter: ΔW_start ≠ 0
    start = merged_deltas(model)
    live, peak = [0], [0]

    def counted(model):
        def wrap(read):
            def reading():
                delta = read()
                live[0] += 1
                peak[0] = max(peak[0], live[0])
                weakref.finalize(delta, lambda: live.__setitem__(0, live[0] - 1))
                return delta
            return reading
        return {name: wrap(read) for name, read in delta_readers(model).items()}

    monkeypatch.setattr(tracker_module, "delta_readers", counted)
    monkeypatch.setattr(tracker_module, "decompose64", lambda w, k, factors=None: (
        pytest.fail(f"{w.shape}: a LoRA went through the dense route") if factors is None else decompose64(w, k, factors)))
    tracker = Tracker(model, tmp_path, total_steps=3, steps=[1, 2, 3], t0=3, along_layers=0)
    assert tracker.start_factors.keys() == tracker.start.keys() == start.keys()
    perturb(model, 1e-1, 1)
    held = peak[0] = live[0]  # ΔW_start, held by the tracker
    torch.set_num_threads(2)  # two workers whatever the machine's core count (conftest restores the count)
    tracker.on_step(1, Recorder())  # a factors step
    assert 0 < peak[0] - held <= 2 + 1 < len(start)  # streamed: at most one ΔW per worker alive
    stored = read_spectra(tmp_path)[1]
    for name, delta in merged_deltas(model).items():
        exact = torch.linalg.svdvals((delta - start[name]).double())
        torch.testing.assert_close(stored[name][:4].double(), exact[:4], rtol=1e-5, atol=1e-7)
        assert (stored[name][4:] == 0).all() and (exact[4:] < 1e-5 * exact[0]).all()  # rank 2r = 4
    torch.testing.assert_close(read_trajectory(tmp_path)[1][name], delta - start[name], rtol=1e-4, atol=1e-6)


def test_a_lora_start_is_held_and_checkpointed_as_factors(tmp_path):
    # a LoRA run from a trained LoRA keeps ΔW_start as its factors (MBs at 1.7B, not 6.4 GB of matrices), in
    # memory and in its checkpoint; a tracker resumed from that state measures exactly what the original does
    from adapters_geo.training.tracker import FactoredDeltas

    model = attach_adapter(load_base("tiny-llama").model, LoraConfig(r=2))
    perturb(model, 1e-1, 0)
    tracker = Tracker(model, tmp_path / "a", total_steps=2, steps=[1, 2], t0=2, along_layers=1)
    state = tracker.state_dict()
    assert isinstance(tracker.start, FactoredDeltas) and state["start_deltas"] is None
    assert all(left.shape[1] == right.shape[0] == 2 for left, right in state["start_factors"].values())
    fresh = attach_adapter(load_base("tiny-llama").model, LoraConfig(r=2))  # a resume builds it before loading
    resumed = Tracker(fresh, tmp_path / "b", total_steps=2, steps=[1, 2], t0=2, along_layers=1)
    resumed.load_state_dict(state)
    resumed.model = model
    perturb(model, 1e-1, 1)
    logs = Recorder(), Recorder()
    tracker.on_step(1, logs[0])
    resumed.on_step(1, logs[1])
    assert logs[0].rows[(1, "geometry/overall")] == logs[1].rows[(1, "geometry/overall")]
    assert logs[0].rows[(1, "geometry/overall")]["update_norm_rel"] > 0


@pytest.mark.parametrize("adapter,spread", [(DenseConfig(), False), (DenseConfig(), True), (LoraConfig(r=2), False)])
def test_a_background_tracker_measures_the_step_it_was_given_as_inline_tracking_does(tmp_path, adapter, spread):
    # Off the training thread the tracker measures CPU copies taken at the tracked step: training on before the
    # worker gets to them changes nothing. Rows, snapshots and spectra equal the inline tracker's; a checkpoint
    # (state_dict) waits for the step in flight and logs it first.
    import threading

    from adapters_geo.storage.snapshots import read_spectra

    model = attach_adapter(load_base("tiny-llama").model, adapter)
    perturb(model, 1e-1, 0)  # a non-zero start for the LoRA (its factors are combined with the start's)
    inline = Tracker(model, tmp_path / "inline", total_steps=3, steps=[1, 2, 3], t0=2, along_layers=1)
    background = Tracker(model, tmp_path / "background", total_steps=3, steps=[1, 2, 3], t0=2, along_layers=1, background=True)
    background.spread = spread  # over the cores, as beside an accelerator (set from the model's device)
    torch.set_num_threads(3 if spread else 2)  # spread: 2 workers (one core is left to training); conftest restores it
    logs = Recorder(), Recorder()
    for step in (1, 2, 3):
        perturb(model, 1e-2, step)
        inline.on_step(step, logs[0])
        gate = threading.Event()
        background.background.submit(gate.wait, 60)  # the worker is busy: the step waits for it
        try:
            background.on_step(step, logs[1])
            assert (step, "tracking") not in logs[1].rows  # measured later, logged by whoever flushes
            perturb(model, 1.0, 100 + step)  # the model trains on before the worker gets to the step
        finally:
            gate.set()  # also when an assertion failed: the worker thread must not outlive the test
        if step == 2:
            background.state_dict()  # a checkpoint: the step in flight is measured and logged first
            assert (2, "tracking") in logs[1].rows
    background.flush()  # after training (the runner): the last step is logged
    background.close()
    for step in (1, 2, 3):
        ours, theirs = logs[1].rows[(step, "geometry/overall")], logs[0].rows[(step, "geometry/overall")]
        assert ours.keys() == theirs.keys() and all(math.isclose(ours[k], theirs[k], rel_tol=1e-6, abs_tol=1e-9) for k in ours)
        assert logs[1].rows[(step, "tracking")]["background_seconds"] > 0
    spectra, expected = read_spectra(tmp_path / "background"), read_spectra(tmp_path / "inline")
    snapshots, exact = read_trajectory(tmp_path / "background"), read_trajectory(tmp_path / "inline")
    for step in (1, 2, 3):
        for name in expected[step]:
            torch.testing.assert_close(spectra[step][name], expected[step][name], rtol=1e-5, atol=1e-8)
            torch.testing.assert_close(snapshots[step][name], exact[step][name], rtol=1e-4, atol=1e-6)


def test_a_failure_in_the_background_reaches_the_training_thread(tmp_path, monkeypatch):
    # the worker's exception is raised where the step is flushed (the next tracked step, a checkpoint), not lost
    model = attach_adapter(load_base("tiny-llama").model, DenseConfig())
    tracker = Tracker(model, tmp_path, total_steps=2, steps=[1, 2], t0=2, along_layers=0, background=True)

    def broken(*args):
        raise RuntimeError("disk full while measuring")

    monkeypatch.setattr(tracker, "finish_matrix", broken)
    perturb(model, 1e-2, 0)
    tracker.on_step(1, Recorder())
    with pytest.raises(RuntimeError, match="disk full while measuring"):
        tracker.state_dict()
    tracker.close()
