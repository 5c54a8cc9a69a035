"""No object qmo writes is shared between two models (qmo.controller.ownership): who holds a
name, what the reconcile's changes do about a name another model holds, and whole reconciles
of two models whose derived names meet (`llama`'s variant Service `llama-h100-fp8` is the
main Service of a model called `llama-h100-fp8`)."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest

from qmo.api.base import API_VERSION
from qmo.api.quantizedmodel import QuantizedModelSpec
from qmo.controller.changes import Apply, Refuse
from qmo.controller.ownership import NamesInNamespace, holder, made_elsewhere
from qmo.controller.reconcile import Retry
from qmo.controller.view import StaticReader
from qmo.manifests.routes import routing_table
from qmo.manifests.serving import build_main_service
from qmo.vocabulary import Reason
from tests.support.builders import a_model, an_owner, gpu_node
from tests.support.reconciles import NS, World, a_world, ungated
from tests.support.simulated import (
    apply_changes,
    complete_jobs,
    kinds,
    ready_deployments,
    reconcile_changes,
)

Obj = dict[str, Any]
LLAMA = an_owner("llama", NS, "uid-llama")
TWIN = an_owner("llama-h100-fp8", NS, "uid-twin")
STORE = {
    "apiVersion": "v1",
    "kind": "PersistentVolumeClaim",
    "metadata": {"name": "qmo-engines", "namespace": NS},
}
CLUSTER = [gpu_node("h100", "h100-0"), STORE]


def a_model_object(name: str, uid: str) -> Obj:
    return {
        "apiVersion": API_VERSION,
        "kind": "QuantizedModel",
        "metadata": {"name": name, "namespace": NS, "uid": uid},
    }


def a_service(
    name: str, model: str | None = None, uid: str = "", *, controller: bool = True
) -> Obj:
    """A qmo-managed Service; `model`: the model it is labelled with and owned by."""
    meta: Obj = {"name": name, "namespace": NS, "labels": {"app.kubernetes.io/managed-by": "qmo"}}
    if model is not None:
        meta["labels"]["qmo.dev/model"] = model
        meta["ownerReferences"] = [
            {"apiVersion": API_VERSION, "kind": "QuantizedModel", "name": model, "uid": uid,
             "controller": controller}
        ]  # fmt: skip
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta}


def fp8() -> QuantizedModelSpec:
    spec: QuantizedModelSpec = a_model().with_precisions("fp8").ungated().spec()
    return spec


# --- who holds a name --------------------------------------------------------------------


def labelled(obj: Obj, model: str) -> Obj:
    obj["metadata"]["labels"]["qmo.dev/model"] = model
    return obj


def unlabelled(obj: Obj) -> Obj:
    del obj["metadata"]["labels"]["qmo.dev/model"]
    return obj


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        pytest.param(
            a_service("llama-h100-fp8", "llama", "uid-llama"),
            "llama",
            id="a model's object is held by the model its controller reference names",
        ),
        pytest.param(
            labelled(a_service("llama-h100-fp8", "llama", "uid-llama"), "llama-h100-fp8"),
            "llama",
            id="the controller reference outweighs a label naming another model",
        ),
        pytest.param(
            labelled(a_service("x"), "llama"),
            "llama",
            id="an object without a controller is held by the model its label names",
        ),
        pytest.param(
            unlabelled(a_service("qmo-build-h100-fp8-0123", "llama", "u", controller=False)),
            None,
            id="a shared build, owned by models but controlled by none, is held by none",
        ),
        pytest.param(
            a_service("qmo-engines"),
            None,
            id="an object of the namespace's that names no model is held by none",
        ),
        pytest.param(
            {
                "metadata": {
                    "name": "x",
                    "ownerReferences": [
                        {
                            "apiVersion": "apps/v1",
                            "kind": "ReplicaSet",
                            "name": "x",
                            "controller": True,
                        }
                    ],
                }
            },
            None,
            id="a controller of another kind is no model",
        ),
    ],
)
def test_who_holds_a_name(obj: Obj, expected: str | None) -> None:
    assert holder(obj) == expected


@pytest.mark.parametrize(
    ("objects", "taken_by"),
    [
        pytest.param([], None, id="a name nothing has is free"),
        pytest.param(
            [
                a_model_object("llama-h100-fp8", "uid-twin"),
                a_service("llama-h100-fp8", "llama-h100-fp8", "uid-twin"),
            ],
            None,
            id="a name the model holds itself is its own",
        ),
        pytest.param(
            [
                a_model_object("llama-h100-fp8", "uid-twin"),
                a_service("llama-h100-fp8", "llama-h100-fp8", "uid-earlier-twin"),
            ],
            None,
            id="a name an earlier model of the same name held is the model's own",
        ),
        pytest.param(
            [
                a_model_object("llama", "uid-llama"),
                a_model_object("llama-h100-fp8", "uid-twin"),
                a_service("llama-h100-fp8", "llama", "uid-llama"),
            ],
            "llama",
            id="a name another model holds is taken, naming that model",
        ),
        pytest.param(
            [
                a_model_object("llama-h100-fp8", "uid-twin"),
                a_service("llama-h100-fp8", "llama", "uid-llama"),
            ],
            None,
            id="a name a deleted model held is free while it awaits the garbage collector",
        ),
    ],
)
def test_whether_the_main_service_name_is_taken(objects: list[Obj], taken_by: str | None) -> None:
    names = NamesInNamespace(StaticReader(objects), NS)
    wanted = build_main_service(fp8(), None, TWIN)  # the Service llama-h100-fp8

    refusal = names.taken(wanted, names.live(wanted), TWIN)

    if taken_by is None:
        assert refusal is None
    else:
        assert refusal is not None
        assert refusal.reason == Reason.NAME_TAKEN
        assert f"Service llama-h100-fp8 belongs to QuantizedModel {taken_by}" in refusal.message
        assert f"rename this model or {taken_by}" in refusal.message


# --- the changes of a reconcile ------------------------------------------------------------


def test_a_main_service_whose_name_another_model_holds_is_refused_for_the_model() -> None:
    objects = [
        *CLUSTER,
        a_model_object("llama", "uid-llama"),
        a_service("llama-h100-fp8", "llama", "uid-llama"),
    ]
    _, changes = reconcile_changes(fp8(), objects, TWIN)

    assert kinds(changes) == [("apply", "Job"), ("refuse", "Service")]
    (refused,) = [c for c in changes if isinstance(c, Refuse)]
    assert refused.variant is None, "the main Service is the model's own object"
    assert refused.target["metadata"]["name"] == "llama-h100-fp8"
    assert refused.refusal.reason == Reason.NAME_TAKEN


def test_a_variant_service_whose_name_another_model_holds_is_refused_for_that_variant() -> None:
    twin = a_service("llama-h100-fp8", "llama-h100-fp8", "uid-twin")
    objects = [*CLUSTER, a_model_object("llama-h100-fp8", "uid-twin"), twin]
    _, first = reconcile_changes(fp8(), objects, LLAMA)
    built = [*objects, *[c.obj for c in first if isinstance(c, Apply)]]
    for job in built:
        if job["kind"] == "Job":
            job["status"] = {"conditions": [{"type": "Complete", "status": "True"}]}

    _, changes = reconcile_changes(fp8(), built, LLAMA)

    refused = [(c.variant, c.target["kind"]) for c in changes if isinstance(c, Refuse)]
    assert refused == [("h100-fp8", "Service")]
    applied = [(c.obj["kind"], c.obj["metadata"]["name"]) for c in changes
               if isinstance(c, Apply)]  # fmt: skip
    assert ("Deployment", "llama-h100-fp8") in applied, "a Deployment of that name is free"
    assert ("Service", "llama-h100-fp8") not in applied


@pytest.mark.parametrize(
    ("taken", "expected"),
    [
        pytest.param(
            frozenset(),
            [("llama", ["llama"]), ("llama@fp8", ["llama-h100-fp8"])],
            id="with no name taken every rule goes to the model's Services",
        ),
        pytest.param(
            frozenset({"llama-h100-fp8"}),
            [("llama", ["llama"])],
            id="a precision whose only Service is another model's has no rule",
        ),
        pytest.param(
            frozenset({"llama"}),
            [("llama@fp8", ["llama-h100-fp8"])],
            id="a main Service another model holds gets no rule",
        ),
    ],
)
def test_the_route_never_sends_requests_to_a_service_another_model_holds(
    taken: frozenset[str], expected: list[tuple[str, list[str]]]
) -> None:
    spec = fp8().to_wire()
    spec["routing"] = {"parentRefs": [{"name": "inference"}]}
    routed = QuantizedModelSpec.from_wire(spec)
    objects = CLUSTER
    for _ in range(4):
        plan, changes = reconcile_changes(routed, objects, LLAMA)
        objects = ready_deployments(complete_jobs(apply_changes(objects, changes, LLAMA)))
    plan, _ = reconcile_changes(routed, objects, LLAMA)
    assert routed.routing is not None

    assert routing_table(routed.routing, plan, "llama", taken) == expected


# --- whole reconciles ----------------------------------------------------------------------


@pytest.fixture
def world() -> World:
    return a_world()


def test_a_model_named_like_another_models_variant_service_is_refused_and_takes_nothing(
    world: World,
) -> None:
    world.cluster.create_model(ungated("fp8"))
    world.settle()
    held = world.cluster.object("Service", "llama-h100-fp8")
    assert held is not None
    world.cluster.create_model(ungated("bf16"), name="llama-h100-fp8")
    second = World(world.cluster, world.clock, "llama-h100-fp8")

    for _ in range(3):
        with pytest.raises(Retry) as raised:
            second.reconcile()
        world.reconcile()
        second.finish_builds()
        world.cluster.roll_out_all()

    assert raised.value.reason_label == "NameTaken"
    assert world.cluster.object("Service", "llama-h100-fp8") == held, "untouched"
    ready, degraded = second.condition("Ready"), second.condition("Degraded")
    assert (ready["status"], ready["reason"]) == ("False", "NameTaken")
    assert (degraded["status"], degraded["reason"]) == ("True", "NameTaken")
    assert "belongs to QuantizedModel llama," in degraded["message"]
    assert "rename this model or llama" in degraded["message"]
    assert second.model()["status"].get("service") is None, "no Service of its own to name"
    taken = [e for e in world.cluster.events if e.reason == "NameTaken"]
    assert [(e.model, e.type) for e in taken] == [("llama-h100-fp8", "Warning")]
    assert world.condition("Ready")["status"] == "True"
    assert [e for e in world.cluster.events if e.model == "llama" and e.type == "Warning"] == []


def test_a_variant_whose_service_name_another_model_holds_is_refused_and_the_rest_serves(
    world: World,
) -> None:
    world.cluster.create_model(ungated("bf16"), name="llama-h100-fp8")
    first = World(world.cluster, world.clock, "llama-h100-fp8")
    first.settle()
    held = world.cluster.object("Service", "llama-h100-fp8")
    assert held is not None
    world.cluster.create_model(ungated("fp8"))

    refused = []
    for _ in range(4):
        try:
            world.reconcile()
        except Retry as raised:  # once its variant is built and would get its Service
            refused.append(raised.reason_label)
        first.reconcile()
        world.finish_builds()
        world.cluster.roll_out_all()

    assert refused[-2:] == ["NameTaken", "NameTaken"]

    assert world.cluster.object("Service", "llama-h100-fp8") == held, "untouched"
    fp8_variant = world.variants()["h100-fp8"]
    assert fp8_variant["reason"] == "NameTaken"
    assert (
        "Service llama-h100-fp8 belongs to QuantizedModel llama-h100-fp8"
        in (fp8_variant["message"])
    )
    assert fp8_variant.get("service") is None
    assert world.condition("Degraded")["reason"] == "NameTaken"
    assert world.condition("Ready")["status"] == "False"
    assert world.cluster.object("Service", "llama") is not None, "its main Service is its own"
    assert world.cluster.reasons("Warning") == ["NameTaken"]
    assert first.condition("Ready")["status"] == "True"


def test_a_name_held_by_a_deleted_model_is_free_again(world: World) -> None:
    world.cluster.create_model(ungated("bf16"), name="llama-h100-fp8")
    World(world.cluster, world.clock, "llama-h100-fp8").settle()
    world.cluster.delete_model("llama-h100-fp8")  # its children await the garbage collector
    world.cluster.create_model(ungated("fp8"))

    world.settle()

    service = world.cluster.object("Service", "llama-h100-fp8")
    assert service is not None
    assert [ref["name"] for ref in service["metadata"]["ownerReferences"]] == ["llama"]
    assert service["spec"]["selector"]["qmo.dev/model"] == "llama"
    assert "NameTaken" not in world.cluster.reasons()


# --- names held by objects qmo did not make ------------------------------------------------


def a_hand_made(kind: str, name: str) -> Obj:
    """What a user made with kubectl or Helm: no qmo label, no QuantizedModel owner."""
    api_version = {"Service": "v1", "Deployment": "apps/v1"}[kind]
    body: Obj = {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"name": name, "namespace": NS, "labels": {"app": "by-hand"}},
        "spec": {"selector": {"app": "by-hand"}, "ports": [{"port": 80}]},
    }
    return body


@pytest.mark.parametrize(
    ("obj", "elsewhere"),
    [
        pytest.param(a_hand_made("Service", "llama"), True, id="made by hand"),
        pytest.param(a_service("llama"), False, id="qmo's label, no model"),
        pytest.param(unlabelled(a_service("llama", "llama", "u")), False, id="a model owns it"),
    ],
)
def test_whether_an_object_was_made_elsewhere(obj: Obj, elsewhere: bool) -> None:
    assert made_elsewhere(obj) is elsewhere


def test_a_main_service_made_by_hand_is_left_alone_and_the_model_says_why(world: World) -> None:
    mine = world.cluster.put(a_hand_made("Service", "llama"))
    world.cluster.create_model(ungated("fp8"))

    for _ in range(3):
        with pytest.raises(Retry) as raised:
            world.reconcile()
        world.finish_builds()
        world.cluster.roll_out_all()

    assert raised.value.reason_label == "NameTaken"
    assert world.cluster.object("Service", "llama") == mine, "untouched"
    degraded = world.condition("Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "NameTaken")
    assert "Service llama exists and was not made by qmo" in degraded["message"]
    assert world.model()["status"].get("service") is None
    assert world.cluster.object("Deployment", "llama-h100-fp8") is not None, "the variant runs"
    assert world.cluster.reasons("Warning") == ["NameTaken"]

    # The user deletes theirs: the next retry creates qmo's.
    world.cluster.delete(mine)
    world.settle()
    service = world.cluster.object("Service", "llama")
    assert service is not None
    assert service["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "qmo"
    assert world.condition("Ready")["status"] == "True"


def test_a_variant_deployment_made_by_hand_is_refused_for_that_variant_only(
    world: World,
) -> None:
    theirs = a_hand_made("Deployment", "llama-h100-fp8")
    theirs["spec"] = {"replicas": 7, "selector": {"matchLabels": {"app": "by-hand"}}}
    mine = world.cluster.put(theirs)
    world.cluster.create_model(ungated("fp8"))

    refused = []
    for _ in range(4):
        try:
            world.reconcile()
        except Retry as raised:
            refused.append(raised.reason_label)
        world.finish_builds()
        world.cluster.roll_out_all()

    assert refused[-1] == "NameTaken"
    live = world.cluster.object("Deployment", "llama-h100-fp8")
    assert live is not None
    assert live["spec"] == mine["spec"], "untouched"
    assert live["metadata"]["labels"] == mine["metadata"]["labels"]
    assert "ownerReferences" not in live["metadata"]
    variant = world.variants()["h100-fp8"]
    assert variant["reason"] == "NameTaken"
    assert "Deployment llama-h100-fp8 exists and was not made by qmo" in variant["message"]


def test_a_converged_model_reads_nothing_live(world: World) -> None:
    world.cluster.create_model(ungated("fp8"))
    world.settle()

    world.reconcile()

    assert world.cluster.count("read") == 0


def test_no_scaler_of_qmos_scales_a_deployment_it_did_not_make(world: World) -> None:
    theirs = a_hand_made("Deployment", "llama-h100-fp8")
    theirs["spec"] = {"replicas": 7, "selector": {"matchLabels": {"app": "by-hand"}}}
    world.cluster.put(theirs)
    autoscaled = ungated("fp8")
    autoscaled["serving"] = {"autoscaling": {"maxReplicas": 4}}
    world.cluster.create_model(autoscaled)

    for _ in range(4):
        with contextlib.suppress(Retry):
            world.reconcile()
        world.finish_builds()
        world.cluster.roll_out_all()

    assert world.cluster.objects("HorizontalPodAutoscaler") == []
    assert world.variants()["h100-fp8"]["reason"] == "NameTaken"
