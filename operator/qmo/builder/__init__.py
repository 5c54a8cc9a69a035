"""qmo-builder: the program that runs inside build Jobs.

It reads a `BuildRequest` (qmo.api.buildcontract), opens the checkpoint, quantizes it with
NVIDIA ModelOpt, exports a unified Hugging Face checkpoint (PyTorch backend) or builds a
TensorRT engine (TensorRT backend, TensorRT-LLM up to 1.2), writes the artifact atomically with
`qmo-artifact.json`, and reports a short `BuildResult` as the container's termination message.

The operator never imports this package. Modules here import torch, modelopt, transformers and
tensorrt_llm only inside functions, so the pure parts (spec, recipes, gpucheck, artifact
manifest, engine command lines) are importable and testable without a GPU stack.
"""
