"""One build from request to published artifact: fetch, calibrate, quantize, export, publish.

The order puts cheap failures first: the source is opened and the calibration data read
before the model is loaded on the GPU. GPU work goes through qmo.builder.quantize (lazy
torch/ModelOpt imports) and qmo.builder.engine (trtllm-build). Called by qmo.builder.cli and
by the GPU benchmark e2e/gpu/builder_h100.py, which uses `BuildOptions.export` and
`after_quantize` to measure what the build produced.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qmo.api.buildcontract import CHECKPOINT_SUBDIR, ENGINE_SUBDIR, STORE_MOUNT_PATH, BuildRequest
from qmo.builder import artifact, calibration, engine, source
from qmo.builder.errors import BuildError, InvalidRequest
from qmo.builder.gpucheck import SeenGpu
from qmo.builder.publishers import DirectoryPublisher, Publisher
from qmo.builder.recipes import Export, Mode, Recipe, check_prequantized
from qmo.store.checksums import sha256_file

TRTLLM_SCRATCH = ".trtllm-checkpoint"
HOOK_STEP = "afterQuantizeHook"
# Artifact layout (qmo.api.buildcontract): checkpoint/ is the Hugging Face checkpoint the
# PyTorch backend serves, with the tokenizer; for the tensorrt backend it holds the tokenizer
# and config.json that trtllm-serve --tokenizer reads, beside engine/.
HF_LAYOUT = {"checkpoint": CHECKPOINT_SUBDIR}
ENGINE_LAYOUT = {"checkpoint": CHECKPOINT_SUBDIR, "engine": ENGINE_SUBDIR}


@dataclass
class BuildOptions:
    download_dir: Path = Path("/tmp/qmo-download")
    store_root: Path = Path(STORE_MOUNT_PATH)
    calibration_batch_size: int = 4
    # Benchmarks only: export a unified HF checkpoint even for the tensorrt backend.
    export: Export | None = None
    # Benchmarks only: called with the quantized model before export.
    after_quantize: Callable[[Any], None] | None = None
    log: Callable[[str], None] = print
    # Where the artifact goes; None: the PVC store at the request's outputDir.
    publisher: Publisher | None = None


@dataclass
class Outcome:
    artifact: str  # a directory on the PVC store, or an s3:// URI
    manifest: dict[str, Any]
    reused: bool = False


@dataclass
class _Timer:
    clock: Callable[[], float]
    timings: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        start = self.clock()
        try:
            yield
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + self.clock() - start


def build(
    request: BuildRequest,
    recipe: Recipe,
    *,
    gpus: Sequence[SeenGpu],
    env: Mapping[str, str],
    options: BuildOptions,
    clock: Callable[[], float] = time.monotonic,
) -> Outcome:
    log = options.log
    publisher = options.publisher or DirectoryPublisher(Path(request.output_dir))
    existing = publisher.finished(request.cache_key)
    if existing is not None:
        output = request.output_dir
        log(f"build {request.cache_key}: artifact already finished at {output}; nothing to do")
        return Outcome(output, existing, reused=True)

    if request.copy_from is not None:
        return _copy(request, publisher, Path(request.copy_from), log)
    timer = _Timer(clock)
    started = clock()
    token = env.get(request.source.token_env) if request.source.token_env else None
    with timer.step("fetch"):
        source_dir = source.open_source(request.source, env=env, download_dir=options.download_dir)
    log(f"build {request.cache_key}: source ready at {source_dir}")
    texts: list[str] = []
    if recipe.needs_calibration:
        with timer.step("calibrationData"):
            calib = request.quantization.calibration
            where = calibration.resolve(calib.dataset, store_root=options.store_root)
            texts = calibration.load_texts(where, calib.samples, token=token)
        log(f"build {request.cache_key}: {len(texts)} calibration samples from {where.location}")

    staging, removed = publisher.stage()
    for path in removed:
        log(f"build {request.cache_key}: removed leftover {path.name} of a killed build")
    try:
        facts = _produce(request, recipe, source_dir, staging, texts, env, options, timer)
        facts.gpus = list(gpus)
        facts.libraries = artifact.library_versions()
        with timer.step("checksum"):
            files = artifact.file_entries(staging)
        # A benchmark's measuring hook is no part of the build's time.
        hook_seconds = timer.timings.pop(HOOK_STEP, 0.0)
        facts.timings = dict(timer.timings)
        facts.timings["total"] = clock() - started - hook_seconds
        manifest = artifact.build_manifest(request, recipe, facts, files)
        published = publisher.publish(staging, manifest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log(
        f"build {request.cache_key}: published {published} "
        f"bytes={manifest['totalBytes']} seconds={manifest['timingsSeconds']['total']}"
    )
    return Outcome(published, manifest)


def _copy(
    request: BuildRequest, publisher: Publisher, source_dir: Path, log: Callable[[str], None]
) -> Outcome:
    """Publish a finished artifact of the same content from the claim under this request's key
    (qmo.planner.migration): every file checked against its manifest first, nothing rebuilt."""
    old = artifact.read_manifest(source_dir)
    if old is None or old.get("complete") is not True:
        raise InvalidRequest(f"{source_dir} holds no finished artifact", reason="CopySourceMissing")
    for entry in old["files"]:
        path = source_dir / str(entry["path"])
        if not path.is_file() or sha256_file(path) != entry["sha256"]:
            raise BuildError(
                f"{path} does not match its manifest; build it anew (delete the old artifact)",
                reason="ArtifactCorrupt",
            )
    manifest = {**old, "cacheKey": request.cache_key, "migratedFrom": old.get("cacheKey")}
    published = publisher.publish_copy(source_dir, manifest)
    log(f"build {request.cache_key}: copied {old.get('cacheKey')} from {source_dir} to {published}")
    return Outcome(published, manifest)


def _produce(
    request: BuildRequest,
    recipe: Recipe,
    source_dir: Path,
    staging: Path,
    texts: list[str],
    env: Mapping[str, str],
    options: BuildOptions,
    timer: _Timer,
) -> artifact.BuildFacts:
    export = options.export or recipe.export
    if recipe.mode is Mode.PASSTHROUGH:
        return _passthrough(request, recipe, source_dir, staging, export, env, options, timer)
    if recipe.mode is Mode.NONE and export is Export.HF:
        with timer.step("copy"):
            source.copy_checkpoint(source_dir, staging / CHECKPOINT_SUBDIR)
        return artifact.BuildFacts(layout=dict(HF_LAYOUT))
    return _quantize_and_export(request, recipe, source_dir, staging, texts, export, options, timer)


def _passthrough(
    request: BuildRequest,
    recipe: Recipe,
    source_dir: Path,
    staging: Path,
    export: Export,
    env: Mapping[str, str],
    options: BuildOptions,
    timer: _Timer,
) -> artifact.BuildFacts:
    config = source.read_json(source_dir / "config.json") or {}
    hf_quant = source.read_json(source_dir / "hf_quant_config.json")
    problem = check_prequantized(recipe, config, hf_quant)
    if problem is not None:
        raise InvalidRequest(problem, reason="SourceMismatch")
    recorded = hf_quant or {"quantization": config.get("quantization_config")}
    if export is Export.HF:
        with timer.step("copy"):
            source.copy_checkpoint(source_dir, staging / CHECKPOINT_SUBDIR)
        return artifact.BuildFacts(layout=dict(HF_LAYOUT), hf_quant_config=recorded)
    engine.require_trtllm_build()
    scratch = staging / TRTLLM_SCRATCH
    convert = engine.gptq_convert_command(
        engine.examples_dir(env),
        str(config.get("model_type", "")),
        source_dir,
        scratch,
        dtype=request.source.dtype.value,
        group_size=request.quantization.awq_block_size,
        tensor_parallel=request.tensor_parallel,
    )
    with timer.step("convert"):
        engine.run(convert, options.log)
    _build_engine(request, recipe, scratch, staging, options, timer)
    _copy_serving_files(source_dir, staging / CHECKPOINT_SUBDIR)
    return artifact.BuildFacts(layout=dict(ENGINE_LAYOUT), hf_quant_config=recorded)


def _quantize_and_export(
    request: BuildRequest,
    recipe: Recipe,
    source_dir: Path,
    staging: Path,
    texts: list[str],
    export: Export,
    options: BuildOptions,
    timer: _Timer,
) -> artifact.BuildFacts:
    from qmo.builder import quantize

    if export is Export.ENGINE:
        engine.require_trtllm_build()  # before the long GPU work, not after
    dtype = request.source.dtype.value
    quantize.reset_peak_memory()
    with timer.step("load"):
        model = quantize.load_model(source_dir, dtype)
    if recipe.mode is Mode.QUANTIZE:
        with timer.step("quantize"):
            tokenizer = quantize.load_tokenizer(source_dir)
            batches = quantize.calibration_batches(
                tokenizer,
                texts,
                max_length=request.quantization.calibration.max_seq_length,
                batch_size=options.calibration_batch_size,
            )
            config = quantize.modelopt_config(recipe, request.quantization)
            model = quantize.quantize(model, config, batches)
        if options.after_quantize is not None:
            with timer.step(HOOK_STEP):
                options.after_quantize(model)
    facts = artifact.BuildFacts(calibration_samples=len(texts) or None)
    facts.cuda = quantize.cuda_version()
    if export is Export.HF:
        with timer.step("export"):
            facts.hf_quant_config = quantize.export_hf(model, staging / CHECKPOINT_SUBDIR, dtype)
            source.copy_tokenizer(source_dir, staging / CHECKPOINT_SUBDIR)
        facts.peak_gpu_memory_bytes = quantize.peak_memory_bytes()
        facts.layout = dict(HF_LAYOUT)
        return facts
    scratch = staging / TRTLLM_SCRATCH
    with timer.step("export"):
        quantize.export_trtllm(model, scratch, dtype, request.tensor_parallel)
    facts.peak_gpu_memory_bytes = quantize.peak_memory_bytes()
    checkpoint_config = source.read_json(scratch / "config.json") or {}
    facts.hf_quant_config = {"quantization": checkpoint_config.get("quantization")}
    del model
    quantize.release_gpu_memory()  # trtllm-build is a separate process and needs the GPU
    _build_engine(request, recipe, scratch, staging, options, timer)
    _copy_serving_files(source_dir, staging / CHECKPOINT_SUBDIR)
    facts.layout = dict(ENGINE_LAYOUT)
    return facts


def _build_engine(
    request: BuildRequest,
    recipe: Recipe,
    checkpoint: Path,
    staging: Path,
    options: BuildOptions,
    timer: _Timer,
) -> None:
    argv = engine.trtllm_build_command(
        checkpoint, staging / ENGINE_SUBDIR, request.limits, recipe, request.tensor_parallel
    )
    with timer.step("engine"):
        engine.run(argv, options.log)
    shutil.rmtree(checkpoint, ignore_errors=True)


def _copy_serving_files(source_dir: Path, target: Path) -> None:
    """The tokenizer and config.json an engine is served with."""
    source.copy_tokenizer(source_dir, target)
    shutil.copy2(source_dir / "config.json", target / "config.json")
