"""A small Llama-architecture model with structured, confident predictions, made offline.

Random weights give near-flat logits, where "top-1 agreement" means nothing. So the model is
trained for a few hundred steps on a synthetic language whose next token is predictable:
an order-2 Markov chain over `active` word tokens. Each token has 4 successors with
probabilities (0.6, 0.2, 0.12, 0.08), and which successor is most likely depends on the token
before it, so the model must use attention, not only a bigram table. The oracle's top-1
(`oracle_next`) shows how structured the trained model is.

After training, a few channels per layer are amplified in a function-preserving way (RMSNorm
weight x S, the columns of the projections that read it / S): the BF16 model computes the
same function but its linear layers now see activation outliers, as real LLMs do, which is
what SmoothQuant and AWQ exist for.

The tokenizer is a word-level one ("w123" -> id 123) so calibration goes through the same
JSONL-of-text path as a real build. Used by e2e/gpu/builder_h100.py.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SPECIALS = ("<unk>", "<s>", "</s>", "<pad>")
FIRST_WORD = len(SPECIALS)
SUCCESSOR_PROBS = np.array([0.6, 0.2, 0.12, 0.08])


@dataclass(frozen=True)
class Shape:
    vocab: int = 32000
    hidden: int = 1024
    intermediate: int = 2816
    layers: int = 8
    heads: int = 16
    kv_heads: int = 4
    active: int = 2048  # word tokens the language uses
    seq_len: int = 256
    train_steps: int = 400
    batch: int = 32
    outlier_channels: int = 4
    outlier_scale: float = 32.0


TINY = Shape(
    vocab=1024, hidden=128, intermediate=384, layers=2, heads=4, kv_heads=2, active=128,
    seq_len=64, train_steps=150, batch=16, outlier_channels=2,
)  # fmt: skip


class Language:
    """The synthetic order-2 Markov language."""

    def __init__(self, active: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.active = active
        self.successors = np.stack([rng.choice(active, 4, replace=False) for _ in range(active)])

    def sample(self, count: int, length: int, seed: int) -> np.ndarray:
        """Token ids, shape (count, length)."""
        rng = np.random.default_rng(seed)
        words = np.zeros((count, length), dtype=np.int64)
        words[:, :2] = rng.integers(self.active, size=(count, 2))
        cumulative = np.cumsum(SUCCESSOR_PROBS)
        for t in range(2, length):
            rank = np.searchsorted(cumulative, rng.random(count), side="right").clip(0, 3)
            slot = (rank + words[:, t - 2]) % 4  # the favourite successor depends on t-2
            words[:, t] = self.successors[words[:, t - 1], slot]
        return words + FIRST_WORD

    def oracle_next(self, ids: np.ndarray) -> np.ndarray:
        """The most likely next token after each position (from position 1 on)."""
        words = ids - FIRST_WORD
        return self.successors[words[:, 1:], words[:, :-1] % 4] + FIRST_WORD

    def entropy_nats(self) -> float:
        return float(-(SUCCESSOR_PROBS * np.log(SUCCESSOR_PROBS)).sum())


def text_of(ids: np.ndarray) -> str:
    return " ".join(f"w{int(i)}" for i in ids)


def write_tokenizer(directory: Path, vocab: int) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = {name: i for i, name in enumerate(SPECIALS)}
    words.update({f"w{i}": i for i in range(FIRST_WORD, vocab)})
    core = Tokenizer(models.WordLevel(vocab=words, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
    )
    tokenizer.save_pretrained(str(directory))


def train(
    shape: Shape, language: Language, device: str, log: Any = print
) -> tuple[Any, dict[str, float]]:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=shape.vocab,
        hidden_size=shape.hidden,
        intermediate_size=shape.intermediate,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.kv_heads,
        max_position_embeddings=4 * shape.seq_len,
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=3,
    )
    config.architectures = ["LlamaForCausalLM"]
    model = LlamaForCausalLM(config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0, betas=(0.9, 0.95))
    warmup = max(1, shape.train_steps // 10)

    def lr_at(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, shape.train_steps - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
    started = time.perf_counter()
    loss_value = float("nan")
    for step in range(shape.train_steps):
        batch = torch.from_numpy(language.sample(shape.batch, shape.seq_len, seed=1000 + step))
        batch = batch.to(device)
        with torch.autocast(
            device_type="cuda" if device.startswith("cuda") else "cpu", dtype=torch.bfloat16
        ):
            loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        loss_value = float(loss.detach())
        if step % 50 == 0 or step == shape.train_steps - 1:
            log(f"train step {step} loss {loss_value:.3f}")
    stats = {
        "train_seconds": time.perf_counter() - started,
        "final_loss": loss_value,
        "language_entropy": language.entropy_nats(),
    }
    return model, stats


def amplify_outliers(model: Any, shape: Shape, seed: int = 7) -> list[list[int]]:
    """Function-preserving: RMSNorm weight x S on a few channels, readers' columns / S."""
    import torch

    rng = np.random.default_rng(seed)
    chosen = []
    with torch.no_grad():
        for layer in model.model.layers:
            for norm, readers in (
                (
                    layer.input_layernorm,
                    (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj),
                ),
                (layer.post_attention_layernorm, (layer.mlp.gate_proj, layer.mlp.up_proj)),
            ):
                channels = sorted(
                    int(c) for c in rng.choice(shape.hidden, shape.outlier_channels, replace=False)
                )
                chosen.append(channels)
                norm.weight[channels] *= shape.outlier_scale
                for linear in readers:
                    linear.weight[:, channels] /= shape.outlier_scale
    return chosen


def save_source(model: Any, directory: Path, shape: Shape) -> None:
    import torch

    model = model.to(torch.bfloat16)
    model.config.dtype = torch.bfloat16
    model.save_pretrained(str(directory), safe_serialization=True)
    write_tokenizer(directory, shape.vocab)


def write_calibration(path: Path, language: Language, samples: int, length: int) -> None:
    ids = language.sample(samples, length, seed=424242)
    with path.open("w", encoding="utf-8") as out:
        for row in ids:
            out.write(json.dumps({"text": text_of(row)}) + "\n")
