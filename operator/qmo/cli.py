"""The `qmo` command: run the operator, generate CRDs, validate and plan manifests offline."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from qmo.api.crd import write_crds
from qmo.manifests_io import ManifestError, load_resources

DEFAULT_CRD_DIRS = (Path("crds"), Path("charts/qmo/crds"))


def _cmd_crds(args: argparse.Namespace) -> int:
    directories = [Path(d) for d in args.out] if args.out else list(DEFAULT_CRD_DIRS)
    for path in write_crds(*directories):
        print(f"wrote {path}")
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    failed = 0
    for file_name in args.file:
        try:
            resources = load_resources(Path(file_name))
        except (ManifestError, ValidationError) as err:
            print(f"{file_name}: invalid\n{err}", file=sys.stderr)
            failed += 1
            continue
        for resource in resources:
            name = resource.metadata.get("name", "<unnamed>")
            print(f"{file_name}: {resource.kind}/{name} is valid")
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qmo", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    crds = commands.add_parser("crds", help="write the CRD YAML generated from the API models")
    crds.add_argument(
        "--out",
        action="append",
        help="directory to write into (repeatable; default: crds/ and charts/qmo/crds/)",
    )
    crds.set_defaults(func=_cmd_crds)

    validate = commands.add_parser(
        "validate", help="check QuantizedModel/QualityReport manifests against the API models"
    )
    validate.add_argument("-f", "--file", action="append", required=True, help="manifest file")
    validate.set_defaults(func=_cmd_validate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
