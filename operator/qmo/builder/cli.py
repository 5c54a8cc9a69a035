"""`qmo-builder`: the entrypoint of build Jobs.

    qmo-builder build [--spec FILE] [--dry-run] [--termination-log PATH]

Reads the BuildRequest (env QMO_BUILD_SPEC or --spec), refuses before any work a request it
cannot build or a GPU it is not for, runs qmo.builder.pipeline, and always ends by writing a
BuildResult to the termination log (default /dev/termination-log, or $QMO_TERMINATION_LOG),
exiting with an ExitCode: 0 ok, 1 failed (retriable), 2 invalid spec, 3 GPU mismatch.
`--dry-run` prints the plan and touches nothing.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType

from qmo import __version__
from qmo.api.buildcontract import (
    ENGINE_SUBDIR,
    TERMINATION_MESSAGE_PATH,
    BuildRequest,
    BuildResult,
    ExitCode,
)
from qmo.argparsing import show_defaults
from qmo.builder import artifact, calibration, engine, gpucheck, gpuprobe, pipeline, publishers
from qmo.builder.errors import BuildError
from qmo.builder.gpucheck import SeenGpu
from qmo.builder.recipes import Export, Mode, Recipe, recipe_for
from qmo.builder.spec import load_request, partial_cache_key
from qmo.store.artifacts import S3Artifacts
from qmo.store.location import S3Location
from qmo.store.objects import StoreError, connect
from qmo.vocabulary import BuildState

TERMINATION_LOG_ENV = "QMO_TERMINATION_LOG"
DOWNLOAD_DIR_ENV = "QMO_DOWNLOAD_DIR"
STORE_ROOT_ENV = "QMO_STORE_ROOT"
# Where an object-store build stages its artifact before the upload (the pod's scratch disk).
SCRATCH_ENV = "QMO_BUILD_SCRATCH"
MESSAGE_LIMIT = 2000  # BuildResult.message allows 2048

Probe = Callable[[], list[SeenGpu]]
Builder = Callable[..., pipeline.Outcome]


class Terminated(BuildError):
    reason = "Terminated"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command != "build":
        build_parser().print_help()
        return ExitCode.INVALID_SPEC
    signal.signal(signal.SIGTERM, _raise_terminated)
    return run(args, os.environ)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qmo-builder", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"qmo-builder {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="build one artifact from a BuildRequest")
    build.add_argument("--spec", type=Path, help="read the BuildRequest JSON from FILE")
    build.add_argument("--dry-run", action="store_true", help="print the plan, do nothing")
    build.add_argument(
        "--termination-log",
        type=Path,
        help=f"where to write the result ({TERMINATION_MESSAGE_PATH})",
    )
    return show_defaults(parser)


def run(
    args: argparse.Namespace,
    env: Mapping[str, str],
    *,
    probe: Probe = gpuprobe.probe,
    builder: Builder = pipeline.build,
    out: Callable[[str], None] = print,
) -> int:
    """One `qmo-builder build`; returns the exit code. Probe and builder are seams for tests."""
    termination = Path(
        args.termination_log or env.get(TERMINATION_LOG_ENV) or TERMINATION_MESSAGE_PATH
    )
    cache_key = partial_cache_key(env, args.spec)
    try:
        request = load_request(env, args.spec)
        cache_key = request.cache_key
        recipe = recipe_for(request)
        if args.dry_run:
            for line in plan_lines(request, recipe, _safe_probe(probe), env):
                out(line)
            return ExitCode.OK
        # A copy from the claim (qmo.planner.migration) runs without a GPU.
        gpus = probe() if request.copy_from is None else []
        refused = gpucheck.refusal(request, gpus) if request.copy_from is None else None
        if refused is not None:
            out(f"build {cache_key}: refused: {refused.reason}: {refused.message}")
            code = refused.exit_code if refused.exit_code is not None else ExitCode.FAILED
            return _finish(termination, cache_key, code, refused.reason, refused.message)
        outcome = builder(request, recipe, gpus=gpus, env=env, options=_options(env, out, request))
    except BuildError as err:
        out(f"build {cache_key}: {err.reason}: {err.message}")
        if args.dry_run:
            return err.exit_code
        return _finish(termination, cache_key, err.exit_code, err.reason, err.message)
    except Exception as err:
        traceback.print_exc(file=sys.stderr)
        message = f"{type(err).__name__}: {err}"
        return _finish(termination, cache_key, ExitCode.FAILED, "BuildFailed", message)
    artifact.write_termination(
        termination,
        BuildResult(
            cache_key=cache_key,
            state=BuildState.SUCCEEDED,
            artifact_path=str(outcome.artifact),
            reason="AlreadyBuilt" if outcome.reused else "Built",
        ),
    )
    return ExitCode.OK


def plan_lines(
    request: BuildRequest, recipe: Recipe, gpus: list[SeenGpu], env: Mapping[str, str]
) -> list[str]:
    """PURE but for looking at the store: what a build of this request would do."""
    output = Path(request.output_dir)
    calib = request.quantization.calibration
    lines = [
        f"qmo-builder dry run: cache key {request.cache_key}",
        f"  source       {request.source.uri} @ {request.source.revision or 'latest'} "
        f"(format {request.source.format.value}, dtype {request.source.dtype.value})",
        f"  gpu          {request.gpu.product} (compute capability "
        f"{request.gpu.compute_capability}), tensorParallel {request.tensor_parallel}",
        f"  precision    {request.precision}, KV cache {request.kv_cache_dtype}, "
        f"backend {request.backend.value}",
        f"  recipe       {_describe(recipe, request)}",
    ]
    if recipe.needs_calibration:
        where = calibration.resolve(calib.dataset, store_root=_store_root(env))
        lines.append(
            f"  calibration  {where.location} ({where.kind}), {calib.samples} samples x "
            f"{calib.max_seq_length} tokens"
        )
    if recipe.export is Export.HF:
        lines.append("  export       unified Hugging Face checkpoint (hf_quant_config.json)")
    else:
        scratch = output / pipeline.TRTLLM_SCRATCH
        argv = engine.trtllm_build_command(
            scratch, output / ENGINE_SUBDIR, request.limits, recipe, request.tensor_parallel
        )
        lines.append("  export       TensorRT-LLM checkpoint, then: " + " ".join(argv))
    location = S3Location.from_env(env)
    if location is not None:
        lines.append(
            f"  output       {location.uri('artifacts', request.cache_key)} (files uploaded, "
            "then the manifest)"
        )
    else:
        lines.append(f"  output       {output} (staged in {output.name}.tmp-*, then renamed)")
    if location is None and artifact.finished_manifest(output, request.cache_key) is not None:
        lines.append("  state        already finished: the build would be a no-op")
    refused = gpucheck.refusal(request, gpus)
    seen = ", ".join(f"{g.product} ({g.compute_capability})" for g in gpus) or "none"
    verdict = f"would refuse: {refused.reason}: {refused.message}" if refused else "would build"
    lines.append(f"  gpus seen    {seen}; {verdict}")
    return lines


def _describe(recipe: Recipe, request: BuildRequest) -> str:
    if recipe.mode is Mode.NONE:
        return "no quantization (weights as they are)"
    if recipe.mode is Mode.PASSTHROUGH:
        return f"validate the prequantized source ({recipe.quant_algo}) and pass it through"
    configs = " + ".join(c for c in (recipe.modelopt_config, recipe.kv_config) if c)
    excluded = ", ".join(request.quantization.exclude_modules) or "nothing"
    return f"ModelOpt {configs}, keeping {excluded} in high precision"


def _options(
    env: Mapping[str, str], out: Callable[[str], None], request: BuildRequest
) -> pipeline.BuildOptions:
    return pipeline.BuildOptions(
        download_dir=Path(env.get(DOWNLOAD_DIR_ENV, "/tmp/qmo-download")),
        store_root=_store_root(env),
        log=out,
        publisher=_publisher(env, out, request),
    )


def _publisher(
    env: Mapping[str, str], out: Callable[[str], None], request: BuildRequest
) -> publishers.Publisher | None:
    """The object store the pod was given (qmo.store.location), else None: the PVC store."""
    location = S3Location.from_env(env)
    if location is None:
        return None
    try:
        objects = connect(location, env)
    except StoreError as err:
        raise publishers.StoreUnavailable(str(err), reason=err.reason) from err
    scratch = Path(env.get(SCRATCH_ENV, "/tmp/qmo-build"))
    return publishers.ObjectStorePublisher(
        S3Artifacts(objects, out), request.cache_key, scratch, out
    )


def _store_root(env: Mapping[str, str]) -> Path:
    return Path(env.get(STORE_ROOT_ENV, "/store"))


def _safe_probe(probe: Probe) -> list[SeenGpu]:
    try:
        return probe()
    except Exception:
        return []


def _finish(path: Path, cache_key: str, code: int, reason: str, message: str) -> int:
    if len(message) > MESSAGE_LIMIT:
        message = message[: MESSAGE_LIMIT - 3] + "..."
    artifact.write_termination(
        path,
        BuildResult(cache_key=cache_key, state=BuildState.FAILED, reason=reason, message=message),
    )
    return code


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated("the build was terminated (SIGTERM): deadline or pod deletion")


if __name__ == "__main__":
    sys.exit(main())
