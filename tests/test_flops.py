"""Checks the FLOP formula behind the benchmarks' MFU (domainfit.models.flops) against hand counts on tiny
configs."""

import pytest
from transformers import BertConfig

from domainfit.models import flops

TINY = BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37)


def _hand_count_non_embedding(d: int, layers: int, ffn: int) -> int:
    attention = 4 * (d * d + d)  # Q, K, V, output projections with biases
    feed_forward = (d * ffn + ffn) + (ffn * d + d)
    layer_norms = 2 * (2 * d)  # after attention and after the feed-forward
    embedding_layer_norm = 2 * d
    pooler = d * d + d
    return layers * (attention + feed_forward + layer_norms) + embedding_layer_norm + pooler


def test_non_embedding_parameters_match_hand_count():
    # 2 * (4224 + 2437 + 128) + 64 + 1056 = 14698; the 99x32, 512x32 and 2x32 tables are excluded.
    assert _hand_count_non_embedding(32, 2, 37) == 14698
    assert flops.non_embedding_parameters(TINY) == 14698


def test_training_flops_per_token_is_6n_plus_attention():
    seq = 10
    expected = 6 * 14698 + 12 * 2 * 32 * seq  # 88188 + 7680
    assert flops.training_flops_per_token(TINY, seq_len=seq) == expected


def test_seq_len_defaults_to_context_length():
    expected = 6 * 14698 + 12 * 2 * 32 * TINY.max_position_embeddings
    assert flops.training_flops_per_token(TINY) == expected


def test_minilm_shape_gives_two_gflop_per_phrasebank_sample():
    # all-MiniLM-L6-v2's shape; the issue's limit is ~2.0 GFLOP per sample at 30.6 real tokens.
    minilm = BertConfig(
        vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536
    )
    assert flops.non_embedding_parameters(minilm) == 10_795_392
    per_sample = flops.training_flops_per_token(minilm, 30.6) * 30.6
    assert per_sample == pytest.approx(2.008e9, rel=1e-3)


def test_mfu_counts_real_tokens_against_peak():
    per_token = 6 * 14698 + 12 * 2 * 32 * 20
    # Exactly one peak-second of work done in 2 s -> 50%.
    peak_gflops = per_token * 1000 / 1e9
    assert flops.mfu(1000, 2.0, TINY, peak_gflops, mean_seq_len=20) == pytest.approx(0.5)
