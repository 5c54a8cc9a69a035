"""The quality gate on a GPU, end to end: qmo-builder's variants scored by lm-evaluation-harness,
turned into QualityReports and judged by the operator's own verdict code.

    PYTHONPATH=operator:. python3 -m e2e.gpu.quality_h200 --out results/      # on a GPU machine
    PYTHONPATH=operator:. python3 -m e2e.gpu.quality_h200 --tiny --device cpu --out /tmp/q
    PYTHONPATH=operator:. python3 -m e2e.gpu.quality_h200 --judge-only e2e/gpu/results/h200-quality

1. Train the small Llama of tiny_llama.py (offline, seconds on a GPU), amplify its outlier
   channels and save it as the BF16 source; write the calibration JSONL and the data files of
   the two local-file lm-eval tasks in e2e/gpu/tasks/ (multiple choice, rolling perplexity).
2. Build every variant with `qmo.builder.pipeline.build` (ModelOpt, unified HF export,
   manifest), as builder_h100.py does: bf16, fp8, int4-awq, and deliberately bad recipes.
3. Score each with lm-eval's `hf` model (HFLM given the model object) on both tasks. Quantized
   variants are scored twice: ModelOpt's fake-quantized model in memory, before export, and the
   exported checkpoint reloaded by reference_reader.py (dequantized weights, activation and KV
   quantization re-applied), since TensorRT-LLM cannot be installed on the GPU machine.
4. Import each candidate's results file with the BF16 one through qmo.evaluator.lm_eval_import
   into a QualityReport and judge it with qmo.quality.verdict.judge (maxRegressionPercent 1.5,
   the QualitySpec default). Writes lm-eval/*.json, quality.json, verdicts.json and
   quality.md into --out.

`--judge-only DIR` redoes step 4 from DIR/lm-eval/*.json and needs no torch.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import gc
import json
import os
import shutil
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from e2e.gpu import reference_reader, tiny_llama
from e2e.gpu.builder_h100 import environment, log
from qmo.api.buildcontract import BuildLimits, BuildRequest, ExpectedGpu, SourceRef
from qmo.api.quantizedmodel import (
    BenchmarkMetric,
    BenchmarkSpec,
    CalibrationSpec,
    EngineBackend,
    QualitySpec,
    QuantizationSpec,
)
from qmo.builder import gpuprobe, pipeline
from qmo.builder.gpucheck import SeenGpu
from qmo.builder.recipes import Export, recipe_for
from qmo.evaluator import lm_eval_import
from qmo.evaluator.report import build_report
from qmo.quality.verdict import judge

TASKS_DIR = Path(__file__).parent / "tasks"
DATA_DIR = Path("/tmp/qmo-quality/tasks")  # where the task YAMLs' data_files point
TASKS = ("markov_next", "markov_ppl")
MC_ITEMS, MC_CONTEXT = 1000, 32
PPL_DOCS = 100
CALIBRATION_SAMPLES = 128
LM_EVAL_BATCH = 64
MODEL = "tiny-llama"
# What a QuantizedModel would declare for reports from an external system: no datasets.
QUALITY = QualitySpec(
    benchmarks=[
        BenchmarkSpec(name="markov_next", metric=BenchmarkMetric.MULTIPLE_CHOICE),
        BenchmarkSpec(name="markov_ppl", metric=BenchmarkMetric.PERPLEXITY, higher_is_better=False),
    ]
)
# Deliberately bad recipes that are no ModelOpt preset: ModelOpt's INT4 weight-only preset
# (round-to-nearest, groups of 128, no AWQ) with integer activations of this many bits (per
# tensor, static, no smoothing) and/or lm_head in INT4 too. See register_bad_configs.
BAD_CONFIGS: dict[str, tuple[int | None, bool]] = {
    "QMO_E2E_INT4_RTN_LM_HEAD_CFG": (None, True),
    "QMO_E2E_W4A8_INT8_CFG": (8, False),
    "QMO_E2E_W4A8_INT8_LM_HEAD_CFG": (8, True),
    "QMO_E2E_W4A4_CFG": (4, False),
}


@dataclass(frozen=True)
class Variant:
    name: str
    precision: str
    kv: str
    recipe: str
    samples: int = CALIBRATION_SAMPLES
    modelopt_config: str | None = None  # replaces the recipe's: the deliberately bad ones
    exclude_modules: tuple[str, ...] = ("lm_head",)
    backend: EngineBackend = EngineBackend.PYTORCH
    reload: bool = True  # False where the unified HF format cannot hold what was quantized
    # The class the artifact serves on, where it is not the GPU it is built on (nvfp4: a
    # PyTorch-backend checkpoint quantized on Hopper for Blackwell, docs/builder.md).
    serve_on: tuple[str, str] | None = None  # (product, compute capability)


VARIANTS = (
    Variant("bf16", "bf16", "bf16", "the source, copied"),
    Variant("fp8", "fp8", "fp8", "qmo's fp8 recipe"),
    Variant("int4-awq", "int4-awq", "fp8", "qmo's int4-awq recipe"),
    Variant(
        "int4-awq-1-sample", "int4-awq", "fp8", "qmo's int4-awq recipe, calibration.samples 1",
        samples=1,
    ),
    Variant(
        "int4-rtn", "int4-awq", "fp8", "bad: INT4 round-to-nearest, no AWQ",
        modelopt_config="INT4_BLOCKWISE_WEIGHT_ONLY_CFG",
    ),
    Variant(
        "int4-rtn-lm-head", "int4-awq", "fp8", "bad: INT4 round-to-nearest, lm_head in INT4 too",
        modelopt_config="QMO_E2E_INT4_RTN_LM_HEAD_CFG", exclude_modules=(),
    ),
    # ModelOpt exports any INT4-weight layer as W4A16_AWQ: integer activations would be lost,
    # so these are scored in memory only.
    Variant(
        "int4-w4a8", "int4-awq", "fp8", "bad: INT4 round-to-nearest, INT8 activations",
        modelopt_config="QMO_E2E_W4A8_INT8_CFG", reload=False,
    ),
    Variant(
        "int4-w4a8-lm-head", "int4-awq", "fp8",
        "bad: INT4 round-to-nearest, INT8 activations, lm_head in INT4 too",
        modelopt_config="QMO_E2E_W4A8_INT8_LM_HEAD_CFG", exclude_modules=(), reload=False,
    ),
    Variant(
        "int4-w4a4", "int4-awq", "fp8", "bad: INT4 round-to-nearest, INT4 activations",
        modelopt_config="QMO_E2E_W4A4_CFG", reload=False,
    ),
    Variant(
        "int8-no-smoothquant", "int8", "bf16", "bad: ModelOpt's INT8_DEFAULT_CFG, no SmoothQuant",
        modelopt_config="INT8_DEFAULT_CFG", backend=EngineBackend.TENSORRT,
    ),
)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path)
    parser.add_argument("--work", type=Path, default=Path("/tmp/qmo-quality"))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="a toy size, for a CPU smoke run")
    parser.add_argument("--train-steps", type=int, help="fewer steps, for a smoke run")
    parser.add_argument("--only", nargs="*", help="variant names (default: all; bf16 always)")
    parser.add_argument(
        "--compile-extensions", action="store_true", help="compile ModelOpt's CUDA extensions"
    )
    parser.add_argument("--judge-only", type=Path, metavar="DIR", help="step 4 only, from DIR")
    args = parser.parse_args(argv)
    if args.judge_only:
        write_verdicts(args.judge_only, load_json(args.judge_only / "quality.json"))
        return 0
    if args.out is None:
        parser.error("--out is required")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the GPU machine has no network
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    (args.out / "lm-eval").mkdir(parents=True, exist_ok=True)
    shape = tiny_llama.TINY if args.tiny else tiny_llama.Shape()
    if args.train_steps:
        shape = dataclasses.replace(shape, train_steps=args.train_steps)
    shutil.rmtree(args.work / "store", ignore_errors=True)  # built from the last run's source
    summary: dict[str, Any] = {"environment": versions(args.device), "variants": {}}
    started = time.perf_counter()
    if args.device.startswith("cuda") and not args.compile_extensions:
        skip_extensions()
    register_bad_configs()

    source_dir, calib_path = prepare(shape, args.work, args.device, summary)
    gpus = gpuprobe.probe() if args.device.startswith("cuda") else []
    expected = gpus[0] if gpus else SeenGpu("cpu", "0.0")
    for variant in VARIANTS:
        if args.only and variant.name != "bf16" and variant.name not in args.only:
            continue
        log(f"=== {variant.name}")
        row = summary["variants"][variant.name] = {"recipe": variant.recipe}
        try:
            build_and_score(variant, row, source_dir, calib_path, args, shape, expected, gpus)
        except Exception as err:  # the in-memory scores, if any, still count
            traceback.print_exc()
            row["error"] = f"{type(err).__name__}: {err}"[:2000]
        gc.collect()
        write_json(args.out / "quality.json", summary)
    summary["seconds"] = time.perf_counter() - started
    write_json(args.out / "quality.json", summary)
    return write_verdicts(args.out, summary)


def skip_extensions() -> None:
    """ModelOpt's pure-PyTorch fake quantization instead of its CUDA extensions, which it would
    compile first (about 2 minutes of GPU time). Same values: FP8 casts, round-half-even
    integers; it is ModelOpt's own fallback where the extensions cannot be built."""
    from modelopt.torch.quantization import extensions

    extensions.get_cuda_ext.extension = None
    extensions.get_cuda_ext_fp8.extension = None


