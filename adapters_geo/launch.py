"""`python -m adapters_geo.launch N ARGS...`: `adapters-geo ARGS` in N data-parallel processes, through accelerate.

What `make experiment NPROC=N` runs. It is `accelerate launch --multi_gpu --num_processes N -m
adapters_geo.cli ARGS` (torchrun underneath: one process per GPU, or gloo processes on a CPU), except
that a process that stops on bad input (its one line, exit code 2) ends the launch with exit code 2
instead of torchrun's ChildFailedError traceback after that line.
"""

import os
import sys

PORT_ENV = "ADAPTERS_GEO_MAIN_PORT"  # the main process's port, where the default 29500 is taken


def main(argv: list[str]) -> int:
    # isascii: str.isdigit accepts other scripts' digits, which accelerate cannot read
    if not argv or not (argv[0].isascii() and argv[0].isdigit()) or not 1 <= int(argv[0]) <= 1024:
        print(f"adapters-geo: error: the process count {ascii(argv[0]) if argv else ''} is not a whole number in [1, 1024] "
              "— fix: NPROC=2 (or leave NPROC out)",
              file=sys.stderr)
        return 2
    import logging

    from accelerate.commands.launch import launch_command, launch_command_parser
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    # torchrun logs every failed process (exit code, a traceback-like record) after the main process's one line
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)

    port = ["--main_process_port", os.environ[PORT_ENV]] if os.environ.get(PORT_ENV) else []  # default 29500
    args = launch_command_parser().parse_args(["--multi_gpu", "--num_processes", argv[0], "--num_machines", "1",
                                               "--mixed_precision", "no", "--dynamo_backend", "no", *port,
                                               "-m", "adapters_geo.cli", *argv[1:]])
    try:
        launch_command(args)
    except ChildFailedError as failed:  # the failing process has said why; its exit code is the launch's
        codes = [f.exitcode for f in failed.failures.values()]
        for rank, failure in failed.failures.items():  # a bad input said its one line; a crash (killed, OOM) did not
            # (when one process stopped on bad input, torchrun stops the others with SIGTERM: nothing more to say)
            if 2 not in codes and failure.exitcode not in (-15, 143):
                ended = f"signal {-failure.exitcode}" if failure.exitcode < 0 else f"exit code {failure.exitcode}"
                print(f"adapters-geo: error: process {rank} of the launch ended with {ended} — fix: see its output "
                      "above (a signal 9 is often the kernel's out-of-memory killer)", file=sys.stderr)
        return 2 if 2 in codes else max(1, *codes)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
