"""`make demo`, the quality gate closing its loop on `examples/before-traffic-gate.yaml`.

e2e/demo.py calls `run_gate_story` once the operator runs. Nothing is served under kwok's fake
GPU nodes, so the demo plays the external evaluation pipeline the example waits for: it writes
the QualityReports (raw scores against the BF16 baseline) that pipeline would write, and shows
what qmo does with each one: a pass promotes fp8, a regression moves int4-awq down the ladder to
int8, and a pass for int8 leaves every variant serving. Every wait follows a watch on the API
server, with a timeout that says what did not happen.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import yaml
from kubernetes import client, config, watch

from e2e.cluster.local import REPO, LocalCluster

GROUP, VERSION = "qmo.dev", "v1alpha1"
EXAMPLE = "before-traffic-gate.yaml"
MODEL = "mistral-7b"
TIMEOUT_S = 90
OPERATOR_LOG = ".qmo/demo-operator.log"

Obj = dict[str, Any]
Predicate = Callable[[Obj], bool]
Check = Callable[[list[Obj]], Obj | None]


def first(predicate: Predicate) -> Check:
    return lambda items: next((dict(i) for i in items if predicate(i)), None)


class DemoTimeout(RuntimeError):
    """What the demo waited for did not happen in time."""


def header(title: str) -> None:
    print(f"\n{'=' * 100}\n{title}\n{'=' * 100}", flush=True)


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


def variants(model: Obj) -> dict[str, Obj]:
    return {v["name"]: v for v in (model.get("status") or {}).get("variants") or []}


def condition(model: Obj, type_: str) -> Obj:
    for found in (model.get("status") or {}).get("conditions") or []:
        if found["type"] == type_:
            return dict(found)
    return {}


def observed(model: Obj) -> bool:
    """The operator has reconciled the model's current spec."""
    status = model.get("status") or {}
    return bool(status.get("observedGeneration") == model["metadata"]["generation"])


def phase(model: Obj, variant: str) -> str | None:
    found = variants(model).get(variant)
    return None if found is None else str(found.get("phase"))


def short(key: str | None) -> str:
    return key[:16] if key else "-"


