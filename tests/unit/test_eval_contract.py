"""The eval Job the operator builds and the qmo-eval that runs in it agree.

The command line, the benchmark list in the ConfigMap and the dataset mounts come from
manifests/evaluation.py; qmo-eval's parser and loaders must read exactly those.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any

from qmo.evaluator.benchmarks import dataset_path, parse_specs
from qmo.evaluator.cli import build_parser
from qmo.evaluator.lm_eval_tasks import include_path
from qmo.manifests.evaluation import BENCHMARKS_FILE, benchmarks_config_map, eval_job
from qmo.planner.types import Evaluation
from tests.support.builders import a_model, an_owner

KEY = "c0ffee" * 10 + "abcd"
BENCHMARKS = [
    {
        "name": "arithmetic",
        "metric": "exact-match",
        "samples": 100,
        "dataset": {"configMap": {"name": "qmo-benchmarks", "key": "arithmetic.jsonl"}},
    },
    {
        "name": "wikitext-ppl",
        "metric": "perplexity",
        "higherIsBetter": False,
        "dataset": {"path": "benchmarks/wikitext.jsonl"},
    },
]


def job_container() -> dict[str, Any]:
    spec = a_model().with_quality(gate="before-traffic", benchmarks=BENCHMARKS).spec()
    evaluation = Evaluation("h100-fp8", KEY, on_candidate_track=True, baseline="h100-bf16")
    job = eval_job(spec, evaluation, an_owner("llama", "team-a"), image="qmo-builder:test")
    container: dict[str, Any] = job["spec"]["template"]["spec"]["containers"][0]
    return container


def test_the_job_command_is_the_installed_console_script() -> None:
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    assert pyproject["project"]["scripts"]["qmo-eval"] == "qmo.evaluator.cli:main"
    assert job_container()["command"][0] == "qmo-eval"


def test_qmo_eval_parses_the_job_arguments_as_the_operator_means_them() -> None:
    container = job_container()
    args = build_parser().parse_args([*container["command"][1:], *container["args"]])

    assert args.command == "run"
    assert (args.model, args.namespace, args.variant) == ("llama", "team-a", "h100-fp8")
    assert (args.cache_key, args.baseline_variant) == (KEY, "h100-bf16")
    assert args.candidate_url == "http://llama-h100-fp8-candidate:8000"
    assert args.baseline_url == "http://llama-h100-bf16:8000"
    assert args.dry_run is False


def test_the_benchmark_list_in_the_configmap_reads_back_as_the_model_declares_it() -> None:
    spec = a_model().with_quality(benchmarks=BENCHMARKS).spec()
    config_map = benchmarks_config_map(spec, an_owner())

    specs = parse_specs(json.loads(config_map["data"][BENCHMARKS_FILE]), BENCHMARKS_FILE)

    assert specs == spec.quality.benchmarks


def test_the_benchmarks_file_and_every_dataset_lie_under_a_mount_of_the_job() -> None:
    container = job_container()
    args = build_parser().parse_args([*container["command"][1:], *container["args"]])
    mounts = [PurePosixPath(m["mountPath"]) for m in container["volumeMounts"]]
    spec = a_model().with_quality(benchmarks=BENCHMARKS).spec()

    wanted = [PurePosixPath(args.benchmarks)]
    wanted += [PurePosixPath(dataset_path(b)) for b in spec.quality.benchmarks]

    assert wanted == [
        PurePosixPath("/etc/qmo-eval/benchmarks.json"),
        PurePosixPath("/benchmarks/qmo-benchmarks/arithmetic.jsonl"),
        PurePosixPath("/store/benchmarks/wikitext.jsonl"),
    ]
    for path in wanted:
        assert any(path.is_relative_to(mount) for mount in mounts), path


def test_a_minimum_speedup_makes_the_job_measure_speed() -> None:
    spec = a_model().with_quality(benchmarks=BENCHMARKS, minSpeedup=1.2).spec()
    evaluation = Evaluation("h100-fp8", KEY, on_candidate_track=False, baseline="h100-bf16")
    job = eval_job(spec, evaluation, an_owner("llama", "team-a"), image="qmo-eval:test")
    container = job["spec"]["template"]["spec"]["containers"][0]
    args = build_parser().parse_args([*container["command"][1:], *container["args"]])
    assert (args.speed_concurrency, args.speed_requests, args.speed_max_tokens) == (8, 32, 128)
    plain = job_container()
    assert (
        build_parser().parse_args([*plain["command"][1:], *plain["args"]]).speed_concurrency is None
    )


def test_an_lm_eval_task_configmap_is_mounted_where_qmo_eval_looks_for_it() -> None:
    include = {"configMap": {"name": "ticket-task"}}
    task = {
        "name": "tickets",
        "lmEval": {"task": "tickets", "metric": "acc,none", "include": include},
    }
    spec = a_model().with_quality(benchmarks=[task]).spec()
    evaluation = Evaluation("h100-fp8", KEY, on_candidate_track=False, baseline="h100-bf16")
    job = eval_job(spec, evaluation, an_owner("llama", "team-a"), image="qmo-eval:test")
    container = job["spec"]["template"]["spec"]["containers"][0]
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    lm_eval = spec.quality.benchmarks[0].lm_eval
    assert lm_eval is not None
    assert str(include_path(lm_eval)) in mounts
    volumes = {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]}
    assert any(v.get("configMap", {}).get("name") == "ticket-task" for v in volumes.values())
