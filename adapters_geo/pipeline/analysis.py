"""Analysis drivers: read the update from disk, run the geometry (pure maths), hand it to report/.

- `analyse(source, settings)`: the endpoint suite over a source, matrix by matrix: one (W0, ΔW)
  pair and its decompositions in memory at a time; the reference's SVD from the disk cache.
- `run_geometry(folder)`: endpoint geometry of a run against its own start.
- `run_trajectory(folder)`: trajectory diagnostics of a run's snapshots, t0 from the RunFolder (with endpoint
  metrics along the run when its adapter records its base: not for a plain peft folder, integrations/).
- `run_null(folder)`: Sim_K(t0, T) against its shuffle and random-walk nulls (geometry/trajectory_null.py) over a
  layer subset (the `claims` experiment's claim 2).
- `geometry_command(...)`: `adapters-geo geometry` (checkpoints or an adapter on a base).
- `run_overlap(a, b)`: `adapters-geo overlap`: how much two runs' updates share, matrix by matrix.
"""

import json
import time
from pathlib import Path

from tqdm import tqdm

from adapters_geo.adapters.io import META_FILE
from adapters_geo.errors import AdaptersGeoError
from adapters_geo.geometry.aggregate import aggregate
from adapters_geo.geometry.suite import Settings, matrix_metrics
from adapters_geo.geometry.aggregate import layer_subset
from adapters_geo.geometry.rotation import default_k
from adapters_geo.geometry.trajectory import K_DEFAULT, endpoint_along, model_trajectory
from adapters_geo.geometry.trajectory_null import model_null_test
from adapters_geo.report.geometry import write_result
from adapters_geo.report.trajectory import write_trajectory
from adapters_geo.storage.runfolder import RunFolder, refuse_inside_finished_run
from adapters_geo.pipeline.sources import Source, adapter_source, checkpoint_source, reference_key, run_source, run_start
from adapters_geo.storage.svd_cache import SVDCache
from adapters_geo.storage.snapshots import read_exact, read_index, read_parts, read_step_spectra


def analyse(source: Source, settings: Settings, cache: SVDCache | None = None, progress: bool = True,
            known_spectra: dict | None = None) -> dict:
    """{"meta", "matrices", "by_type", "by_layer", "by_block", "overall", "spectra"} for `source`.

    `known_spectra` {name: singular values of that ΔW}: computed already (a run's tracked final step), not again.
    """
    known_spectra = known_spectra or {}
    cache = cache or SVDCache(source.cache_key)
    rows, spectra = {}, {}
    start = time.perf_counter()
    bar = tqdm(source.pairs(), total=len(source.names), desc="geometry", unit="matrix", disable=not progress)
    for name, w0, delta in bar:
        ref = cache.get(name, w0, settings.reference_columns(w0.shape))
        known = known_spectra.get(name)
        if known is not None and not same_energy(known, delta):
            known = None  # measured from another start, or a stale trajectory: decompose this ΔW itself
        rows[name], spectra[name] = matrix_metrics(w0, delta, ref, settings, with_spectra=True, delta_spectrum=known)
    meta = dict(source.meta)
    meta.update(settings.to_dict())
    meta.update({"seconds": time.perf_counter() - start, "svd_cache": {"hits": cache.hits, "misses": cache.misses}})
    return {"meta": meta, "matrices": rows, **aggregate(rows), "spectra": spectra}


def same_energy(spectrum, delta, rtol: float = 1e-4) -> bool:
    """Whether Σσ² of a stored spectrum equals ‖ΔW‖²_F (a cheap check that it belongs to this ΔW)."""
    energy, norm = spectrum.double().square().sum().item(), delta.double().square().sum().item()
    return abs(energy - norm) <= rtol * norm + 1e-30