def register_bad_configs() -> None:
    """BAD_CONFIGS, registered on ModelOpt's module, where the builder looks recipes up by name.
    ModelOpt applies quant_cfg entries in order: the input quantizers' entry is replaced where
    it stands, so the exclusions after it (lm_head, ...) still win; lm_head's weight quantizer
    is turned back on by a last entry."""
    import modelopt.torch.quantization as mtq

    base = mtq.INT4_BLOCKWISE_WEIGHT_ONLY_CFG
    where = {e.get("quantizer_name"): i for i, e in enumerate(base["quant_cfg"])}
    weights = base["quant_cfg"][where["*weight_quantizer"]]["cfg"]
    for name, (activation_bits, lm_head) in BAD_CONFIGS.items():
        config = copy.deepcopy(base)
        if activation_bits is not None:
            config["quant_cfg"][where["*input_quantizer"]] = {
                "quantizer_name": "*input_quantizer",
                "cfg": {"num_bits": activation_bits, "axis": None},
            }
        if lm_head:
            config["quant_cfg"].append(
                {"quantizer_name": "*lm_head.weight_quantizer", "cfg": copy.deepcopy(weights)}
            )
        setattr(mtq, name, config)


def prepare(
    shape: tiny_llama.Shape, work: Path, device: str, summary: dict[str, Any]
) -> tuple[Path, Path]:
    """The trained BF16 source, the calibration file and the task data files."""
    source_dir, calib_path = work / "source", work / "calibration.jsonl"
    language = tiny_llama.Language(shape.active)
    model, stats = tiny_llama.train(shape, language, device, log)
    tiny_llama.amplify_outliers(model, shape)
    source_dir.mkdir(parents=True, exist_ok=True)
    tiny_llama.save_source(model, source_dir, shape)
    del model
    tiny_llama.write_calibration(calib_path, language, CALIBRATION_SAMPLES, shape.seq_len)
    summary["task_data"] = write_task_data(language, shape)
    summary["training"] = stats
    summary["shape"] = dataclasses.asdict(shape)
    log(f"trained: {stats}")
    return source_dir, calib_path


