"""The `adapters-geo` command: parse arguments and dispatch, nothing else."""

import argparse
import json
import math
import os
import signal
import sys
import threading
from pathlib import Path

from adapters_geo.errors import AdaptersGeoError, one_line, place_error


def cmd_prepare(args) -> None:
    """Convert / build the built-in models into the cache."""
    from adapters_geo.models.specs import resolve_spec

    for spec in args.models:
        print(f"{spec}: {resolve_spec(spec)}")


def cmd_adapter_info(args) -> None:
    """Print a saved adapter's description."""
    from adapters_geo.adapters.io import read_adapter_meta

    print(json.dumps(read_adapter_meta(args.folder), indent=2))


def cmd_export(args) -> None:
    """Write base + ΔW of a saved adapter (or a run's adapter/) as a plain transformers checkpoint."""
    from adapters_geo.adapters.export import export_merged

    print(f"wrote {export_merged(args.source, args.merged, args.dtype)} ({args.dtype} safetensors + tokenizer)")


def cmd_geometry(args) -> None:
    """Endpoint geometry of TUNED (or --adapter) against BASE."""
    from adapters_geo.pipeline.analysis import geometry_command
    from adapters_geo.geometry.suite import Settings

    settings = Settings(k=args.k, K=args.K, r=args.r, alpha=args.alpha, eta=args.eta)
    out = geometry_command(args.base, args.tuned, args.adapter, args.quant, settings, args.out, args.overwrite)
    print(f"wrote {out}/geometry.json, summary.md, heatmaps.png, spectra.png")


def cmd_trajectory(args) -> None:
    """Trajectory diagnostics of a training run folder."""
    from adapters_geo.pipeline.analysis import write_run_trajectory

    out = write_run_trajectory(args.run, args.K, args.out, args.overwrite)
    print(f"wrote {out}/trajectory.json, trajectory.png")


def cmd_overlap(args) -> None:
    """How much two runs' updates share (cosine, Sim_K), by module type."""
    from adapters_geo.pipeline.analysis import run_overlap
    from adapters_geo.report.overlap import overlap_table

    result = run_overlap(args.run_a, args.run_b, args.K)
    print(overlap_table(result))
    if args.out:
        import json

        from adapters_geo.storage.atomic import atomic_write_text

        atomic_write_text(args.out, json.dumps(result, indent=1))
        print(f"wrote {args.out}")


def cmd_experiment(args) -> None:
    """Run a named experiment (and its missing dependencies)."""
    from adapters_geo.experiments.execute import run_experiment
    from adapters_geo.experiments.registry import available, description, experiments_dir
    from adapters_geo.config.yamlfile import parse_overrides

    overrides = parse_overrides(args.set)
    if not args.name:
        names = available()
        print(f"experiments in {experiments_dir()} (make experiment NAME=...):")
        for name in names:
            print(f"  {name:<{max(map(len, names))}}  {description(name)}")
        return
    folder = run_experiment(args.name, force=args.force, smoke=args.smoke, overrides=overrides, seeds=args.seeds)
    from adapters_geo.training.parallel import current

    if current().main:  # under a data-parallel launch the main process speaks
        print(f"{args.name}: done in {folder}")


def cmd_report(args) -> None:
    """Write the cross-run report from the finished runs."""
    from adapters_geo.experiments.execute import runs_root
    from adapters_geo.report.runs import write_report

    print(f"wrote {write_report(args.runs or runs_root(args.smoke))}")


def cmd_clean_checkpoints(args) -> None:
    """Drop what only resuming needs from every finished run under a runs folder."""
    from adapters_geo.storage.disk import clean_checkpoints
    from adapters_geo.experiments.execute import runs_root

    root = args.runs or runs_root()
    freed = clean_checkpoints(root, t0_states=args.t0_states)
    for folder, size in freed:
        print(f"{folder}: dropped {size / 2**30:.2f} GiB")
    print(f"{len(freed)} finished run(s) cleaned under {root}, {sum(s for _, s in freed) / 2**30:.2f} GiB freed")