def quality_report(variant: str, key: str, gsm8k: float, wikitext: float) -> Obj:
    """A report as lm-evaluation-harness results imported by a CI pipeline would read: raw
    scores of the candidate and of the BF16 baseline; qmo computes the deltas."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "QualityReport",
        "metadata": {"name": f"{MODEL}-{variant}-{key[:8]}"},
        "spec": {
            "modelRef": {"name": MODEL},
            "variant": variant,
            "cacheKey": key,
            "source": "lm-evaluation-harness",
            "results": [
                {"benchmark": "gsm8k", "baselineScore": 0.80, "candidateScore": gsm8k},
                {
                    "benchmark": "wikitext",
                    "baselineScore": 6.20,
                    "candidateScore": wikitext,
                    "higherIsBetter": False,
                },
            ],
        },
    }


@dataclass
class GateStory:
    cluster: LocalCluster
    namespace: str
    api: client.ApiClient
    events_shown: int = 0

    # --- what the newcomer sees -------------------------------------------------------------

    def kubectl(self, *args: str, input: str | None = None) -> None:
        shown = " ".join(args)
        print(f"$ kubectl {shown}{' <<EOF' if input else ''}", flush=True)
        if input:
            print(f"{input.rstrip()}\nEOF", flush=True)
        print(self.cluster.kubectl(*args, input=input).stdout.rstrip() + "\n", flush=True)

    def models_table(self, when: str) -> None:
        say(when)
        self.kubectl("get", "qm", "-n", self.namespace, "-o", "wide")

    def deployments(self, *expected: str) -> None:
        """The model's Deployments, once exactly `expected` (name suffixes) exist and are ready."""
        names = sorted(f"{MODEL}-{suffix}" for suffix in expected)

        def settled(items: list[Obj]) -> Obj | None:
            ready = all(
                (d.get("status") or {}).get("readyReplicas") == d["spec"]["replicas"] for d in items
            )
            return {} if ready and sorted(d["metadata"]["name"] for d in items) == names else None

        self.wait_until(
            client.AppsV1Api(self.api).list_namespaced_deployment,
            settled,
            f"the Deployments {', '.join(names)} (and no other) to be ready",
            namespace=self.namespace,
            label_selector=f"qmo.dev/model={MODEL}",
        )
        self.kubectl("get", "deployments", "-n", self.namespace, "-l", f"qmo.dev/model={MODEL}",
                     "-L", "qmo.dev/track,qmo.dev/precision")  # fmt: skip

    def reports(self) -> None:
        self.kubectl("get", "qualityreports", "-n", self.namespace, "-o", "wide")

    def status(self, *types: str) -> None:
        """The conditions and variants `kubectl describe qm` shows, condensed to one line each."""
        model = self.model()
        print(f"$ kubectl get qm {MODEL} -n {self.namespace} -o yaml   # status, condensed")
        print("conditions:")
        for type_ in types:
            found = condition(model, type_)
            print(
                f"  {type_:<12} {found.get('status', '-'):<8} {found.get('reason', '-'):<19} "
                f"{found.get('message', '')}"
            )
        print("variants:")
        print(
            f"  {'NAME':<16}{'PHASE':<12}{'REASON':<16}{'PRECISION':<24}{'REVISION':<18}"
            f"{'LAST GOOD':<18}VERDICT"
        )
        for name, variant in variants(model).items():
            precision = variant.get("precision", "-")
            if variant.get("requestedPrecision") not in (None, precision):
                precision = f"{precision} (for {variant['requestedPrecision']})"
            print(
                f"  {name:<16}{variant.get('phase', '-'):<12}{variant.get('reason', '-'):<16}"
                f"{precision:<24}{short(variant.get('revision')):<18}"
                f"{short(variant.get('lastGoodRevision')):<18}"
                f"{(variant.get('quality') or {}).get('verdict', '-')}"
            )
        print(flush=True)

    def new_events(self) -> None:
        """The model's Events in the order they were posted, only those not shown yet.

        Event timestamps have whole seconds, and one reconcile posts several in the same
        second; resourceVersion (kubectl sorts it as a number) keeps the order they were made.
        """
        args = ("get", "events", "-n", self.namespace, "--field-selector",
                f"involvedObject.name={MODEL}", "--sort-by=.metadata.resourceVersion")  # fmt: skip
        lines = self.cluster.kubectl(*args).stdout.rstrip().splitlines()
        rows = lines[1:]
        earlier = self.events_shown
        print(f"$ kubectl {' '.join(args)}")
        if earlier:
            print(f"({earlier} earlier Events shown above; the {len(rows) - earlier} new ones:)")
        print("\n".join([lines[0], *rows[earlier:]]) + "\n", flush=True)
        self.events_shown = len(rows)

    def post_report(self, report: Obj) -> str:
        text = yaml.safe_dump(report, sort_keys=False, default_flow_style=None, width=100)
        self.kubectl("create", "-n", self.namespace, "-f", "-", input=text)
        return str(report["metadata"]["name"])

    # --- waiting on the API server ------------------------------------------------------------

    def model(self) -> Obj:
        found = client.CustomObjectsApi(self.api).get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "quantizedmodels", MODEL
        )
        return cast(Obj, found)

    def wait_until(self, list_fn: Any, check: Check, what: str, **kwargs: Any) -> Obj:
        """What `check` finds among the objects `list_fn` lists: a LIST, then a watch from its
        resourceVersion and a new LIST on each change (so nothing slips between), until
        TIMEOUT_S has passed."""
        deadline = time.monotonic() + TIMEOUT_S
        while (left := deadline - time.monotonic()) > 0:
            listing = self.api.sanitize_for_serialization(list_fn(**kwargs))
            found = check(listing["items"])
            if found is not None:
                return found
            stream = watch.Watch()
            try:
                for _ in stream.stream(
                    list_fn,
                    resource_version=listing["metadata"]["resourceVersion"],
                    timeout_seconds=max(1, int(left)),
                    **kwargs,
                ):
                    break  # something changed (or the watch failed): list again
            finally:
                stream.stop()
        raise DemoTimeout(f"timed out after {TIMEOUT_S}s waiting for {what}{self.hint()}")

    def hint(self) -> str:
        phases = ", ".join(f"{n}={v.get('phase')}" for n, v in variants(self.model()).items())
        return f" ({MODEL}'s variants now: {phases or 'none'}; the operator's log: {OPERATOR_LOG})"

    def wait_model(self, predicate: Predicate, what: str) -> Obj:
        return self.wait_until(
            client.CustomObjectsApi(self.api).list_namespaced_custom_object,
            first(lambda m: observed(m) and predicate(m)),
            what,
            group=GROUP,
            version=VERSION,
            namespace=self.namespace,
            plural="quantizedmodels",
            field_selector=f"metadata.name={MODEL}",
        )

    def wait_event(self, reason: str, variant: str) -> None:
        """Events are posted right after the status is written: wait for them, do not race."""
        self.wait_until(
            client.CoreV1Api(self.api).list_namespaced_event,
            first(lambda e: variant in e.get("message", "")),
            f"a {reason} Event about {variant}",
            namespace=self.namespace,
            field_selector=f"involvedObject.name={MODEL},reason={reason}",
        )

    def wait_judged(self, report: str) -> None:
        self.wait_until(
            client.CustomObjectsApi(self.api).list_namespaced_custom_object,
            first(lambda r: bool((r.get("status") or {}).get("verdict"))),
            f"QualityReport {report} to be judged",
            group=GROUP,
            version=VERSION,
            namespace=self.namespace,
            plural="qualityreports",
            field_selector=f"metadata.name={report}",
        )


