"""Builds a small Llama in bf16, fp8, int8 SmoothQuant and int4 AWQ with qmo-builder's code.

    PYTHONPATH=operator:. python3 -m e2e.gpu.builder_h100 --out results/   # on a GPU machine
    PYTHONPATH=operator:. python3 -m e2e.gpu.builder_h100 --tiny --device cpu --out /tmp/r

For each precision the script makes a BuildRequest, checks it with the same GPU predicate the
Job runs, and runs `qmo.builder.pipeline.build` (source check, JSONL calibration, ModelOpt,
unified HF export, atomic publish, manifest). It then reloads each exported checkpoint from
disk (e2e/gpu/reference_reader.py, since TensorRT-LLM cannot be installed on the GPU machine)
and compares its logits with the BF16 source on held-out tokens: top-1 agreement and
KL(BF16 || variant), for the in-memory ModelOpt model and for the reloaded checkpoint.

int8 SmoothQuant is a tensorrt-backend precision; trtllm-build cannot run here, so its row
exports the unified HF checkpoint instead (BuildOptions.export), which is what the reader
reloads. Writes results.json and results.md into --out. One failing precision does not stop
the others.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import shutil
import subprocess
import sys
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any

from e2e.gpu import reference_reader, tiny_llama
from qmo.api.buildcontract import BuildLimits, BuildRequest, ExpectedGpu, SourceRef
from qmo.api.quantizedmodel import CalibrationSpec, EngineBackend, QuantizationSpec
from qmo.builder import artifact, gpucheck, gpuprobe, pipeline, quantize
from qmo.builder.gpucheck import SeenGpu
from qmo.builder.recipes import Export, recipe_for
from qmo.store.checksums import sha256_file

# name, precision, KV dtype, backend
VARIANTS = (
    ("bf16", "bf16", "bf16", EngineBackend.PYTORCH),
    ("fp8", "fp8", "fp8", EngineBackend.PYTORCH),
    ("int8-sq", "int8", "bf16", EngineBackend.TENSORRT),
    ("int4-awq", "int4-awq", "fp8", EngineBackend.PYTORCH),
)
CALIBRATION_SAMPLES = 128
EVAL_SEQUENCES = 16
EVAL_BATCH = 4


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--work", type=Path, default=Path("/tmp/qmo-builder-bench"))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="a toy size, for a CPU smoke run")
    parser.add_argument("--only", nargs="*", help="variant names to build (default: all)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    shape = tiny_llama.TINY if args.tiny else tiny_llama.Shape()
    results: dict[str, Any] = {"environment": environment(args.device), "shape": asdict(shape)}
    write(args.out, results)

    import torch

    if args.device.startswith("cuda"):
        started = time.perf_counter()
        try:
            quantize.precompile_extensions()
            results["extension_compile_seconds"] = time.perf_counter() - started
        except Exception as err:  # the pure-torch fallback still quantizes, only slower
            results["extension_compile_error"] = f"{type(err).__name__}: {err}"
        log(f"ModelOpt CUDA extensions ready in {time.perf_counter() - started:.1f}s")

    work = args.work
    source_dir, calib_path = work / "source", work / "calibration.jsonl"
    language = tiny_llama.Language(shape.active)
    model, stats = tiny_llama.train(shape, language, args.device, log)
    results["outliers"] = tiny_llama.amplify_outliers(model, shape)[:4]
    source_dir.mkdir(parents=True, exist_ok=True)
    tiny_llama.save_source(model, source_dir, shape)
    tiny_llama.write_calibration(calib_path, language, CALIBRATION_SAMPLES, shape.seq_len)
    del model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()

    eval_ids = torch.from_numpy(language.sample(EVAL_SEQUENCES, shape.seq_len, seed=999_999))
    oracle = torch.from_numpy(language.oracle_next(eval_ids.numpy()))
    reference = quantize.load_model(source_dir, "bf16")  # on the GPU when there is one
    ref_logits = logits_of(reference, eval_ids, args.device)
    del reference
    stats["bf16_oracle_top1"] = float((ref_logits.argmax(-1)[:, 1:] == oracle).float().mean())
    results["training"] = stats
    log(f"trained: {stats}")
    write(args.out, results)

    gpus = gpuprobe.probe() if args.device.startswith("cuda") else []
    expected = gpus[0] if gpus else SeenGpu("cpu", "0.0")
    rows = results.setdefault("variants", {})
    for name, precision, kv, backend in VARIANTS:
        if args.only and name not in args.only:
            continue
        log(f"=== {name}")
        gc.collect()  # the last variant's model must not count in this one's peak memory
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        try:
            rows[name] = run_variant(
                name, precision, kv, backend, source_dir, calib_path, work, gpus, expected,
                eval_ids, ref_logits, oracle, args.device, shape, args.out,
            )  # fmt: skip
        except Exception as err:
            traceback.print_exc()
            rows[name] = {"error": f"{type(err).__name__}: {err}"[:2000]}
        log(f"{name}: {json.dumps(rows[name], default=str)[:600]}")
        write(args.out, results)
    (args.out / "results.md").write_text(markdown(results))
    log("results:\n" + markdown(results))
    return 0 if all("error" not in r for r in rows.values()) else 1


def run_variant(
    name: str,
    precision: str,
    kv: str,
    backend: EngineBackend,
    source_dir: Path,
    calib_path: Path,
    work: Path,
    gpus: list[SeenGpu],
    expected: SeenGpu,
    eval_ids: Any,
    ref_logits: Any,
    oracle: Any,
    device: str,
    shape: tiny_llama.Shape,
    out: Path,
) -> dict[str, Any]:
    request = BuildRequest(
        cache_key=f"bench-{name}-{shape.hidden}x{shape.layers}",
        source=SourceRef(uri=str(source_dir)),
        precision=precision,  # type: ignore[arg-type]
        kv_cache_dtype=kv,  # type: ignore[arg-type]
        quantization=QuantizationSpec(
            calibration=CalibrationSpec(
                dataset=str(calib_path), samples=CALIBRATION_SAMPLES, max_seq_length=shape.seq_len
            )
        ),
        backend=backend,
        limits=BuildLimits(max_batch_size=8, max_seq_len=2048),
        gpu=ExpectedGpu(product=expected.product, compute_capability=expected.compute_capability),
        output_dir=str(work / "store" / "artifacts" / f"bench-{name}"),
    )
    recipe = recipe_for(request)
    if gpus:
        refused = gpucheck.refusal(request, gpus)
        if refused is not None:
            return {"refused": f"{refused.reason}: {refused.message}"}
    in_memory: dict[str, float] = {}

    def measure(model: Any) -> None:
        in_memory.update(compare(logits_of(model, eval_ids, device), ref_logits, oracle))

    outcome = pipeline.build(
        request,
        recipe,
        gpus=gpus,
        env={},
        options=pipeline.BuildOptions(
            download_dir=work / "download",
            store_root=work / "store",
            calibration_batch_size=8,
            export=Export.HF,
            after_quantize=measure,
            log=log,
        ),
        clock=time.perf_counter,
    )
    manifest = outcome.manifest
    shutil.copy2(Path(outcome.artifact) / "qmo-artifact.json", out / f"manifest-{name}.json")
    checkpoint = Path(outcome.artifact) / manifest["layout"]["checkpoint"]
    reloaded = reference_reader.load(checkpoint, device)
    from_disk = compare(logits_of(reloaded, eval_ids, device), ref_logits, oracle)
    del reloaded
    weights = sum(f["bytes"] for f in manifest["files"] if f["path"].endswith(".safetensors"))
    return {
        "modelopt_config": " + ".join(c for c in (recipe.modelopt_config, recipe.kv_config) if c),
        "hf_quant_config": (manifest.get("hfQuantConfig") or {}).get("quantization"),
        "artifact_bytes": manifest["totalBytes"],
        "weights_bytes": weights,
        "build_seconds": manifest["timingsSeconds"]["total"],
        "timings": manifest["timingsSeconds"],
        "peak_gpu_memory_bytes": manifest["peakGpuMemoryBytes"],
        "in_memory": in_memory,
        "reloaded": from_disk,
        "files": len(manifest["files"]),
        "artifact_check": verify_checksums(Path(outcome.artifact), manifest),
    }


def logits_of(model: Any, ids: Any, device: str) -> Any:
    import torch

    outputs = []
    with torch.no_grad():
        for start in range(0, ids.shape[0], EVAL_BATCH):
            batch = ids[start : start + EVAL_BATCH].to(device)
            outputs.append(model(input_ids=batch).logits.float().cpu())
    return torch.cat(outputs)


def compare(logits: Any, reference: Any, oracle: Any) -> dict[str, float]:
    """Top-1 agreement and KL(reference || variant) over every position but the first."""
    import torch

    ref = torch.log_softmax(reference[:, 1:], dim=-1)
    var = torch.log_softmax(logits[:, 1:], dim=-1)
    kl = (ref.exp() * (ref - var)).sum(-1)
    return {
        "top1_agreement": float((ref.argmax(-1) == var.argmax(-1)).float().mean()),
        "kl_mean": float(kl.mean()),
        "kl_p99": float(torch.quantile(kl.flatten(), 0.99)),
        "oracle_top1": float((logits.argmax(-1)[:, 1:] == oracle).float().mean()),
    }


def verify_checksums(root: Path, manifest: dict[str, Any]) -> str:
    for entry in manifest["files"]:
        if sha256_file(root / entry["path"]) != entry["sha256"]:
            return f"checksum mismatch: {entry['path']}"
    return "ok"


def environment(device: str) -> dict[str, Any]:
    import torch
    import transformers

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "transformers": transformers.__version__,
        "libraries": artifact.library_versions(),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["compute_capability"] = ".".join(map(str, torch.cuda.get_device_capability(0)))
        try:
            info["driver"] = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True, text=True, timeout=30, check=True,
            ).stdout.strip()  # fmt: skip
        except (OSError, subprocess.SubprocessError):
            info["driver"] = None
    return info


def write(out: Path, results: dict[str, Any]) -> None:
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))


def markdown(results: dict[str, Any]) -> str:
    header = (
        "| precision | ModelOpt config | artifact MiB | build s | peak GPU GiB "
        "| top-1 vs BF16 | KL(BF16‖q) mean | KL p99 | top-1 in memory | KL in memory "
        "| oracle top-1 |"
    )
    lines = [header, "|" + "---|" * 11]
    for name, row in results.get("variants", {}).items():
        if "error" in row or "refused" in row:
            lines.append(f"| {name} | {row.get('error') or row.get('refused')} |" + " |" * 9)
            continue
        peak = row["peak_gpu_memory_bytes"]
        disk, mem = row["reloaded"], row["in_memory"]
        cells = [
            name,
            row["modelopt_config"] or "- (copy)",
            f"{row['artifact_bytes'] / 2**20:.1f}",
            f"{row['build_seconds']:.1f}",
            f"{peak / 2**30:.2f}" if peak else "-",
            f"{disk['top1_agreement']:.4f}",
            f"{disk['kl_mean']:.5f}",
            f"{disk['kl_p99']:.4f}",
            f"{mem['top1_agreement']:.4f}" if mem else "-",
            f"{mem['kl_mean']:.5f}" if mem else "-",
            f"{disk['oracle_top1']:.4f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