def write_task_data(language: tiny_llama.Language, shape: tiny_llama.Shape) -> dict[str, Any]:
    """markov_next: 32 words, the last word's 4 successors, the oracle's favourite as answer.
    markov_ppl: held-out documents one word shorter than the training sequences (the rolling
    window adds a prefix token). Seeds differ from training's and calibration's."""
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    words = language.sample(MC_ITEMS, MC_CONTEXT + 1, seed=777_001)[:, :MC_CONTEXT]
    favourite = language.oracle_next(words)[:, -1]
    with (DATA_DIR / "markov_next.jsonl").open("w", encoding="utf-8") as out:
        for row, best in zip(words, favourite, strict=True):
            successors = language.successors[row[-1] - tiny_llama.FIRST_WORD]
            choices = [f"w{s + tiny_llama.FIRST_WORD}" for s in successors]
            item = {"context": tiny_llama.text_of(row), "choices": choices}
            out.write(json.dumps({**item, "answer": choices.index(f"w{best}")}) + "\n")
    documents = language.sample(PPL_DOCS, shape.seq_len - 1, seed=777_002)
    with (DATA_DIR / "markov_ppl.jsonl").open("w", encoding="utf-8") as out:
        for row in documents:
            out.write(json.dumps({"text": tiny_llama.text_of(row)}) + "\n")
    return {"markov_next": MC_ITEMS, "markov_ppl": PPL_DOCS, "dir": str(DATA_DIR)}


