"""Where a variant's build runs. Pure.

A TensorRT engine runs only on the architecture it is built on, so its build runs on the
serving class, always. A checkpoint for the PyTorch backend is not tied to an architecture
(docs/builder.md): when the serving class has no GPUs free for its build, it is quantized on
another class that has them and can hold the model, and its request names both (`gpu` where it
runs, `serveOn` where it serves; both are in the cache key). A build that has started anywhere
stays where it started, so the key does not move as GPUs come and go.
"""

from __future__ import annotations

from dataclasses import dataclass

from qmo.api.buildcontract import BuildRequest
from qmo.api.quantizedmodel import EngineBackend, Precision, QuantizedModelSpec
from qmo.gpu import GpuClass
from qmo.planner import sizing
from qmo.planner.capabilities import runtime_supports
from qmo.planner.observed import Observed
from qmo.planner.store import EngineStore
from qmo.vocabulary import Refusal


@dataclass(frozen=True)
class BuildPlace:
    request: BuildRequest
    build_gpus: int
    away: GpuClass | None = None  # the class it is built on, when not the serving class


def free_gpus(gpu: GpuClass, observed: Observed) -> int:
    return max(0, gpu.total_gpus - observed.gpus_held.get(gpu.name, 0))


def place(
    spec: QuantizedModelSpec,
    gpu: GpuClass,
    precision: Precision,
    kv_dtype: str,
    tensor_parallel: int,
    builder_image: str,
    home: BuildPlace,
    observed: Observed,
    store: EngineStore | None = None,
) -> BuildPlace:
    """Home unless it cannot build now and another class can (see the module)."""
    if spec.engine.backend != EngineBackend.PYTORCH or observed.builds.get(home.request.cache_key):
        return home
    away = []
    for other in sorted(observed.inventory.classes, key=lambda c: c.name):
        if other.name == gpu.name or runtime_supports(other) is not None:
            continue
        fits = sizing.size(spec, other, precision, kv_dtype)
        if isinstance(fits, Refusal):
            continue
        request = sizing.build_request(
            spec, gpu, precision, kv_dtype, tensor_parallel, builder_image, built_on=other,
            store=store,
        )  # fmt: skip
        there = BuildPlace(request, fits.build_gpus, other)
        if observed.builds.get(request.cache_key):
            return there  # started (or done) there: it stays
        away.append(there)
    if free_gpus(gpu, observed) >= home.build_gpus:
        return home
    for there in away:
        assert there.away is not None
        if free_gpus(there.away, observed) >= there.build_gpus:
            return there
    return home  # it waits for room on its own class (or borrows a serving replica's GPUs)
