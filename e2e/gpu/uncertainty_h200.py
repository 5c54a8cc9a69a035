"""The uncertainty-aware quality gate on a GPU (issue 23): real scores on both sides of 1.5%,
their paired intervals, the verdicts Pass, Inconclusive and Regressed, the false-rollback rate
over item samples, and an exported artifact served and scored through qmo-eval's own path.

    PYTHONPATH=operator:. python3 -m e2e.gpu.uncertainty_h200 --out DIR [--outlier-scale 32]
    PYTHONPATH=operator:. python3 -m e2e.gpu.uncertainty_h200 --judge-only DIR   # no torch

On one GPU (run by e2e/gpu/run_uncertainty_on_h200.sh):

1. Train the small Llama of tiny_llama.py and amplify its outlier channels by
   `--outlier-scale` (function-preserving: they hurt only what quantizes activations per
   tensor), as quality_h200.py does, with a pool of 4,000 markov_next items and 200
   markov_ppl documents.
2. Build with `qmo.builder.pipeline.build` (ModelOpt, unified HF export): fp8, int4-awq and
   int8 (qmo's recipes; int8 is SmoothQuant), int8 without SmoothQuant, and a sweep of INT8
   weights with integer activations of 7, 6, 5 and 4 bits (per tensor, static; in memory only:
   no deployable format holds them).
3. Score each with lm-eval (`log_samples=True`): ModelOpt's model in memory and, where it can
   be, the exported checkpoint reloaded by reference_reader.py. Each item's outcome is kept.
4. Serve the BF16 source and the exported int8-no-smoothquant checkpoint through
   checkpoint_server.py (transformers behind an OpenAI-compatible API: it stands in for
   trtllm-serve, which cannot be installed there) and score them with
   `qmo.evaluator.evaluation.evaluate`, what `qmo-eval run` does in an eval Job.
5. Judge (no torch; `--judge-only` redoes it): every candidate against BF16 with qmo's own
   pairing (qmo.evaluator.pairing) and verdict code at the default confidence and threshold,
   on the whole pool, and on 40 seeded random samples of 200 and 1,000 items, beside what the
   gate before intervals (the point estimate alone) would have said.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import gc
import json
import math
import os
import random
import shutil
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from e2e.gpu import quality_h200 as base
from e2e.gpu import tiny_llama
from e2e.gpu.builder_h100 import log
from qmo.api.buildcontract import ARTIFACT_MANIFEST
from qmo.api.qualityreport import BenchmarkResult, QualityReportSpec
from qmo.api.quantizedmodel import (
    BenchmarkMetric,
    BenchmarkSpec,
    EngineBackend,
    QualitySpec,
)
from qmo.evaluator import pairing
from qmo.evaluator.lm_eval_tasks import per_document
from qmo.evaluator.report import build_report, result, to_yaml
from qmo.evaluator.scoring import Score
from qmo.quality.verdict import judge

POOL_ITEMS, PPL_DOCS = 4000, 200
SAMPLE_SIZES, SEEDS = (200, 1000), 40
METRICS = {"markov_next": "acc,none", "markov_ppl": "word_perplexity,none"}
SPECS = {
    "markov_next": BenchmarkSpec(name="markov_next", metric=BenchmarkMetric.MULTIPLE_CHOICE),
    "markov_ppl": BenchmarkSpec(
        name="markov_ppl", metric=BenchmarkMetric.PERPLEXITY, higher_is_better=False
    ),
}
QUALITY = QualitySpec(benchmarks=list(SPECS.values()))  # default confidence and threshold
SERVED = ("bf16", "int8-no-smoothquant")
SERVED_ITEMS = 1000


def sweep_config(bits: int) -> str:
    return f"QMO_E2E_W8A{bits}_CFG"


V = base.Variant
VARIANTS = (
    V("bf16", "bf16", "bf16", "the source, copied"),
    V("fp8", "fp8", "fp8", "qmo's fp8 recipe"),
    V("int4-awq", "int4-awq", "fp8", "qmo's int4-awq recipe"),
    V("int8", "int8", "bf16", "qmo's int8 recipe (SmoothQuant)", backend=EngineBackend.TENSORRT),
    V(
        "int8-no-smoothquant", "int8", "bf16", "bad: ModelOpt's INT8_DEFAULT_CFG, no SmoothQuant",
        modelopt_config="INT8_DEFAULT_CFG", backend=EngineBackend.TENSORRT,
    ),
    *(
        V(
            f"w8a{bits}", "int8", "bf16",
            f"sweep: INT8 weights, INT{bits} activations per tensor, no SmoothQuant",
            modelopt_config=sweep_config(bits), backend=EngineBackend.TENSORRT, reload=False,
        )
        for bits in (7, 6, 5, 4)
    ),
    # NVFP4 (issue 24): quantized here on Hopper as a PyTorch-backend checkpoint for a B200,
    # scored as ModelOpt's fake-quantized model (no NVFP4 kernels run on Hopper; the reference
    # reader does not read NVFP4 checkpoints back).
    V("nvfp4", "nvfp4", "fp8", "qmo's nvfp4 recipe (NVFP4_DEFAULT_CFG)", reload=False,
      serve_on=("NVIDIA-B200", "10.0")),
    V("nvfp4-awq-lite", "nvfp4", "fp8", "ModelOpt's NVFP4_AWQ_LITE_CFG", reload=False,
      modelopt_config="NVFP4_AWQ_LITE_CFG", serve_on=("NVIDIA-B200", "10.0")),
)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path)
    parser.add_argument("--work", type=Path, default=Path("/tmp/qmo-uncertainty"))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--outlier-scale", type=float, default=32.0)
    parser.add_argument("--tiny", action="store_true", help="a toy size, for a CPU smoke run")
    parser.add_argument("--only", nargs="*", help="variant names (default: all; bf16 always)")
    parser.add_argument("--no-serve", action="store_true", help="skip step 4")
    parser.add_argument("--judge-only", type=Path, metavar="DIR", help="step 5 only, from DIR")
    args = parser.parse_args(argv)
    if args.judge_only:
        return write_judgements(args.judge_only)
    if args.out is None:
        parser.error("--out is required")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    (args.out / "items").mkdir(parents=True, exist_ok=True)
    base.MC_ITEMS, base.PPL_DOCS = POOL_ITEMS, PPL_DOCS  # the task data prepare() writes
    base.score = score  # build_and_score scores through this module's scorer
    shape = tiny_llama.TINY if args.tiny else tiny_llama.Shape()
    shape = dataclasses.replace(shape, outlier_scale=args.outlier_scale)
    shutil.rmtree(args.work / "store", ignore_errors=True)
    summary: dict[str, Any] = {
        "environment": base.versions(args.device),
        "outlier_scale": args.outlier_scale,
        "variants": {},
    }
    started = time.perf_counter()
    if args.device.startswith("cuda"):
        base.skip_extensions()
    register_sweep()
    source_dir, calib_path = base.prepare(shape, args.work, args.device, summary)
    from qmo.builder import gpuprobe
    from qmo.builder.gpucheck import SeenGpu

    gpus = gpuprobe.probe() if args.device.startswith("cuda") else []
    expected = gpus[0] if gpus else SeenGpu("cpu", "0.0")
    for variant in VARIANTS:
        if args.only and variant.name != "bf16" and variant.name not in args.only:
            continue
        log(f"=== {variant.name}")
        row = summary["variants"][variant.name] = {"recipe": variant.recipe}
        try:
            base.build_and_score(variant, row, source_dir, calib_path, args, shape, expected, gpus)
        except Exception as err:
            traceback.print_exc()
            row["error"] = f"{type(err).__name__}: {err}"[:2000]
        gc.collect()
        base.write_json(args.out / "summary.json", summary)
    if not args.no_serve:
        try:
            summary["served"] = serve_and_evaluate(args)
        except Exception as err:
            traceback.print_exc()
            summary["served"] = {"error": f"{type(err).__name__}: {err}"[:2000]}
    summary["seconds"] = time.perf_counter() - started
    base.write_json(args.out / "summary.json", summary)
    return write_judgements(args.out)


def register_sweep() -> None:
    """INT8_DEFAULT_CFG (INT8 weights per channel, INT8 activations per tensor, static) with
    the activations' bits lowered, registered where the builder looks recipes up."""
    import modelopt.torch.quantization as mtq

    source = mtq.INT8_DEFAULT_CFG
    where = {e.get("quantizer_name"): i for i, e in enumerate(source["quant_cfg"])}
    for bits in (7, 6, 5, 4):
        config = copy.deepcopy(source)
        config["quant_cfg"][where["*input_quantizer"]] = {
            "quantizer_name": "*input_quantizer",
            "cfg": {"num_bits": bits, "axis": None},
        }
        setattr(mtq, sweep_config(bits), config)