def run_gate_story(cluster: LocalCluster, namespace: str, first_section: int) -> None:
    """Sections `first_section`.. of the demo: the gate from Pending to every variant passed."""
    story = GateStory(cluster, namespace, config.new_client_from_config(cluster.kubeconfig))
    n = first_section
    gate_conditions = ("Ready", "QualityGate", "RolledBack")

    header(f"{n}. A quality-gated model: quantized variants wait outside the Services")
    say(
        f"kubectl apply -f examples/{EXAMPLE}: bf16, fp8 and int4-awq on the H100s, gate "
        "before-traffic, onRegression fallback, reports from an external pipeline"
    )
    cluster.kubectl("apply", "-n", namespace, "-f", str(REPO / "examples" / EXAMPLE))
    say("Waiting for bf16 to serve and fp8 and int4-awq to run as candidates")
    pending = story.wait_model(
        lambda m: (
            phase(m, "h100-bf16") == "Serving"
            and phase(m, "h100-fp8") == phase(m, "h100-int4-awq") == "Evaluating"
        ),
        "bf16 to serve and fp8 and int4-awq to run as candidates",
    )
    for variant in ("h100-fp8", "h100-int4-awq"):
        story.wait_event("AwaitingReport", variant)
    story.models_table(f"{MODEL} is not Ready and its quality is Pending; bf16 takes the traffic:")
    story.deployments("h100-bf16", "h100-fp8-candidate", "h100-int4-awq-candidate")
    story.status(*gate_conditions)
    story.new_events()

    header(f"{n + 1}. A passing report promotes fp8")
    fp8_key = variants(pending)["h100-fp8"]["cacheKey"]
    story.models_table("Before:")
    say(
        "The pipeline scored fp8 (revision = its cacheKey in status) against BF16: gsm8k -0.75%, "
        "wikitext perplexity +0.81%, both within maxRegressionPercent 1.5"
    )
    report = story.post_report(quality_report("h100-fp8", fp8_key, gsm8k=0.794, wikitext=6.25))
    story.wait_judged(report)
    story.wait_model(
        lambda m: (
            phase(m, "h100-fp8") == "Serving"
            and variants(m)["h100-fp8"].get("lastGoodRevision") == fp8_key
            and m["status"]["summary"]["serving"] == "fp8"
        ),
        "fp8 to be promoted and to serve behind the main Service",
    )
    story.wait_event("QualityPassed", "h100-fp8")
    story.models_table("After: fp8 serves, and the main Service (SERVING) moved from bf16 to it:")
    story.reports()
    story.deployments("h100-bf16", "h100-fp8", "h100-int4-awq-candidate")
    story.status(*gate_conditions)
    story.new_events()

    header(f"{n + 2}. A regressing report moves int4-awq down the ladder to int8")
    int4_key = variants(pending)["h100-int4-awq"]["cacheKey"]
    story.models_table("Before:")
    say(
        "The pipeline scored int4-awq: gsm8k -3.5%, over the 1.5% allowed. It never served, so "
        "there is no good revision to roll back to: onRegression fallback builds int8"
    )
    report = story.post_report(
        quality_report("h100-int4-awq", int4_key, gsm8k=0.772, wikitext=6.27)
    )
    story.wait_judged(report)
    fallen = story.wait_model(
        lambda m: (
            phase(m, "h100-int8") == "Evaluating"
            and "h100-int4-awq" not in variants(m)
            and condition(m, "RolledBack").get("reason") == "FellBack"
        ),
        "int4-awq to fall back to an int8 candidate",
    )
    story.wait_event("FellBack", "h100-int4-awq")
    story.wait_event("AwaitingReport", "h100-int8")
    story.models_table("After: int8 replaces int4-awq (PRECISIONS) and is a candidate in turn:")
    story.reports()
    story.deployments("h100-bf16", "h100-fp8", "h100-int8-candidate")
    story.status(*gate_conditions)
    story.new_events()

    header(f"{n + 3}. int8 passes: every variant serves, each one judged against BF16")
    int8_key = variants(fallen)["h100-int8"]["cacheKey"]
    story.models_table("Before:")
    say("The pipeline scored the int8 build: gsm8k -1.0%, wikitext perplexity +0.65%")
    report = story.post_report(quality_report("h100-int8", int8_key, gsm8k=0.792, wikitext=6.24))
    story.wait_judged(report)
    story.wait_model(
        lambda m: (
            condition(m, "Ready").get("status") == "True"
            and variants(m)["h100-int8"].get("lastGoodRevision") == int8_key
        ),
        f"{MODEL} to be Ready with int8 promoted",
    )
    story.wait_event("QualityPassed", "h100-int8")
    story.models_table(f"After: {MODEL} is Ready; its variants passed (QUALITY Pass):")
    story.reports()
    story.deployments("h100-bf16", "h100-fp8", "h100-int8")
    story.status(*gate_conditions)
    story.new_events()
    say(
        "RolledBack (reason FellBack) and QualityGate (reason Regressed) keep the int4-awq "
        f"regression on record; `kubectl describe qm {MODEL} -n {namespace}` shows them."
    )