def build_and_score(
    variant: Variant,
    row: dict[str, Any],
    source_dir: Path,
    calib_path: Path,
    args: argparse.Namespace,
    shape: tiny_llama.Shape,
    expected: SeenGpu,
    gpus: list[SeenGpu],
) -> None:
    request = BuildRequest(
        cache_key=f"quality-{variant.name}-{shape.hidden}x{shape.layers}",
        source=SourceRef(uri=str(source_dir)),
        precision=variant.precision,  # type: ignore[arg-type]
        kv_cache_dtype=variant.kv,  # type: ignore[arg-type]
        quantization=QuantizationSpec(
            calibration=CalibrationSpec(
                dataset=str(calib_path), samples=variant.samples, max_seq_length=shape.seq_len
            ),
            exclude_modules=list(variant.exclude_modules),
        ),
        backend=variant.backend,
        limits=BuildLimits(max_batch_size=8, max_seq_len=2048),
        gpu=ExpectedGpu(product=expected.product, compute_capability=expected.compute_capability),
        serve_on=ExpectedGpu(product=variant.serve_on[0], compute_capability=variant.serve_on[1])
        if variant.serve_on
        else None,
        output_dir=str(args.work / "store" / "artifacts" / variant.name),
    )
    recipe = recipe_for(request)
    if variant.modelopt_config:
        recipe = dataclasses.replace(recipe, modelopt_config=variant.modelopt_config)
    row["cache_key"] = request.cache_key
    row["modelopt_config"] = " + ".join(c for c in (recipe.modelopt_config, recipe.kv_config) if c)

    def score_in_memory(model: Any) -> None:
        row["modelopt_seconds"] = score(model, source_dir, args, shape, f"{variant.name}.modelopt")

    outcome = pipeline.build(
        request,
        recipe,
        gpus=gpus,
        env={},
        options=pipeline.BuildOptions(
            download_dir=args.work / "download",
            store_root=args.work / "store",
            calibration_batch_size=8,
            export=Export.HF,  # the tensorrt backend (int8) too: trtllm-build cannot run here
            after_quantize=score_in_memory,
            log=log,
        ),
        clock=time.perf_counter,
    )
    manifest = outcome.manifest
    row.update(
        hf_quant_config=(manifest.get("hfQuantConfig") or {}).get("quantization"),
        calibration_samples_used=manifest["quantization"]["calibrationSamplesUsed"],
        artifact_bytes=manifest["totalBytes"],
        build_seconds=manifest["timingsSeconds"]["total"],
    )
    if variant.reload:
        checkpoint = Path(outcome.artifact) / manifest["layout"]["checkpoint"]
        reloaded = reference_reader.load(checkpoint, args.device)
        row["checkpoint_seconds"] = score(reloaded, checkpoint, args, shape, variant.name)