def score(
    model: Any, tokenizer_dir: Path, args: argparse.Namespace, shape: Any, name: str
) -> float:
    """lm-eval's `hf` model on both tasks, every item's outcome kept (items/<name>.json)."""
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager
    from transformers import AutoTokenizer

    started = time.perf_counter()
    lm = HFLM(
        pretrained=model,
        tokenizer=AutoTokenizer.from_pretrained(str(tokenizer_dir)),
        batch_size=base.LM_EVAL_BATCH,
        max_length=shape.seq_len,
    )
    results = simple_evaluate(
        model=lm,
        tasks=list(METRICS),
        task_manager=TaskManager(include_path=str(base.TASKS_DIR), include_defaults=False),
        log_samples=True,
    )
    items = {}
    for task, metric in METRICS.items():
        outcomes, weights = per_document(results, task, metric)
        value = results["results"][task][metric]
        items[task] = {"value": value, "outcomes": outcomes, "weights": weights}
    base.write_json(args.out / "items" / f"{name}.json", items)
    seconds = time.perf_counter() - started
    log(f"{name}: lm-eval {seconds:.1f}s " + json.dumps({t: i["value"] for t, i in items.items()}))
    return seconds


def serve_and_evaluate(args: argparse.Namespace) -> dict[str, Any]:
    """Step 4: the exported checkpoints behind checkpoint_server, scored by qmo-eval's code."""
    from transformers import AutoTokenizer

    from e2e.gpu import checkpoint_server, reference_reader
    from qmo.evaluator.evaluation import RunOptions, evaluate
    from qmo.evaluator.harness import Settings

    store = args.work / "served-store"
    store.mkdir(parents=True, exist_ok=True)
    with (base.DATA_DIR / "markov_next.jsonl").open() as src:
        rows = [json.loads(line) for line in src][:SERVED_ITEMS]
    (store / "markov_next.jsonl").write_text(
        "".join(
            json.dumps({"prompt": r["context"], "answer": r["choices"][r["answer"]]}) + "\n"
            for r in rows
        )
    )
    shutil.copy(base.DATA_DIR / "markov_ppl.jsonl", store / "markov_ppl.jsonl")
    benchmarks = store / "benchmarks.json"
    benchmarks.write_text(
        json.dumps(
            [
                {"name": "markov_next", "metric": "exact-match",
                 "dataset": {"path": "markov_next.jsonl"}},
                {"name": "markov_ppl", "metric": "perplexity", "higherIsBetter": False,
                 "dataset": {"path": "markov_ppl.jsonl"}},
            ]
        )
    )  # fmt: skip
    servers = {}
    for name in SERVED:
        artifact = args.work / "store" / "artifacts" / name
        manifest = json.loads((artifact / ARTIFACT_MANIFEST).read_text())
        checkpoint = artifact / manifest["layout"]["checkpoint"]
        model = reference_reader.load(checkpoint, args.device)
        tokenizer = AutoTokenizer.from_pretrained(str(checkpoint))
        servers[name] = checkpoint_server.CheckpointModel(name, model, tokenizer, args.device)
    started = time.perf_counter()
    with (
        checkpoint_server.serving(servers["bf16"]) as baseline_url,
        checkpoint_server.serving(servers[SERVED[1]]) as candidate_url,
    ):
        report = evaluate(
            RunOptions(
                model=base.MODEL,
                namespace="gpu",
                variant=f"h200-{SERVED[1]}",
                cache_key=f"served-{SERVED[1]}",
                candidate_url=candidate_url,
                baseline_url=baseline_url,
                baseline_variant="h200-bf16",
                benchmarks=benchmarks,
                settings=Settings(max_tokens=1, concurrency=4),
                store_root=store,
                datasets_root=store,
                outcomes_dir=args.out / "served-outcomes",
            )
        )
    seconds = time.perf_counter() - started
    (args.out / "served-report.yaml").write_text(to_yaml(report))
    log(f"served: qmo-eval {seconds:.1f}s")
    return {"seconds": seconds, "report": report.to_wire()}


