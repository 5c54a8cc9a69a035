"""Who holds a name in a namespace: no object qmo writes is shared between two models.

`changes` asks `NamesInNamespace.taken` before it applies any object of a model's own.

Names are not unique by construction, and cannot be made so: the names of a model's objects
derive from its name (`qmo.manifests.names`) and its main Service *is* its name, which users
call. Any DNS label may name a model, so no scheme of derived names stays clear of every other
model's main Service (`llama`'s variant Service `llama-h100-fp8` is the main Service of a model
called `llama-h100-fp8`), and renaming variant Services would break what users address.

The rule instead:
- An object is held by the QuantizedModel its controller owner reference names or, without
  one, by the model its `qmo.dev/model` label names: the model that created it first.
- Before applying an object, qmo looks up the live object of that kind and name in the
  namespace (from the watch cache, which holds every model's objects). Held by another model
  that exists, it is not written (never force-applied): the variant it is for (or the model,
  for its main Service, route and benchmarks) takes the refusal `NameTaken`, which names the
  holder and the way out (rename one of the two models); the model turns Degraded, that
  variant (or the model) is not Ready, one Warning Event says so, and the reconcile is
  retried with backoff. The holder goes on untouched. A route leaves out a Service whose name
  is taken, and no evaluation runs for a variant with a refused object.
- A name held by a model that no longer exists (deleted, its objects awaiting the garbage
  collector), or by an earlier model of the same name, is free: applying the object moves it
  to the applying model (qmo's one field manager owns its owner references).
- A name held by an object qmo did not make (no model holds it and it lacks qmo's
  managed-by label: a Service or Deployment made by hand, by Helm, by another operator) is
  taken too, by that object. The watch cache does not hold such objects, so before qmo first
  applies a name its cache does not know, the reconcile reads the live object (`foreign`);
  a foreign one is refused as `NameTaken` the same way, and left untouched. Once it is
  deleted or renamed, the next retry applies qmo's.
- Shared on purpose, and so never taken: build Jobs and artifact records (named by cache key;
  every model that uses one adds its owner reference, and `changes` applies them without this
  check), and what belongs to the namespace rather than to a model (the engine-store claim,
  anything without a model's label or a model as its controller).

Pure: lookups go through a `ClusterReader`, and the foreign names the reconcile found.
"""

from __future__ import annotations

from qmo.api.base import GROUP
from qmo.controller.view import ClusterReader
from qmo.manifests.labels import MODEL, Owner
from qmo.resources import QUANTIZED_MODELS
from qmo.vocabulary import MANAGED_BY, MANAGED_BY_LABEL, Reason, Refusal
from qmo.wire import Obj


def holder(obj: Obj) -> str | None:
    """The QuantizedModel that holds `obj`: its controller, else the model its label names."""
    meta = obj["metadata"]
    for ref in meta.get("ownerReferences") or []:
        if (
            ref.get("controller")
            and ref.get("kind") == QUANTIZED_MODELS.kind
            and str(ref.get("apiVersion", "")).startswith(f"{GROUP}/")
        ):
            return str(ref["name"])
    model = (meta.get("labels") or {}).get(MODEL)
    return str(model) if model else None


def owned_by(obj: Obj, owner: Owner) -> bool:
    """Whether `owner` (this very model, by uid) is among `obj`'s owners."""
    refs = obj.get("metadata", {}).get("ownerReferences") or []
    return any(ref.get("uid") == owner.uid for ref in refs)


def made_elsewhere(live: Obj) -> bool:
    """Whether `live` is not qmo's: no model holds it and it lacks qmo's managed-by label."""
    labels = live.get("metadata", {}).get("labels") or {}
    return holder(live) is None and labels.get(MANAGED_BY_LABEL) != MANAGED_BY


def name_taken_elsewhere(obj: Obj) -> Refusal:
    """What a model reports when an object qmo did not make holds the name of `obj`."""
    what = f"{obj['kind']} {obj['metadata']['name']}"
    return Refusal(
        Reason.NAME_TAKEN,
        f"{what} exists and was not made by qmo (no QuantizedModel owns it); qmo does not take "
        f"it over: delete or rename that {obj['kind']}, or rename this model",
    )


def name_taken(obj: Obj, model: str) -> Refusal:
    """What a model reports when `model` holds the name of `obj`, which it would apply."""
    what = f"{obj['kind']} {obj['metadata']['name']}"
    return Refusal(
        Reason.NAME_TAKEN,
        f"{what} belongs to QuantizedModel {model}, which created it first; qmo does not take "
        f"it over: rename this model or {model} so that their objects' names differ",
    )


class NamesInNamespace:
    """The namespace's live objects by kind and name, and whether another model holds one."""

    def __init__(
        self,
        reader: ClusterReader,
        namespace: str,
        elsewhere: frozenset[tuple[str, str]] = frozenset(),
    ) -> None:
        self._reader = reader
        self._namespace = namespace
        # (kind, name) of live objects qmo did not make, found by the reconcile's reads.
        self._elsewhere = elsewhere

    def with_elsewhere(self, found: frozenset[tuple[str, str]]) -> NamesInNamespace:
        """The same names, with `found` (kind, name) held by objects qmo did not make."""
        return NamesInNamespace(self._reader, self._namespace, self._elsewhere | found)

    def live(self, obj: Obj) -> Obj | None:
        """The live object of `obj`'s kind and name, whichever model's it is."""
        return self._reader.get(obj["kind"], self._namespace, obj["metadata"]["name"])

    def taken(self, obj: Obj, live: Obj | None, owner: Owner) -> Refusal | None:
        """`NameTaken` when `live` (the object named as `obj`) is another existing model's, or
        when an object qmo did not make holds the name."""
        if (obj["kind"], obj["metadata"]["name"]) in self._elsewhere:
            return name_taken_elsewhere(obj)
        if live is None:
            return None
        model = holder(live)
        if model is None or model == owner.name:
            return None
        if self._reader.model(self._namespace, model) is None:
            return None  # its model is gone: the garbage collector would remove it
        return name_taken(obj, model)
