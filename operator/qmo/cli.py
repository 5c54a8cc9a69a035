"""The `qmo` command: run the operator, generate CRDs, validate and plan manifests offline.

What is wrong with a command is one line on stderr, never a traceback: exit code 1 for input
that is invalid (a manifest or a nodes file qmo cannot use), 2 for usage (arguments argparse
refuses, or a file named in them that cannot be read, as argparse's own FileType does).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import ValidationError

from qmo import __version__
from qmo.api.base import one_line
from qmo.api.crd import write_crds
from qmo.api.quantizedmodel import QuantizedModel
from qmo.argparsing import show_defaults
from qmo.config import DEFAULT_BUILDER_IMAGE, DEFAULT_EVALUATOR_IMAGE
from qmo.fleet import FleetError, load_nodes
from qmo.manifests_io import ManifestError, load_resources

DEFAULT_CRD_DIRS = (Path("crds"), Path("charts/qmo/crds"))
INVALID_INPUT, USAGE = 1, 2
Loaded = TypeVar("Loaded")


class UsageError(Exception):
    """A file named on the command line cannot be read: exit code 2."""


def _read(load: Callable[[Path], Loaded], file_name: str) -> Loaded:
    try:
        return load(Path(file_name))
    except OSError as err:
        raise UsageError(f"{file_name}: {err.strerror or err}") from err


def _why(err: Exception) -> str:
    return one_line(err) if isinstance(err, ValidationError) else str(err)


def _label(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return key, value


def _cluster_error(err: Exception) -> str:
    """What went wrong reaching the cluster, in one line (the kubeconfig, the connection, the
    API's answer)."""
    text = " ".join(str(err).split()) or type(err).__name__
    return f"{type(err).__name__}: {text[:300]}"


def _cmd_crds(args: argparse.Namespace) -> int:
    directories = [Path(d) for d in args.out] if args.out else list(DEFAULT_CRD_DIRS)
    try:
        written = write_crds(*directories)
    except OSError as err:
        print(f"qmo crds: cannot write {err.filename}: {err.strerror}", file=sys.stderr)
        return INVALID_INPUT
    for path in written:
        print(f"wrote {path}")
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    failed = 0
    for file_name in args.file:
        try:
            resources = _read(load_resources, file_name)
        except (ManifestError, ValidationError) as err:
            print(f"{file_name}: invalid: {_why(err)}", file=sys.stderr)
            failed += 1
            continue
        for resource in resources:
            name = resource.metadata.get("name", "<unnamed>")
            print(f"{file_name}: {resource.kind}/{name} is valid")
    return INVALID_INPUT if failed else 0


def _cmd_run(args: argparse.Namespace) -> int:
    from qmo.config import NodeCache, OperatorConfig, S3Defaults, StoreGc
    from qmo.runner import RunOptions, run

    config = OperatorConfig(
        namespaces=tuple(args.namespace or ()),
        builder_image=args.builder_image,
        evaluator_image=args.evaluator_image,
        resync_seconds=args.resync_seconds,
        workers=args.workers,
        allowed_images=tuple(args.allowed_image or ()),
        prometheus_address=args.prometheus_address,
        image_pull_secrets=tuple(args.image_pull_secret or ()),
        eval_node_selector=tuple(args.eval_node_selector or ()),
        store_type=args.store_type,
        s3=S3Defaults(
            bucket=args.store_s3_bucket,
            prefix=args.store_s3_prefix,
            endpoint=args.store_s3_endpoint,
            region=args.store_s3_region,
            path_style=args.store_s3_path_style,
            ca_bundle_configmap=args.store_s3_ca_bundle_configmap,
            credentials_secret=args.store_s3_credentials_secret,
            service_account=args.store_s3_service_account,
        ),
        node_cache=NodeCache(
            mode=args.node_cache_mode, host_path=args.node_cache_path, size=args.node_cache_size
        ),
        store_image=args.store_image or args.evaluator_image,
        store_gc=StoreGc(
            interval_seconds=args.store_gc_interval_seconds,
            retention_hours=args.store_gc_retention_hours,
            delete=args.store_gc_delete,
        ),
    )
    election = None
    if args.leader_elect:
        from qmo.leader import ElectionConfig, default_identity

        try:
            election = ElectionConfig(
                lease_name=args.lease_name,
                lease_namespace=args.lease_namespace,
                identity=default_identity(),
                lease_duration=args.lease_duration,
                renew_deadline=args.renew_deadline,
                retry_period=args.retry_period,
            )
        except ValueError as err:
            print(f"qmo run: {err}", file=sys.stderr)
            return 2
    if bool(args.metrics_tls_cert) != bool(args.metrics_tls_key):
        print("qmo run: --metrics-tls-cert and --metrics-tls-key go together", file=sys.stderr)
        return USAGE
    options = RunOptions(
        metrics_port=args.metrics_port,
        health_port=args.health_port,
        ready_port=args.ready_port,
        metrics_auth=args.metrics_auth,
        metrics_tls=(args.metrics_tls_cert, args.metrics_tls_key)
        if args.metrics_tls_cert and args.metrics_tls_key
        else None,
        verbose=args.verbose,
        leader_election=election,
    )
    return run(config, options)


def _observe_cluster(namespace: str, name: str) -> Any:
    """One list of nodes and of the namespace's builds and children; nothing is written."""
    from qmo.controller.gather import gather
    from qmo.controller.view import StaticReader
    from qmo.kube import connect
    from qmo.resources import CLAIMS, CONFIG_MAPS, DEPLOYMENTS, JOBS, NODES, PODS, SERVICES
    from qmo.vocabulary import MANAGED_SELECTOR

    kube = connect()
    objects = kube.list_objects(NODES.api_version, NODES.kind)
    objects += kube.list_objects(CLAIMS.api_version, CLAIMS.kind, namespace)
    for resource in (JOBS, PODS, CONFIG_MAPS, DEPLOYMENTS, SERVICES):
        objects += kube.list_objects(
            resource.api_version, resource.kind, namespace, MANAGED_SELECTOR
        )
    return gather(StaticReader(objects), namespace, name).observed


def _cmd_plan(args: argparse.Namespace) -> int:
    from qmo.gpu import inventory_from_nodes
    from qmo.plan_report import plan_as_data, render_plan
    from qmo.planner.plan import plan_model
    from qmo.planner.types import Observed

    try:
        resources = _read(load_resources, args.file)
    except (ManifestError, ValidationError) as err:
        print(f"{args.file}: invalid: {_why(err)}", file=sys.stderr)
        return INVALID_INPUT
    models = [r for r in resources if isinstance(r, QuantizedModel)]
    if not models:
        print(f"{args.file}: no QuantizedModel found", file=sys.stderr)
        return INVALID_INPUT
    try:
        nodes = _read(load_nodes, args.nodes) if args.nodes else []
    except FleetError as err:
        print(f"{args.nodes}: invalid: {err}", file=sys.stderr)
        return INVALID_INPUT
    if not args.cluster and not args.nodes:
        print(
            "qmo plan: no fleet given (--nodes FILE or --cluster): planned against no GPU nodes",
            file=sys.stderr,
        )
    outputs: list[Any] = []
    for model in models:
        if args.cluster:
            namespace = model.metadata.get("namespace") or args.namespace
            try:
                observed = _observe_cluster(namespace, model.metadata.get("name", ""))
            except Exception as err:
                print(f"qmo plan: cannot read the cluster: {_cluster_error(err)}", file=sys.stderr)
                return INVALID_INPUT
        else:
            observed = Observed(inventory_from_nodes(nodes))
        plan = plan_model(model.spec, observed)
        if args.output == "text":
            outputs.append(render_plan(model, observed.inventory, plan))
        else:
            outputs.append(plan_as_data(model, plan))
    if args.output == "text":
        print("\n".join(str(o) for o in outputs), end="")
    elif args.output == "json":
        print(json.dumps(outputs, indent=2))
    else:
        print(yaml.safe_dump(outputs, sort_keys=False), end="")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qmo", description=__doc__)
    parser.add_argument("--version", action="version", version=f"qmo {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the operator against the current kubeconfig")
    run.add_argument(
        "--namespace", action="append", help="watch only this namespace (repeatable; default: all)"
    )
    run.add_argument("--metrics-port", type=int, default=8080, help="Prometheus /metrics port")
    run.add_argument("--health-port", type=int, default=8081, help="/healthz liveness port")
    run.add_argument(
        "--metrics-auth",
        action="store_true",
        help="serve /metrics only to bearer tokens the API server authenticates and allows to "
        "get the non-resource URL /metrics (TokenReview, SubjectAccessReview)",
    )
    run.add_argument("--metrics-tls-cert", help="serve /metrics over TLS with this certificate")
    run.add_argument("--metrics-tls-key", help="... and this key (both, or neither)")
    run.add_argument(
        "--ready-port",
        type=int,
        help="serve /readyz (ready: a standby, or a leader whose caches have synced) on this "
        "port; default: not served",
    )
    run.add_argument("--builder-image", default=DEFAULT_BUILDER_IMAGE, help="qmo-builder image")
    run.add_argument("--evaluator-image", default=DEFAULT_EVALUATOR_IMAGE, help="qmo-eval image")
    run.add_argument(
        "--allowed-image",
        action="append",
        help="an image a model may name as engine.image, engine.builderImage or "
        "quality.evaluatorImage (repeatable; a trailing * allows a prefix; default: only "
        "--builder-image, --evaluator-image and the default engine.image)",
    )
    run.add_argument(
        "--prometheus-address",
        help="the Prometheus (http(s)://host:port) that KEDA queries for autoscaled variants' "
        "load (default: none; a model may name its own)",
    )
    run.add_argument(
        "--eval-node-selector",
        action="append",
        type=_label,
        metavar="KEY=VALUE",
        help="a node label eval pods must match (they need no GPU: a CPU pool's label, say); "
        "repeatable",
    )
    run.add_argument(
        "--image-pull-secret",
        action="append",
        metavar="NAME",
        help="an image pull Secret for the pods qmo creates (build, eval and serving; it must "
        "exist in each model's namespace); repeatable",
    )
    _store_arguments(run)
    run.add_argument(
        "--resync-seconds",
        type=float,
        default=600.0,
        help="re-check every model this often (jittered; a safety net, watches drive the rest)",
    )
    run.add_argument(
        "--workers", type=int, default=4, help="reconciles in parallel (one per model at a time)"
    )
    run.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    election = run.add_argument_group(
        "leader election", "with several replicas, only the holder of a Lease reconciles"
    )
    election.add_argument(
        "--leader-elect", action="store_true", help="reconcile only while holding the Lease"
    )
    election.add_argument("--lease-name", default="qmo-operator", help="the Lease's name")
    election.add_argument(
        "--lease-namespace",
        default=os.environ.get("POD_NAMESPACE", ""),
        help="the Lease's namespace (default: $POD_NAMESPACE)",
    )
    election.add_argument(
        "--lease-duration",
        type=int,
        default=15,
        help="seconds a standby waits on an unrenewed Lease before taking over",
    )
    election.add_argument(
        "--renew-deadline",
        type=float,
        default=10.0,
        help="seconds the leader keeps trying to renew before it stops reconciling",
    )
    election.add_argument(
        "--retry-period", type=float, default=2.0, help="seconds between Lease reads/renewals"
    )
    run.set_defaults(func=_cmd_run)

    plan = commands.add_parser(
        "plan", help="print the plan for a manifest and why, without changing any cluster"
    )
    plan.add_argument("-f", "--file", required=True, help="QuantizedModel manifest")
    where = plan.add_mutually_exclusive_group()
    where.add_argument(
        "--nodes", help="fleet file (e2e/fleets/*.yaml) or `kubectl get nodes -o yaml` output"
    )
    where.add_argument(
        "--cluster", action="store_true", help="read nodes and builds from the current cluster"
    )
    plan.add_argument("-n", "--namespace", default="default", help="namespace for --cluster")
    plan.add_argument("-o", "--output", choices=["text", "json", "yaml"], default="text")
    plan.set_defaults(func=_cmd_plan)

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

    references = commands.add_parser(
        "store-references",
        help="print the cache keys the cluster still needs, one per line (the keep list of "
        "`qmo-store gc` on a claim)",
    )
    references.add_argument("-n", "--namespace", help="one namespace (default: all)")
    references.set_defaults(func=_cmd_store_references)
    return show_defaults(parser)


def _cmd_store_references(args: argparse.Namespace) -> int:
    """What the operator's GC keeps (qmo.planner.references), read from the cluster once."""
    from qmo.kube import connect
    from qmo.planner.references import referenced_keys
    from qmo.resources import DEPLOYMENTS, JOBS, PODS, QUALITY_REPORTS, QUANTIZED_MODELS

    try:
        kube = connect()

        def listed(resource: Any) -> list[Any]:
            return kube.list_objects(resource.api_version, resource.kind, args.namespace)

        workloads = [*listed(DEPLOYMENTS), *listed(JOBS), *listed(PODS)]
        keys = referenced_keys(listed(QUANTIZED_MODELS), listed(QUALITY_REPORTS), workloads)
    except Exception as err:  # the kubeconfig, the connection, the API's answer
        print(f"qmo store-references: {_cluster_error(err)}", file=sys.stderr)
        return INVALID_INPUT
    for key in sorted(keys):
        print(key)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except UsageError as err:
        print(f"qmo {args.command}: {err}", file=sys.stderr)
        return USAGE
    return code


def _store_arguments(run: argparse.ArgumentParser) -> None:
    """The engine store of models that name none, the node cache, and the store's GC."""
    store = run.add_argument_group("engine store (docs/install.md#engine-store)")
    store.add_argument(
        "--store-type",
        choices=["pvc", "s3"],
        default="pvc",
        help="where models that set no engine.store.type keep artifacts",
    )
    store.add_argument("--store-s3-bucket", help="the default bucket")
    store.add_argument("--store-s3-prefix", default="qmo", help="key prefix in the bucket")
    store.add_argument("--store-s3-endpoint", help="S3-compatible endpoint URL (unset: AWS)")
    store.add_argument("--store-s3-region", default="us-east-1", help="the bucket's region")
    store.add_argument(
        "--store-s3-path-style", action="store_true", help="path-style bucket addressing"
    )
    store.add_argument(
        "--store-s3-ca-bundle-configmap",
        metavar="NAME",
        help="a ConfigMap (key ca.crt) in each model namespace with the endpoint's CA bundle",
    )
    store.add_argument(
        "--store-s3-credentials-secret",
        metavar="NAME",
        help="a Secret (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) in each model namespace; "
        "unset: workload identity",
    )
    store.add_argument(
        "--store-s3-service-account",
        metavar="NAME",
        help="the ServiceAccount store pods run as, for workload identity",
    )
    store.add_argument(
        "--store-image", help="image of the store steps (qmo-store); default: the evaluator's"
    )
    store.add_argument(
        "--node-cache-mode",
        choices=["node", "pod"],
        default="node",
        help="node: a hostPath cache shared by the node's pods; pod: each pod's emptyDir",
    )
    store.add_argument(
        "--node-cache-path", default="/var/lib/qmo/cache", help="the node cache's hostPath"
    )
    store.add_argument(
        "--node-cache-size", default="500Gi", help="the cache's limit (LRU eviction above it)"
    )
    store.add_argument(
        "--store-gc-interval-seconds",
        type=float,
        default=21600.0,
        help="how often the default bucket is garbage-collected (0: never)",
    )
    store.add_argument(
        "--store-gc-retention-hours",
        type=float,
        default=168.0,
        help="an unreferenced artifact is kept this long after GC first finds it so",
    )
    store.add_argument(
        "--store-gc-delete",
        action="store_true",
        help="delete what GC collects (without it GC only reports: a dry run)",
    )


if __name__ == "__main__":
    sys.exit(main())