def run_geometry(folder, settings: Settings | None = None, progress: bool = True) -> Path:
    """Write FOLDER/geometry/: the endpoint geometry of a finished run against its own start."""
    folder = RunFolder(folder)
    known = final_spectra(folder)
    return write_result(analyse(run_source(folder), settings or Settings(), progress=progress, known_spectra=known),
                        folder.geometry_dir, overwrite=True)


def final_spectra(folder: RunFolder) -> dict:
    """{name: σ of ΔW_T − ΔW_start} the tracker stored at the run's last step (the endpoint's ΔW), else {}."""
    steps = ((folder.config_dict() or {}).get("train") or {}).get("steps")
    return read_step_spectra(folder.trajectory_dir, steps) if steps else {}


def run_trajectory(folder, k: int = K_DEFAULT) -> dict:
    """Trajectory diagnostics of a run's snapshots; early-step quantities at the run's t0."""
    folder = RunFolder(folder)
    if not (folder.trajectory_dir / "index.json").is_file():
        raise AdaptersGeoError(f"{folder.path} has no trajectory ({folder.trajectory_dir / 'index.json'} is missing)",
                               "pass a run folder written by adapters-geo train")
    snapshots, spectra, vectors = read_parts(folder.trajectory_dir)
    if len(snapshots) < 2:
        raise AdaptersGeoError(f"{folder.path} has {len(snapshots)} tracked step(s)", "track at least two steps")
    early = early_step(folder, read_index(folder.trajectory_dir))
    result = model_trajectory(snapshots, k, early, spectra, vectors)
    result["early_step"] = early
    if (folder.adapter / META_FILE).is_file():  # a plain peft adapter/ (no base spec) has no W_start to read
        result["along"] = along_trajectory(folder, snapshots)
    return result


def run_null(folder, k: int = K_DEFAULT, layers: int = 2, draws: int = 200, walks: int = 20, seed: int = 0) -> dict:
    """Sim_K(t0, T) of a run against its shuffle and random-walk nulls (trajectory_null.model_null_test), over every
    matrix of `layers` evenly spaced layers, from the exact snapshots the run kept of them (train.track_exact_layers);
    t0 as in run_trajectory; `seed` of the null's draws."""
    folder = RunFolder(folder)
    if not (folder.trajectory_dir / "index.json").is_file():
        raise AdaptersGeoError(f"{folder.path} has no trajectory ({folder.trajectory_dir / 'index.json'} is missing)",
                               "compare runs written by adapters-geo train with tracking on")
    index = read_index(folder.trajectory_dir)
    steps = sorted(int(s) for s in index)
    early = early_step(folder, index) if index else None
    if early is None or early == steps[0] or len(steps) < 3:
        raise AdaptersGeoError(f"{folder.path} tracks {steps} with t0 {early}: the null test needs t0 stored in full and "
                               "tracked steps before and after it", "train it with its default track_steps")
    start = time.perf_counter()
    names = list(read_step_spectra(folder.trajectory_dir, steps[-1]))  # every target matrix, from the smallest part
    snapshots = read_exact(folder.trajectory_dir, layer_subset(names, layers))
    try:
        found = model_null_test(snapshots, early, k=k, draws=draws, walks=walks, seed=seed)
    except ValueError as exc:
        raise AdaptersGeoError(f"{folder.path}: {exc}", "compare runs whose update moved these matrices") from None
    return {**found, "layers": layers, "seconds": time.perf_counter() - start}


