"""The `adapters-geo` command: parse arguments and dispatch, nothing else."""

import argparse
import json
import sys

from adapters_geo.errors import AdaptersGeoError


def cmd_prepare(args) -> None:
    """Convert / build the built-in models into the cache."""
    from adapters_geo.models.specs import resolve_spec

    for spec in args.models:
        print(f"{spec}: {resolve_spec(spec)}")


def cmd_adapter_info(args) -> None:
    """Print a saved adapter's description."""
    from adapters_geo.adapters.io import read_adapter_meta

    print(json.dumps(read_adapter_meta(args.folder), indent=2))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="adapters-geo", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    prepare = sub.add_parser("prepare", help="convert the embedded model and build tiny-llama into the cache")
    prepare.add_argument("models", nargs="*", default=["smollm2-135m-instruct", "tiny-llama"])
    prepare.set_defaults(func=cmd_prepare)
    info = sub.add_parser("adapter-info", help="show what a saved adapter was trained on")
    info.add_argument("folder")
    info.set_defaults(func=cmd_adapter_info)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except AdaptersGeoError as exc:
        print(f"adapters-geo: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