def cmd_train(args) -> None:
    """Train one run from a YAML file into a folder."""
    from adapters_geo.api import train
    from adapters_geo.storage.runfolder import refuse_inside_finished_run
    from adapters_geo.config.yamlfile import parse_overrides

    refuse_inside_finished_run(Path(args.out), "--out")  # named as the user wrote it, before api.train's own check
    summary = train(args.config, args.out, overrides=parse_overrides(args.set), resume=args.resume,
                    analyse=not args.no_analysis)
    from adapters_geo.training.parallel import current

    if current().main:  # under a data-parallel launch the main process speaks
        print(f"final held-out: {json.dumps(summary['final_eval'])}; trajectory on disk: {summary['trajectory_mb']:.1f} MiB")


class Parser(argparse.ArgumentParser):
    """argparse with the toolkit's error form: one line naming the problem and the fix, exit code 2."""

    def error(self, message):
        say(f"adapters-geo: error: {one_line(message)} — fix: see {self.prog} --help")
        self.exit(2)


def number(kind, low, high, low_open: bool = False, high_open: bool = False):
    """An argparse type: a finite `kind` within [low, high] (open at an end where asked); else one line saying so."""
    shown = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"

    def parse(text: str):
        try:
            value = kind(text) if kind is float or text.isascii() else int("x")  # int() takes other scripts' digits
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not {'an integer' if kind is int else 'a number'} in {shown}") from None
        if not math.isfinite(value) or value < low or value > high or (low_open and value == low) or (high_open and value == high):
            raise argparse.ArgumentTypeError(f"{text} is outside {shown}")
        return value

    parse.__name__ = "integer" if kind is int else "number"
    return parse


