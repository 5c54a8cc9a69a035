"""What a build needs: its request (and cache key), its tensor-parallel size, its GPUs and
its volumes. Pure; each check is a named predicate returning a `Refusal` or None.
"""

from __future__ import annotations

from dataclasses import dataclass

from qmo.api.buildcontract import ARTIFACTS_DIR, BuildLimits, BuildRequest, ExpectedGpu, SourceRef
from qmo.api.quantizedmodel import ModelFormat, Precision, QuantizedModelSpec
from qmo.config import DEFAULT_BUILDER_IMAGE
from qmo.gpu import GpuClass
from qmo.planner import memory
from qmo.planner.cachekey import cache_key
from qmo.planner.store import ClaimStore, EngineStore, claim_store
from qmo.planner.types import Observed
from qmo.store.location import ARTIFACTS
from qmo.vocabulary import Reason, Refusal

# Where a pvc:// source is mounted in build pods, read-only.
SOURCE_MOUNT_PATH = "/model"
TOKEN_ENV = "HF_TOKEN"


@dataclass(frozen=True)
class Sizing:
    """A tensor-parallel size that fits, and the memory estimate behind it (if any)."""

    tensor_parallel: int
    memory_per_gpu_gib: float | None
    build_gpus: int


def source_claim(spec: QuantizedModelSpec) -> str | None:
    source = spec.model.source
    return source.removeprefix("pvc://").split("/", 1)[0] if source.startswith("pvc://") else None


def origin(spec: QuantizedModelSpec, precision: Precision) -> tuple[str, str | None, ModelFormat]:
    """(source, revision, format) a variant is built from: the model's, except the BF16
    reference of an already quantized source, built from `model.reference`."""
    reference = spec.model.reference
    if precision == Precision.BF16 and reference is not None:
        return reference.source, reference.revision, ModelFormat.HF
    return spec.model.source, spec.model.revision, spec.model.format


def source_ref(spec: QuantizedModelSpec, precision: Precision = Precision.FP8) -> SourceRef:
    """The checkpoint location as the build pod sees it."""
    source, revision, format_ = origin(spec, precision)
    if source.startswith("pvc://"):
        _, _, path = source.removeprefix("pvc://").partition("/")
        uri = f"{SOURCE_MOUNT_PATH}/{path}".rstrip("/")
    else:
        uri = source
    return SourceRef(
        uri=uri,
        revision=revision,
        format=format_,
        dtype=spec.model.dtype,
        token_env=TOKEN_ENV if spec.model.credentials_secret_ref else None,
    )


def build_request(
    spec: QuantizedModelSpec,
    gpu: GpuClass,
    precision: Precision,
    kv_dtype: str,
    tensor_parallel: int,
    builder_image: str = DEFAULT_BUILDER_IMAGE,
    built_on: GpuClass | None = None,
    store: EngineStore | None = None,
) -> BuildRequest:
    """The build of one variant; its cache key hashes everything that shapes the artifact,
    the builder image included (another builder is another artifact). `built_on`: another
    class the (PyTorch-backend) checkpoint is quantized on, named in the key beside `gpu`."""
    engine = spec.engine
    store = store or claim_store(spec)
    limits = BuildLimits(
        max_batch_size=engine.max_batch_size,
        max_seq_len=engine.max_seq_len,
        max_num_tokens=engine.max_num_tokens,
    )
    serving = ExpectedGpu(product=gpu.product, compute_capability=str(gpu.compute_capability))
    expected, serve_on = serving, None
    if built_on is not None and built_on.name != gpu.name:
        expected = ExpectedGpu(
            product=built_on.product, compute_capability=str(built_on.compute_capability)
        )
        serve_on = serving
    source, revision, format_ = origin(spec, precision)
    content = {
        "source": source,
        "revision": revision,
        "format": format_.value,
        "dtype": spec.model.dtype.value,
        "precision": precision.value,
        "kvCacheDtype": kv_dtype,
        "quantization": spec.quantization.to_wire() if precision != Precision.BF16 else None,
        "backend": engine.backend.value,
        "image": engine.image,
        "gpu": expected.to_wire(),
        "tensorParallel": tensor_parallel,
        "limits": limits.to_wire(),
        # The artifact lives on this claim or bucket: a model on another store cannot use it.
        "store": store.identity,
        "builderImage": builder_image,
    }
    if serve_on is not None:  # only then: the keys of builds on their own class stay as they were
        content["serveOn"] = serve_on.to_wire()
    key = cache_key(content)
    return BuildRequest(
        cache_key=key,
        source=source_ref(spec, precision),
        precision=precision.value,
        kv_cache_dtype=kv_dtype,
        quantization=spec.quantization,
        backend=engine.backend,
        tensor_parallel=tensor_parallel,
        limits=limits,
        gpu=expected,
        serve_on=serve_on,
        output_dir=f"{ARTIFACTS_DIR}/{key}"
        if isinstance(store, ClaimStore)
        else store.location.uri(ARTIFACTS, key),
    )


