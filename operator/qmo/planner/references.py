"""Which artifacts something in the cluster still needs: the engine store's GC keeps these.

PURE, over the objects as the operator's caches hold them. An artifact is needed while:
- a QuantizedModel's status names it for a variant (its cache key, the revision it serves or
  its last good revision);
- a QualityReport judges it (reports go with their model, so a model's judged revisions,
  its last good ones among them, stay while the model does);
- a Deployment, Job or pod of qmo's carries it as its revision (a build in flight, a pod still
  serving or evaluating it).
Keys are full cache keys; a reference by another store's key is harmless (never on this one).
"""

from __future__ import annotations

from collections.abc import Iterable

from qmo.vocabulary import REVISION_ANNOTATION
from qmo.wire import Obj


def referenced_keys(
    models: Iterable[Obj], reports: Iterable[Obj], workloads: Iterable[Obj]
) -> set[str]:
    keys: set[str] = set()
    for model in models:
        for variant in (model.get("status") or {}).get("variants") or []:
            for field in ("cacheKey", "revision", "lastGoodRevision"):
                if variant.get(field):
                    keys.add(str(variant[field]))
    for report in reports:
        key = (report.get("spec") or {}).get("cacheKey")
        if key:
            keys.add(str(key))
    for obj in workloads:
        key = ((obj.get("metadata") or {}).get("annotations") or {}).get(REVISION_ANNOTATION)
        if key:
            keys.add(str(key))
        template = ((obj.get("spec") or {}).get("template") or {}).get("metadata") or {}
        key = (template.get("annotations") or {}).get(REVISION_ANNOTATION)
        if key:
            keys.add(str(key))
    return keys
