"""The drift rule (controller/drift.py) the informer and the test fake both keep."""

from __future__ import annotations

import copy

from qmo.controller.drift import DriftLedger
from qmo.wire import Obj

KEY = ("ns", "chat-h100-fp8")


def deployment(generation: int, replicas: int = 1, image: str = "serve:1") -> Obj:
    return {
        "kind": "Deployment",
        "metadata": {"name": KEY[1], "namespace": KEY[0], "generation": generation},
        "spec": {
            "replicas": replicas,
            "template": {"spec": {"containers": [{"name": "server", "image": image}]}},
        },
    }


def seen(ledger: DriftLedger, obj: Obj) -> bool:
    """What the informer does with an event: digest (only if moved), then judge."""
    digest = ledger.digest_if_moved(KEY, obj)
    return ledger.drifted(KEY, obj["metadata"]["generation"], digest)


def test_qmos_own_apply_is_not_drift() -> None:
    ledger = DriftLedger()
    ledger.applied(KEY, deployment(3))
    assert not seen(ledger, deployment(3))


def test_a_scale_is_not_drift_and_becomes_the_new_baseline() -> None:
    ledger = DriftLedger()
    ledger.applied(KEY, deployment(3))
    assert not seen(ledger, deployment(4, replicas=5))
    # The scaled generation is now qmo's: a later template edit is drift, a later scale not.
    assert not seen(ledger, deployment(5, replicas=2))
    assert seen(ledger, deployment(6, replicas=2, image="serve:evil"))


def test_an_edit_of_the_template_is_drift_until_qmo_applies_again() -> None:
    ledger = DriftLedger()
    ledger.applied(KEY, deployment(3))
    edited = deployment(4, image="serve:evil")
    assert seen(ledger, edited)
    assert seen(ledger, copy.deepcopy(edited)), "drift stays until qmo's apply answers it"
    ledger.applied(KEY, deployment(5))
    assert not seen(ledger, deployment(5))


def test_an_object_qmo_has_not_written_takes_its_first_generation_as_the_baseline() -> None:
    ledger = DriftLedger()  # e.g. a restarted operator listing what it made before
    assert not seen(ledger, deployment(7))
    assert seen(ledger, deployment(8, image="serve:evil"))
    # With no apply of qmo's to compare the spec to, even a scale counts (one re-apply).
    assert seen(ledger, deployment(8, replicas=3))


def test_forget_drops_what_was_applied() -> None:
    ledger = DriftLedger()
    ledger.applied(KEY, deployment(3))
    ledger.forget(KEY)
    assert not seen(ledger, deployment(9, image="serve:other")), "a recreated object starts over"


def test_objects_without_a_generation_never_drift() -> None:
    ledger = DriftLedger()
    config_map: Obj = {"metadata": {"name": "x", "namespace": "ns"}, "data": {}}
    ledger.applied(KEY, config_map)
    assert ledger.digest_if_moved(KEY, config_map) is None
    assert not ledger.drifted(KEY, None, None)