# --- step 5: judgements ----------------------------------------------------------------------


def load_items(directory: Path) -> dict[str, dict[str, Any]]:
    return {p.stem: base.load_json(p) for p in sorted((directory / "items").glob("*.json"))}


def scored(task: dict[str, Any], picked: list[int] | None = None) -> Score:
    outcomes, weights = task["outcomes"], task["weights"]
    if picked is not None:
        outcomes = [outcomes[i] for i in picked]
        weights = [weights[i] for i in picked] if weights else []
    value = math.exp(sum(outcomes) / sum(weights)) if weights else sum(outcomes) / len(outcomes)
    return Score(value, len(outcomes), tuple(outcomes), tuple(weights))


def report_of(
    baseline: dict[str, Any],
    candidate: dict[str, Any],
    tasks: tuple[str, ...],
    picked: dict[str, list[int] | None],
    *,
    paired: bool = True,
) -> QualityReportSpec:
    results: list[BenchmarkResult] = []
    for task in tasks:
        b, c = scored(baseline[task], picked.get(task)), scored(candidate[task], picked.get(task))
        spec = SPECS[task]
        row = result(
            task, b.value, c.value, higher_is_better=spec.higher_is_better, samples=b.samples
        )
        found = pairing.paired_result(spec, b, c, exhausted=True) if paired else None
        results.append(row.model_copy(update={"paired": found}))
    return build_report(
        model=base.MODEL,
        variant="h200-candidate",
        cache_key="gpu",
        baseline_variant="h200-bf16",
        results=results,
        source="e2e/gpu/uncertainty_h200.py",
    ).spec