def build_parser() -> argparse.ArgumentParser:
    from adapters_geo import __version__

    parser = Parser(prog="adapters-geo", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    prepare = sub.add_parser("prepare", help="convert the embedded model and build tiny-llama into the cache")
    prepare.add_argument("models", nargs="*", default=["smollm2-135m-instruct", "tiny-llama"])
    prepare.set_defaults(func=cmd_prepare)
    geo = sub.add_parser("geometry", help="endpoint geometry of a tuned checkpoint or adapter against its base")
    geo.add_argument("base", help="reference model: HF folder, hub id or built-in name")
    geo.add_argument("tuned", nargs="?", help="tuned full checkpoint (omit when using --adapter)")
    geo.add_argument("--adapter", help="saved adapters_geo adapter or peft LoRA folder on BASE")
    geo.add_argument("--quant", choices=["none", "8bit", "4bit"], help="base quantization for a peft LoRA folder")
    geo.add_argument("--k", type=number(int, 1, 1 << 20), help="rotation subspace size (default min(m, n) // 8 per matrix)")
    geo.add_argument("--K", type=number(int, 1, 1 << 20), default=16, help="trajectory subspace size (default 16)")
    geo.add_argument("--r", type=number(int, 1, 1 << 20), default=64, help="rank of W0's reconstruction for principal_overlap")
    geo.add_argument("--alpha", type=number(float, 0, 1, low_open=True, high_open=True), default=0.5, help="mask fraction for the overlaps")
    geo.add_argument("--eta", type=number(float, 0, 1, low_open=True, high_open=True), default=1e-3, help="relative tolerance of the bf16 unchanged test")
    geo.add_argument("--out", help="output folder (default runs/geometry/<name>; for RUN/adapter the run's name)")
    geo.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    geo.set_defaults(func=cmd_geometry)
    tj = sub.add_parser("trajectory", help="trajectory diagnostics (Sim_K, rank dynamics, locking step) of a run")
    tj.add_argument("run", help="run folder written by adapters-geo train")
    tj.add_argument("--K", type=number(int, 1, 1 << 20), default=16, help="subspace size (default 16)")
    tj.add_argument("--out", help="output folder (default RUN/trajectory_geometry; beside a finished run, which is never written: RUN-trajectory-K<K>)")
    tj.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    tj.set_defaults(func=cmd_trajectory)
    ov = sub.add_parser("overlap", help="how much two runs' updates share: cosine and Sim_K per matrix, by module type")
    ov.add_argument("run_a", help="run folder (its update against its own start)")
    ov.add_argument("run_b", help="run folder of the same base")
    ov.add_argument("--K", type=number(int, 1, 1 << 20), default=16, help="subspace size (default 16)")
    ov.add_argument("--out", help="also write the per-matrix numbers to this JSON file")
    ov.set_defaults(func=cmd_overlap)
    ex = sub.add_parser("experiment", help="run a named experiment from experiments/ (missing dependencies first)")
    ex.add_argument("name", nargs="?", help="experiment name (omit to list them)")
    ex.add_argument("--force", action="store_true", help="re-run a finished experiment (the old run is archived)")
    ex.add_argument("--smoke", action="store_true", help="the tiny, few-step form (runs/smoke/)")
    ex.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a key of this experiment (not its dependencies), e.g. train.steps=200; repeatable")
    ex.add_argument("--seeds", type=number(int, 1, 100), metavar="N",
                    help="N training seeds (the file's seed and the next N-1): a lock experiment's source and arms, a claims "
                         "experiment's sources, or a training experiment itself (NAME-seedS)")
    ex.set_defaults(func=cmd_experiment)
    cl = sub.add_parser("clean-checkpoints", help="drop checkpoint/ (only needed to resume) from finished runs")
    cl.add_argument("--runs", help="runs folder (default runs/)")
    cl.add_argument("--t0-states", action="store_true",
                    help="also drop t0_state/ (a locking test on such a run then asks for a re-run with FORCE=1)")
    cl.set_defaults(func=cmd_clean_checkpoints)
    rp = sub.add_parser("report", help="write runs/report.md from the finished runs")
    rp.add_argument("--runs", help="runs folder (default runs/, or runs/smoke with --smoke)")
    rp.add_argument("--smoke", action="store_true")
    rp.set_defaults(func=cmd_report)
    tr = sub.add_parser("train", help="train one run described by a YAML file")
    tr.add_argument("config", help="run YAML (sections model, quant, adapter, method, task, train, init)")
    tr.add_argument("--out", required=True, help="run folder")
    tr.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    tr.add_argument("--no-analysis", action="store_true", help="skip the endpoint and trajectory geometry after training")
    tr.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a key of the file, e.g. train.lr=1e-5 (a YAML value, validated like the file); repeatable")
    tr.set_defaults(func=cmd_train)
    info = sub.add_parser("adapter-info", help="show what a saved adapter was trained on")
    info.add_argument("folder")
    info.set_defaults(func=cmd_adapter_info)
    exp = sub.add_parser("export", help="write base + ΔW of an adapter as a plain transformers checkpoint")
    exp.add_argument("source", metavar="RUN_OR_ADAPTER", help="saved adapter folder, or a run folder holding adapter/")
    exp.add_argument("--merged", required=True, metavar="OUT", help="new folder for the merged checkpoint")
    exp.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32",
                     help="weights of the checkpoint (W0 + ΔW summed in fp32, cast once; default float32)")
    exp.set_defaults(func=cmd_export)
    return parser


def say(line: str) -> None:
    """An error line on stderr, from the main process only: under a data-parallel launch every process meets the
    same bad input, and the user should read it once (the others exit with the same code, silently)."""
    if int(os.environ.get("WORLD_SIZE", "1") or 1) <= 1 or os.environ.get("RANK", "0") == "0":
        print(line, file=sys.stderr)


def stop_cleanly_on_sigterm():
    """SIGTERM (`kill`'s default, a scheduler's stop) ends the command as Ctrl-C does, with exit code 143:
    finally blocks run, so a half-written output folder is removed and a run's lock released (by default the
    process would vanish and leave them). Returns the handler it replaced (None off the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    previous = stop_cleanly_on_sigterm()
    try:
        args.func(args)
        sys.stdout.flush()  # here, where a closed pipe can still be answered (below), not at the interpreter's exit
    except BrokenPipeError:  # the reader of our output left (make experiment | head): nothing of ours went wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except AdaptersGeoError as exc:
        say(f"adapters-geo: error: {one_line(str(exc))}")
        return 2
    except OSError as exc:  # an expected one of a place (read-only, a file as --out, a full disk) is one line too
        error = place_error(exc)
        if error is None:
            raise
        say(f"adapters-geo: error: {one_line(str(error))}")
        return 2
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return 0


if __name__ == "__main__":
    sys.exit(main())
