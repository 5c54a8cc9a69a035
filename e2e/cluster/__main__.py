"""`python -m e2e.cluster up|down|status [--name NAME] [--fleet mixed|ampere|hopper|FILE]`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from e2e.cluster.local import FLEETS_DIR, LocalCluster

DEFAULT_NAME = "qmo"


def fleet_path(value: str) -> Path:
    named = FLEETS_DIR / f"{value}.yaml"
    return named if named.exists() else Path(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m e2e.cluster", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--name", default=DEFAULT_NAME, help="cluster name (default: qmo)")
    parser.add_argument("--fleet", default="mixed", help="fleet name or file (default: mixed)")
    args = parser.parse_args(argv)

    if args.command == "up":
        cluster = LocalCluster.start(args.name, fleet_path(args.fleet))
        print(f"Cluster {args.name} is up with the {args.fleet} fleet.")
        print(f"  export KUBECONFIG={cluster.kubeconfig}")
        return 0
    existing = LocalCluster.load(args.name)
    if existing is None:
        print(f"No local cluster named {args.name} is running.")
        return 0 if args.command == "down" else 1
    if args.command == "down":
        existing.stop()
        print(f"Cluster {args.name} is down; no process is left.")
        return 0
    print(json.dumps(existing.status(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
