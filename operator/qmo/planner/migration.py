"""Moving to an object store without rebuilding: a finished artifact on the model's claim is
copied into the bucket instead of being built again.

PURE. When a model's store is a bucket and its variant's artifact is not there, the planner
asks what the same variant's key would be on the model's claim (engine.store.claimName). If
that build finished (its artifact record says so) and the claim is there, the variant's build
Job copies it: it mounts the claim read-only, checks every file against the old manifest, and
publishes it under the new key, manifest last. The Job needs no GPU. Nothing is deleted from
the claim (the PVC store's GC does that, once no model refers to it).
"""

from __future__ import annotations

from qmo.api.buildcontract import ARTIFACTS_DIR
from qmo.api.quantizedmodel import Precision, QuantizedModelSpec
from qmo.gpu import GpuClass
from qmo.planner import sizing
from qmo.planner.placement import BuildPlace
from qmo.planner.store import BucketStore, EngineStore, claim_store
from qmo.planner.types import Observed
from qmo.vocabulary import BuildState


def copy_instead(
    spec: QuantizedModelSpec,
    place: BuildPlace,
    store: EngineStore,
    observed: Observed,
    gpu: GpuClass,
    kv_dtype: str,
    builder_image: str,
) -> BuildPlace:
    """`place` with a copy from the claim instead of a build, where one is possible."""
    request = place.request
    if not isinstance(store, BucketStore) or observed.builds.get(request.cache_key):
        return place
    claim = claim_store(spec)
    if observed.claims is None or claim.claim_name not in observed.claims:
        return place
    built_on = place.away
    on_claim = sizing.build_request(
        spec,
        gpu,
        Precision(request.precision),
        kv_dtype,
        request.tensor_parallel,
        builder_image,
        built_on=built_on,
        store=claim,
    )
    old = observed.builds.get(on_claim.cache_key)
    if old is None or old.state != BuildState.SUCCEEDED:
        return place
    copied = request.model_copy(update={"copy_from": f"{ARTIFACTS_DIR}/{on_claim.cache_key}"})
    return BuildPlace(copied, 0, place.away)