def claims_present(
    spec: QuantizedModelSpec, observed: Observed, store: EngineStore | None = None
) -> Refusal | None:
    """Build pods mount the engine store (and a pvc:// source): without them they never start."""
    if observed.claims is None:
        return None
    store = store or claim_store(spec)
    if (
        isinstance(store, ClaimStore)
        and not store.create
        and store.claim_name not in observed.claims
    ):
        return Refusal(
            Reason.ENGINE_STORE_NOT_FOUND,
            f"engine store claim {store.claim_name} does not exist; create it or set "
            "engine.store.create: true",
        )
    claim = source_claim(spec)
    if claim is not None and claim not in observed.claims:
        return Refusal(Reason.SOURCE_CLAIM_NOT_FOUND, f"model source claim {claim} does not exist")
    return None


def size(
    spec: QuantizedModelSpec, gpu: GpuClass, precision: Precision, kv_dtype: str
) -> Sizing | Refusal:
    """The tensor-parallel size and build GPUs of a variant, or why none fits the class."""
    found = tensor_parallel_size(spec, gpu, precision, kv_dtype)
    if isinstance(found, Refusal):
        return found
    tp, per_gpu = found
    gpus = build_gpus(spec, tp)
    if gpus > gpu.gpus_per_node:
        return Refusal(
            Reason.NOT_ENOUGH_GPUS,
            f"the build asks for {gpus} GPUs on one node; {gpu.name} nodes have "
            f"{gpu.gpus_per_node}",
        )
    return Sizing(tp, per_gpu, gpus)


def build_gpus(spec: QuantizedModelSpec, tp: int) -> int:
    """GPUs a build Job requests: the serving TP unless engine.build.gpus says otherwise."""
    wanted = spec.engine.build.gpus
    return tp if wanted == "auto" else int(wanted)


def tensor_parallel_size(
    spec: QuantizedModelSpec, gpu: GpuClass, precision: Precision, kv_dtype: str
) -> tuple[int, float | None] | Refusal:
    """(TP, estimated GiB per GPU), or a refusal. Explicit TP is checked; auto is estimated."""
    estimate = None
    if spec.model.size is not None:
        estimate = memory.estimate(
            spec.model.size, precision, kv_dtype, spec.engine.max_seq_len,
            spec.engine.max_batch_size,
        )  # fmt: skip
    requested = spec.gpu.tensor_parallel
    if requested != "auto":
        tp = int(requested)
        if tp > gpu.gpus_per_node:
            return Refusal(
                Reason.NOT_ENOUGH_GPUS,
                f"tensorParallel {tp} needs {tp} GPUs on one node; "
                f"{gpu.name} nodes have {gpu.gpus_per_node}",
            )
        if estimate is not None and not memory.fits(estimate, gpu.memory_mib, tp):
            return Refusal(
                Reason.DOES_NOT_FIT,
                f"{precision.value} needs about {estimate.per_gpu_gib(tp):.1f} GiB per GPU "
                f"at tensorParallel {tp}; {gpu.name} has {gpu.memory_mib} MiB per GPU "
                "(raise tensorParallel, or lower engine.maxBatchSize or maxSeqLen)",
            )
        return tp, round(estimate.per_gpu_gib(tp), 1) if estimate else None
    if estimate is None:
        return 1, None
    tp_fit = memory.smallest_fitting_tp(estimate, gpu.memory_mib, gpu.gpus_per_node)
    if tp_fit is None:
        # The largest TP size there is on these nodes (6 GPUs per node run TP 4, not 6).
        most = max((tp for tp in memory.TP_SIZES if tp <= gpu.gpus_per_node), default=1)
        return Refusal(
            Reason.DOES_NOT_FIT,
            f"{precision.value} needs about {estimate.per_gpu_gib(most):.1f} GiB per GPU "
            f"even at tensorParallel {most}; {gpu.name} has {gpu.memory_mib} MiB per GPU "
            f"(lower engine.maxBatchSize or maxSeqLen, or pick a smaller precision)",
        )
    return tp_fit, round(estimate.per_gpu_gib(tp_fit), 1)
