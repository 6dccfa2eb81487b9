"""Training FLOP counts and model FLOPs utilisation (MFU) of an encoder, from its config alone.

The benchmarks report MFU with these (`benchmarks/flops.py` measures the peak it is divided by; run it to
print this machine's figures for all-MiniLM-L6-v2).

Formula (per real token, one forward + backward pass), following Kaplan et al. 2020, "Scaling Laws for
Neural Language Models", section 2.1, and the MFU definition of Chowdhery et al. 2022, "PaLM", appendix B:

    flops_per_token = 6 * N  +  12 * L * H * T

- N: non-embedding parameters of the encoder (every parameter except the `nn.Embedding` tables; for BERT
  that is the layers, the embedding LayerNorm and the pooler; the task head is left out because it runs
  once per sequence, not per token). Each such weight does one multiply-add (2 FLOPs) per token in the
  forward pass and twice that in the backward pass (gradient w.r.t. inputs and w.r.t. weights): 6N.
- 12 * L * H * T: attention scores (Q K^T) and context (softmax(.) V), each 2 * H * T FLOPs per token per
  layer forward, times 3 for forward + backward. L = layers, H = hidden size (= heads x head dim), T =
  sequence length attended over. PaLM appendix B writes this 12 * L * H * Q * T with H heads of size Q.
  Kaplan counts only the score term (6 * L * T * d_attn); we follow PaLM.

MFU = (flops_per_token * real tokens / seconds) / peak FLOP/s. Only real (non-padding) tokens count, as in
PaLM: FLOPs spent on padding are waste, and a loop that avoids them must score higher. The peak is the
measured throughput of a large fp32 matmul on this machine, not a datasheet number, so 100% is what a dense
fp32 GEMM achieves here.
"""

from __future__ import annotations

import torch
from transformers import AutoModel, PretrainedConfig


def non_embedding_parameters(config: PretrainedConfig) -> int:
    """Count the encoder's parameters outside its embedding tables.

    The model is built on the meta device, so no memory is allocated and no weights are needed.

    Args:
        config: A transformers model config (e.g. `BertConfig`).

    Returns:
        Number of parameters of `AutoModel.from_config(config)` not owned by an `nn.Embedding`.
    """
    with torch.device("meta"):
        model = AutoModel.from_config(config)
    embedding_ids = {
        id(param)
        for module in model.modules()
        if isinstance(module, torch.nn.Embedding)
        for param in module.parameters(recurse=False)
    }
    return sum(param.numel() for param in model.parameters() if id(param) not in embedding_ids)


def training_flops_per_token(config: PretrainedConfig, seq_len: float | None = None) -> float:
    """Training FLOPs (forward + backward) per real token: 6 * N + 12 * L * H * T.

    Args:
        config: A transformers model config with `num_hidden_layers` and `hidden_size`.
        seq_len: T, the length attended over. For padding-free MFU pass the mean real sequence length;
            defaults to `config.max_position_embeddings` (Kaplan's n_ctx convention).

    Returns:
        FLOPs per token.
    """
    if seq_len is None:
        seq_len = config.max_position_embeddings
    attention = 12 * config.num_hidden_layers * config.hidden_size * seq_len
    return 6 * non_embedding_parameters(config) + attention


def mfu(
    real_tokens: int,
    seconds: float,
    config: PretrainedConfig,
    peak_gflops: float,
    mean_seq_len: float | None = None,
) -> float:
    """Model FLOPs utilisation over real (non-padding) tokens, as a fraction (0.21 = 21%).

    Args:
        real_tokens: Non-padding tokens trained on, summed over all epochs.
        seconds: Wall time of the training loop.
        config: The model's config.
        peak_gflops: Measured peak GFLOP/s (`benchmarks/flops.py` measures it).
        mean_seq_len: Mean real length per sequence, for the attention term. Using the mean rather than
            per-sequence lengths slightly undercounts attention (sum of T^2 >= n * mean^2), so MFU errs low.

    Returns:
        Achieved FLOP/s divided by peak FLOP/s.
    """
    flops = training_flops_per_token(config, mean_seq_len) * real_tokens
    return flops / seconds / (peak_gflops * 1e9)