def along_trajectory(folder: RunFolder, snapshots: dict) -> dict:
    """Mean rotation, principal energy and relative norm of ΔW_t at every tracked step, over a layer subset.

    Subset: every matrix of about 4 evenly spaced layers (aggregate.layer_subset, the tracker's too),
    measured against the run's start; factor snapshots are top-r reconstructions (storage/snapshots.py).
    """
    chosen = layer_subset(list(snapshots[max(snapshots)]))
    start = run_start(folder)
    adapter_meta = folder.adapter / META_FILE  # ours records its base; a plain peft folder does not
    meta = json.loads(adapter_meta.read_text()) if adapter_meta.is_file() else {}
    cache = SVDCache(reference_key(folder.config_dict() or {}, meta) if "base" in meta else None)  # the endpoint suite's
    rows = {step: [] for step in sorted(snapshots)}
    for name in chosen:
        w0 = start[name].double()
        ref = cache.get(name, w0, default_k(w0.shape))
        for step in rows:
            rows[step].append(endpoint_along(w0, ref.u, ref.v, snapshots[step][name]))
    keys = ("rotation_right_max_deg", "principal_energy", "update_norm_rel")
    mean = lambda values: (sum(v for v in values if v == v) / max(1, sum(v == v for v in values)))  # NaN-free mean
    curve = [{"step": step, **{key: mean([r[key] for r in found]) for key in keys}} for step, found in rows.items()]
    return {"matrices": chosen, "steps": curve}


def early_step(folder: RunFolder, index: dict) -> int | None:
    """The run's t0 when its trajectory holds it in full (in bf16, or as a reference to the saved t0 state's adapter);
    older runs: the full snapshot before the last step nearest 20%."""
    last = max(int(s) for s in index)
    full = sorted(int(s) for s, entry in index.items() if entry["format"] != "factors" and int(s) < last)
    t0 = folder.t0
    if t0 is not None and t0 in full:
        return t0
    return min(full, key=lambda s: abs(s - 0.2 * last)) if full else None


RUN_FILES = ("config.json", "done.json", "checkpoint", "metrics.jsonl", "adapter", "trajectory", "state.pt")
RESULT_FILES = ("geometry.json", "trajectory.json")  # what an earlier geometry or trajectory result holds


def check_replaceable(out: Path, overwrite: bool) -> None:
    """`out` may be written: new, or with `overwrite` an earlier result (geometry.json or trajectory.json, nothing of a run)."""
    refuse_inside_finished_run(out, "--out")
    if not out.exists():
        return
    if not out.is_dir():
        raise AdaptersGeoError(f"--out {out} is a file", "choose a folder for --out")
    if not overwrite:
        raise AdaptersGeoError(f"{out} already exists", "pass --overwrite or choose another --out")
    run_like = [name for name in RUN_FILES if (out / name).exists()]
    if run_like:
        raise AdaptersGeoError(f"--overwrite would replace {out}, which holds a training run ({', '.join(run_like)})",
                               "choose another --out; --overwrite replaces only an earlier geometry or trajectory result")
    if not any((out / name).is_file() for name in RESULT_FILES) and any(out.iterdir()):
        raise AdaptersGeoError(f"--overwrite would replace {out}, which holds no {' or '.join(RESULT_FILES)} (not an earlier result)",
                               "choose another --out; --overwrite replaces only an earlier geometry or trajectory result")


def default_trajectory_out(folder, k: int = K_DEFAULT) -> Path:
    """Where `trajectory RUN` writes without --out: RUN/trajectory_geometry while the run is unfinished (a trainer
    callback's folder, a run trained with --no-analysis before it finished); beside a finished run, which no command
    changes (its own trajectory_geometry/ was written by the run), RUN-trajectory-K<k>."""
    folder = RunFolder(folder)
    if folder.done_file.is_file():
        path = folder.path.resolve()  # `trajectory .` from inside the run too
        return path.with_name(f"{path.name}-trajectory-K{k}")
    return folder.trajectory_geometry_dir


def write_run_trajectory(folder, k: int = K_DEFAULT, out=None, overwrite: bool = False) -> Path:
    """Write trajectory.json + trajectory.png into `out` (default: default_trajectory_out)."""
    out = Path(out or default_trajectory_out(folder, k))
    check_replaceable(out, overwrite)
    result = run_trajectory(folder, k)
    return write_trajectory(result, out, overwrite=overwrite)


MOVEMENT_PROMPTS = 64  # held-out prompts the behavioural movement is measured on (the first of the test split)


