"""Start, stop and inspect the local control plane: `python -m e2e.cluster up|down|status`."""

from e2e.cluster.local import FLEETS_DIR, ClusterError, LocalCluster

__all__ = ["FLEETS_DIR", "ClusterError", "LocalCluster"]