def judged_row(name: str, items: dict[str, Any], baseline: dict[str, Any]) -> dict[str, Any]:
    tasks = tuple(METRICS)
    quality = QUALITY
    whole = judge(report_of(baseline, items, tasks, {}), quality)
    point = judge(report_of(baseline, items, tasks, {}, paired=False), quality)
    row: dict[str, Any] = {
        "name": name,
        "verdict": whole.verdict.value,
        "acts_as": whole.acts_as.value if whole.acts_as else None,
        "point_estimate_verdict": point.verdict.value,
        "message": whole.message,
        "deltas": [d.to_wire() for d in whole.deltas],
    }
    # Seeded samples of markov_next items: the rates at which each rule calls Regressed.
    only_next = QualitySpec(benchmarks=[SPECS["markov_next"]])
    pool = len(items["markov_next"]["outcomes"])
    for size in SAMPLE_SIZES:
        if size > pool:
            continue
        counts = {"Pass": 0, "Inconclusive": 0, "Regressed": 0, "point_regressed": 0}
        for seed in range(SEEDS):
            picked = random.Random(seed).sample(range(pool), size)
            chosen = {"markov_next": picked}
            verdict = judge(report_of(baseline, items, ("markov_next",), chosen), only_next)
            counts[verdict.verdict.value] += 1
            bare = judge(
                report_of(baseline, items, ("markov_next",), chosen, paired=False), only_next
            )
            counts["point_regressed"] += bare.verdict.value == "Regressed"
        row[f"samples_{size}"] = counts
    return row


def judgements(directory: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every candidate's row, and the served report with its judgement (if it was served)."""
    found = load_items(directory)
    baseline = found.pop("bf16")
    rows = [judged_row(name, items, baseline) for name, items in found.items()]
    summary_path = directory / "summary.json"
    summary = base.load_json(summary_path) if summary_path.is_file() else {}
    served = summary.get("served") or {}
    if "report" in served:
        spec = QualityReportSpec.from_wire(served["report"]["spec"])
        j = judge(spec, QualitySpec(benchmarks=[
            BenchmarkSpec(name="markov_next", metric=BenchmarkMetric.EXACT_MATCH),
            SPECS["markov_ppl"],
        ]))  # fmt: skip
        served["judgement"] = {
            "verdict": j.verdict.value,
            "message": j.message,
            "deltas": [d.to_wire() for d in j.deltas],
        }
    return rows, served


def write_judgements(directory: Path) -> int:
    if not (directory / "items" / "bf16.json").is_file():
        print("no bf16 items", file=sys.stderr)
        return 1
    rows, served = judgements(directory)
    base.write_json(directory / "uncertainty.json", {"rows": rows, "served": served})
    text = markdown(rows, served)
    (directory / "uncertainty.md").write_text(text)
    print(text)
    return 0


def _interval(delta: dict[str, Any]) -> str:
    low, high = delta.get("intervalLowPercent"), delta.get("intervalHighPercent")
    centre = delta.get("deltaPercent")
    if low is None:
        return f"{centre:+.2f}"
    return f"{centre:+.2f} [{low:+.2f}, {high:+.2f}]"


def markdown(rows: list[dict[str, Any]], served: dict[str, Any]) -> str:
    lines = [
        "| candidate | markov_next delta % [80% interval] | markov_ppl delta % [80% interval] "
        "| verdict | point estimate alone | 200 items: Pass/Inc/Reg (point Reg) "
        "| 1,000 items: Pass/Inc/Reg (point Reg) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in sorted(rows, key=lambda r: r["name"]):
        deltas = {d["benchmark"]: d for d in row["deltas"]}
        cells = []
        for size in SAMPLE_SIZES:
            c = row.get(f"samples_{size}")
            cells.append(
                f"{c['Pass']}/{c['Inconclusive']}/{c['Regressed']} ({c['point_regressed']})"
                if c
                else "-"
            )
        verdict = row["verdict"] + (
            f" (counts as {row['acts_as']})" if row["verdict"] == "Inconclusive" else ""
        )
        lines.append(
            f"| {row['name']} | {_interval(deltas['markov_next'])} | "
            f"{_interval(deltas['markov_ppl'])} | {verdict} | {row['point_estimate_verdict']} | "
            f"{cells[0]} | {cells[1]} |"
        )
    if "judgement" in served:
        j = served["judgement"]
        lines += ["", f"Served through qmo-eval: **{j['verdict']}**: {j['message']}"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
