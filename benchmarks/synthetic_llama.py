"""A synthetic Llama-shaped base and experts, written as HF-style checkpoint directories for the merge benchmark.

Real tensor names (`model.layers.N.self_attn.q_proj.weight`, ...) and a LlamaConfig `config.json`, so mergekit
reads them as a real checkpoint. The base draws N(0, 0.02) matrices and near-one norm weights; expert i is
`base + 0.002 * (0.6 * shared + 0.8 * own_i)`: small task vectors with pairwise cosine about 0.36, so TIES
elects signs over real conflicts and Model Stock's interpolation factor is far from 0 or 1.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file


@dataclass(frozen=True)
class LlamaShape:
    layers: int
    hidden: int
    intermediate: int
    vocab: int
    heads: int

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Every tensor's name and shape, in checkpoint order (untied `lm_head`)."""
        h, m = self.hidden, self.intermediate
        out: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (self.vocab, h)}
        for i in range(self.layers):
            p = f"model.layers.{i}."
            out[p + "input_layernorm.weight"] = (h,)
            for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
                out[p + f"self_attn.{proj}.weight"] = (h, h)
            out[p + "post_attention_layernorm.weight"] = (h,)
            out[p + "mlp.gate_proj.weight"] = (m, h)
            out[p + "mlp.up_proj.weight"] = (m, h)
            out[p + "mlp.down_proj.weight"] = (h, m)
        out["model.norm.weight"] = (h,)
        out["lm_head.weight"] = (self.vocab, h)
        return out

    def n_params(self) -> int:
        return sum(torch.Size(s).numel() for s in self.shapes().values())

    def config(self) -> dict[str, object]:
        """A LlamaConfig as transformers writes it (the fields mergekit and transformers read)."""
        return {
            "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": self.hidden,
            "intermediate_size": self.intermediate, "num_hidden_layers": self.layers,
            "num_attention_heads": self.heads, "num_key_value_heads": self.heads, "vocab_size": self.vocab,
            "max_position_embeddings": 2048, "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "hidden_act": "silu",
            "tie_word_embeddings": False, "torch_dtype": "float32", "bos_token_id": 1, "eos_token_id": 2,
            "initializer_range": 0.02, "attention_bias": False, "mlp_bias": False,
        }


FULL = LlamaShape(layers=12, hidden=768, intermediate=2048, vocab=32000, heads=12)  # 134M parameters
QUICK = LlamaShape(layers=2, hidden=256, intermediate=688, vocab=4096, heads=4)  # 3.2M parameters
#: Llama-shaped sizes for the placement benchmark and the GPU check (generated on the fly, never cached)
SIZES = {
    "1b": LlamaShape(layers=22, hidden=2048, intermediate=5632, vocab=32000, heads=32),  # 1.10B (TinyLlama's)
    "3b": LlamaShape(layers=26, hidden=3200, intermediate=8640, vocab=32000, heads=32),  # 3.43B (OpenLLaMA 3B's)
    "7b": LlamaShape(layers=32, hidden=4096, intermediate=11008, vocab=32000, heads=32),  # 6.74B (Llama 2 7B's)
}
NOISE = 0.002


def model_names(n_experts: int) -> list[str]:
    return ["base", *(f"expert{i}" for i in range(n_experts))]


def ensure_checkpoints(shape: LlamaShape, root: Path, n_experts: int, seed: int = 0,
                       dtype: torch.dtype = torch.float32) -> Path:
    """Write (once) `root/<shape>/{base,expert0..}` (drawn in float32, stored in `dtype`); return that folder."""
    suffix = "" if dtype == torch.float32 else f"-{str(dtype).removeprefix('torch.')}"
    folder = root / f"llama-{shape.layers}x{shape.hidden}-k{n_experts}-s{seed}{suffix}"
    if (folder / "complete").exists():
        return folder
    gen = torch.Generator().manual_seed(seed)
    base = {name: _base_tensor(name, dims, gen) for name, dims in shape.shapes().items()}
    shared = {name: torch.randn(t.shape, generator=gen) for name, t in base.items()}
    _write(folder / "base", shape, base, dtype)
    for i in range(n_experts):
        expert = {name: t + NOISE * (0.6 * shared[name] + 0.8 * torch.randn(t.shape, generator=gen))
                  for name, t in base.items()}
        _write(folder / f"expert{i}", shape, expert, dtype)
        del expert
    (folder / "complete").write_text("ok\n")
    return folder


def synthetic_models(shape: LlamaShape, n_experts: int, dtype: torch.dtype, device: torch.device | str = "cpu",
                     seed: int = 0) -> tuple[dict[str, torch.Tensor], list[dict[str, torch.Tensor]]]:
    """The same kind of base and experts in host memory, drawn tensor by tensor on `device` (fast on a GPU; the
    draws differ from `ensure_checkpoints`'), for sizes too large to write to disk for a benchmark."""
    gen = torch.Generator(device).manual_seed(seed)
    base: dict[str, torch.Tensor] = {}
    experts: list[dict[str, torch.Tensor]] = [{} for _ in range(n_experts)]
    for name, dims in shape.shapes().items():
        tensor = _base_tensor(name, dims, gen, device)
        shared = torch.randn(dims, generator=gen, device=device)
        base[name] = tensor.to(dtype).cpu()
        for expert in experts:
            own = torch.randn(dims, generator=gen, device=device)
            expert[name] = (tensor + NOISE * (0.6 * shared + 0.8 * own)).to(dtype).cpu()
    return base, experts


def _base_tensor(name: str, dims: tuple[int, ...], gen: torch.Generator, device: torch.device | str = "cpu"
                 ) -> torch.Tensor:
    if name.endswith("norm.weight"):
        return 1.0 + 0.05 * torch.randn(dims, generator=gen, device=device)
    return 0.02 * torch.randn(dims, generator=gen, device=device)


def _write(path: Path, shape: LlamaShape, tensors: dict[str, torch.Tensor], dtype: torch.dtype) -> None:
    path.mkdir(parents=True, exist_ok=True)
    config = dict(shape.config(), torch_dtype=str(dtype).removeprefix("torch."))
    (path / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    save_file({k: v.to(dtype).contiguous() for k, v in tensors.items()}, str(path / "model.safetensors"),
              metadata={"format": "pt"})