def run_movement(folder, batch: int = 8, prompts: int = MOVEMENT_PROMPTS) -> dict:
    """Write FOLDER/behaviour.json: mean per-token KL(π_T ‖ π_start) on held-out reference contexts.

    How far the policy moved, in behaviour rather than weights: with ‖ΔW‖/‖W0‖ it lets methods be
    compared at matched movement instead of at equal learning rate.
    """
    from adapters_geo.adapters.io import load_adapter
    from adapters_geo.models import load_base
    from adapters_geo.tasks import load_task
    from adapters_geo.tasks.outcome import reference_kl

    folder = RunFolder(folder)
    config = folder.config()
    examples = load_task(config.task).test[:prompts]
    tuned = load_base(config.model, config.quant)
    start = load_base(config.model, config.quant)
    start_model = load_adapter(start.model, config.init) if config.init else start.model
    values = reference_kl(load_adapter(tuned.model, folder.adapter), start_model, tuned.tokenizer, examples, batch,
                          config.system_prompt)
    result = {"movement_kl": float(values.mean()), "prompts": len(examples),
              "reference": f"{config.model} + {config.init}" if config.init else config.model}
    folder.write_json(folder.behaviour_file, result)
    return result


def default_geometry_out(tuned=None, adapter=None) -> Path:
    """runs/geometry/<name>: the checkpoint's (or hub id's) last part; for a run's `RUN/adapter`, the run's name, so two
    runs' adapters do not meet in one folder."""
    path = Path(tuned or adapter)
    name = path.parent.name if adapter and path.name == "adapter" and path.parent.name else path.name
    return Path("runs") / "geometry" / name


def geometry_command(base, tuned=None, adapter=None, quant=None, settings=None, out=None, overwrite=False) -> Path:
    """`adapters-geo geometry`: check inputs, analyse, write the folder; returns it."""
    if (tuned is None) == (adapter is None):
        raise AdaptersGeoError("give either TUNED or --adapter, not both or neither", "see adapters-geo geometry --help")
    out = Path(out or default_geometry_out(tuned, adapter))
    check_replaceable(out, overwrite)
    source = checkpoint_source(base, tuned) if tuned else adapter_source(base, adapter, quant)
    result = analyse(source, settings or Settings())
    return write_result(result, out, overwrite=overwrite)


def run_overlap(run_a, run_b, k: int = K_DEFAULT) -> dict:
    """{"meta", "matrices", "by_type", ..., "overall"}: cosine and Sim_K of run A's update against run B's, per matrix.

    Each update is the run's own (ΔW_final − ΔW_init against its start), so a teacher trained from the base can be
    held against a continuation of the anchor; the two runs must share a base architecture (the same matrices).
    """
    from adapters_geo.geometry.overlap import matrix_overlap

    a, b = run_source(run_a), run_source(run_b)
    if set(a.names) != set(b.names):
        missing = sorted(set(a.names) ^ set(b.names))[:3]
        raise AdaptersGeoError(f"{run_a} and {run_b} adapt different matrices (e.g. {', '.join(missing)})",
                               "compare runs of the same base with the same adapter targets")
    others = {name: delta for name, _, delta in b.pairs()}  # one run's fp32 ΔW in memory (0.5 GB for 135M)
    rows = {}
    for name, _, delta in tqdm(a.pairs(), total=len(a.names), desc="overlap", unit="matrix"):
        other = others.pop(name)
        if other.shape != delta.shape:
            raise AdaptersGeoError(f"{name} is {tuple(delta.shape)} in {run_a} and {tuple(other.shape)} in {run_b}",
                                   "compare runs of the same base")
        rows[name] = {**matrix_overlap(delta, other, k), "params": delta.numel()}
    meta = {"a": str(run_a), "b": str(run_b), "reference_a": a.meta["reference"], "reference_b": b.meta["reference"], "K": k}
    return {"meta": meta, "matrices": rows, **aggregate(rows)}