def score(
    model: Any, tokenizer_dir: Path, args: argparse.Namespace, shape: Any, name: str
) -> float:
    """lm-eval's `hf` model on the two local tasks; the results file as `lm_eval` writes it."""
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager
    from transformers import AutoTokenizer

    started = time.perf_counter()
    lm = HFLM(
        pretrained=model,
        tokenizer=AutoTokenizer.from_pretrained(str(tokenizer_dir)),
        batch_size=LM_EVAL_BATCH,
        max_length=shape.seq_len,  # RoPE positions past the training length mean nothing
    )
    results = simple_evaluate(
        model=lm,
        tasks=list(TASKS),
        task_manager=TaskManager(include_path=str(TASKS_DIR), include_defaults=False),
        log_samples=False,
    )
    seconds = time.perf_counter() - started
    write_json(args.out / "lm-eval" / f"{name}.json", results)
    scores = {t: {k: v for k, v in r.items() if "," in k} for t, r in results["results"].items()}
    log(f"{name}: lm-eval {seconds:.1f}s {json.dumps(scores)}")
    return seconds


# --- step 4: QualityReports and verdicts -----------------------------------------------------


def verdicts(results_dir: Path, summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Each candidate's results against BF16's, as the report qmo-eval import-lm-eval writes,
    judged as the operator judges it. Scored twice: the checkpoint, ModelOpt in memory."""
    lm_dir = results_dir / "lm-eval"
    baseline = lm_eval_import.read_results(load_json(lm_dir / "bf16.json"), "bf16.json")
    rows = []
    for name, info in summary["variants"].items():
        for scored, suffix in (("checkpoint", ""), ("modelopt", ".modelopt")):
            path = lm_dir / f"{name}{suffix}.json"
            if name == "bf16" or not path.is_file():
                continue
            candidate = lm_eval_import.read_results(load_json(path), path.name)
            report = build_report(
                model=MODEL,
                variant=f"h200-{name}",
                cache_key=info.get("cache_key") or f"quality-{name}",
                baseline_variant="h200-bf16",
                results=lm_eval_import.import_results(baseline, candidate),
                source=lm_eval_import.SOURCE,
            )
            judgement = judge(report.spec, QUALITY)
            rows.append(
                {
                    "variant": name,
                    "scored": scored,
                    "recipe": info.get("recipe", ""),
                    "report": report.to_wire(),
                    "verdict": judgement.verdict.value,
                    "reason": judgement.reason,
                    "message": judgement.message,
                    "deltas": {d.benchmark: d.delta_percent for d in judgement.deltas},
                }
            )
    return rows


def write_verdicts(results_dir: Path, summary: dict[str, Any]) -> int:
    rows = verdicts(results_dir, summary)
    write_json(results_dir / "verdicts.json", rows)
    text = markdown(rows)
    (results_dir / "quality.md").write_text(text)
    print(text)
    return 0 if rows else 1


def markdown(rows: list[dict[str, Any]]) -> str:
    head = "| variant | scored | recipe |"
    rule = "|---|---|---|"
    for task in TASKS:
        head += f" {task} BF16 | {task} candidate | {task} delta % |"
        rule += "---|---|---|"
    lines = [head + " verdict |", rule + "---|"]
    for row in rows:
        results = {r["benchmark"]: r for r in row["report"]["spec"]["results"]}
        cells = [row["variant"], row["scored"], row["recipe"]]
        for task in TASKS:
            found = results.get(task)
            delta = row["deltas"].get(task)
            cells += (
                [f"{found['baselineScore']:.4f}", f"{found['candidateScore']:.4f}", f"{delta:+.2f}"]
                if found and delta is not None
                else ["-", "-", "-"]
            )
        cells.append(f"**{row['verdict']}**" if row["verdict"] != "Pass" else row["verdict"])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# --- helpers ------------------------------------------------------------------------------------


def versions(device: str) -> dict[str, Any]:
    from importlib import metadata

    info = environment(device)
    for name in ("lm_eval", "datasets", "nvidia-modelopt", "accelerate", "pyarrow"):
        try:
            info[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            info[name] = None
    return info


def load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
