"""Robust fine-tuning: PEFT (LoRA, IA3, Houlsby), adversarial training, focal loss, class weights,
oversampling, R-Drop, layer-wise lr decay, and all of them composed in one tiny end-to-end run."""

from __future__ import annotations

import copy
import json
from collections import Counter

import pytest
import torch
import torch.nn.functional as F
from assets import create_tiny_bert

from domainfit.config import PeftConfig, RegularizationConfig, RunConfig, TrainConfig
from domainfit.data.batching import EpochBatchSampler
from domainfit.data.records import Example
from domainfit.data.splits import sample_fraction, sample_per_class
from domainfit.errors import ConfigError
from domainfit.models.peft import apply_peft, parameter_counts
from domainfit.objectives import create_objective
from domainfit.objectives.adversarial import ADVERSARIAL
from domainfit.objectives.compose import build_objective, class_weights
from domainfit.objectives.focal import focal_loss
from domainfit.objectives.rdrop import RDropObjective
from domainfit.tasks import load_run_config
from domainfit.tasks import load_run_config as load_config
from domainfit.tasks.base import TaskData

LABELS = ["negative", "neutral", "positive"]
TEXTS = [
    "Operating profit rose to EUR 13.1 mn .",
    "Shares dropped.",
    "ok",
    "Net sales are expected to remain at the same level as in 2008 .",
]


def tiny_model(dropout: float = 0.1, seed: int = 0):
    return create_tiny_bert(
        seed=seed, vocab_size=120, num_labels=3, hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout
    )


def tiny_batch(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 120, (4, 9), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0  # one padded row
    ids[1, 6:] = 0
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([0, 1, 2, 1])}


def _randomize_trainable(model, seed: int = 1) -> None:
    """Stand in for training: give every trainable tensor (LoRA B, adapters, head) non-zero values."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * 0.3)


# -- PEFT -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["lora", "ia3", "houlsby"])
def test_peft_trains_a_small_share_including_the_head(method, tiny_bert):
    import warnings

    from transformers import AutoModelForSequenceClassification

    base = AutoModelForSequenceClassification.from_pretrained(tiny_bert)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = apply_peft(base, PeftConfig(method=method))
    # peft reads a property transformers deprecates; the user did nothing to deserve the warning
    assert not [w for w in caught if "is_gradient_checkpointing" in str(w.message)]
    counts = parameter_counts(model, method)
    assert 0 < counts["trainable_percent"] < 5
    named = dict(model.named_parameters())
    head = [n for n in named if "classifier" in n and named[n].requires_grad]
    assert head, "the new classification head must train"
    frozen_query = [n for n, p in named.items() if "attention.self.query.weight" in n or "query.base_layer.weight" in n]
    assert frozen_query and not any(named[n].requires_grad for n in frozen_query)
    assert parameter_counts(tiny_model())["trainable_percent"] == 100.0


def test_houlsby_adapters_are_the_identity_at_init_and_active_after():
    base, adapted = tiny_model(seed=3).eval(), tiny_model(seed=3).eval()
    apply_peft(adapted, PeftConfig(method="houlsby", adapter_size=8))
    batch = {k: v for k, v in tiny_batch().items() if k != "labels"}
    with torch.no_grad():
        torch.testing.assert_close(adapted(**batch).logits, base(**batch).logits, rtol=0, atol=1e-6)
        names = [n for n, _ in adapted.named_parameters() if ".adapter." in n]
        assert len(names) == 2 * 2 * 4  # 2 layers x 2 adapters x (down, up) x (weight, bias)
        adapter = adapted.bert.encoder.layer[1].output.dropout.adapter
        adapter.down.weight.normal_(std=0.5)
        adapter.up.weight.normal_(std=0.5)  # random: a constant shift would vanish in the LayerNorm
        changed = adapted(**batch, output_hidden_states=True).hidden_states[-1]  # (batch, seq, hidden)
        assert (
            changed - base(**batch, output_hidden_states=True).hidden_states[-1]
        ).abs().max() > 1e-2  # float noise is ~1e-7
        # export's bf16 parity check deep-copies and casts the model: the adapters must travel with it
        cast = copy.deepcopy(adapted).to(torch.bfloat16)
        torch.testing.assert_close(cast(**batch).logits.float(), adapted(**batch).logits, atol=2e-2, rtol=0)


@pytest.mark.parametrize(
    "method,save",
    [("lora", "merged"), ("lora", "adapter"), ("ia3", "adapter"), ("houlsby", "merged"), ("houlsby", "adapter")],
)
def test_peft_model_folder_round_trips_through_the_predictor(method, save, tiny_bert, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    import domainfit
    from domainfit.tasks.text_classification import TextClassificationTask

    cfg = RunConfig()
    cfg.model.name, cfg.model.max_length = str(tiny_bert), 64
    cfg.peft = PeftConfig(method=method, save=save, adapter_size=8)
    data = TaskData(splits={}, labels=LABELS)
    model = AutoModelForSequenceClassification.from_pretrained(
        tiny_bert, num_labels=3, id2label=dict(enumerate(LABELS)), label2id={l: i for i, l in enumerate(LABELS)}
    )
    model = apply_peft(model, cfg.peft)
    _randomize_trainable(model)
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    out = tmp_path / "model"
    out.mkdir()
    TextClassificationTask().save(model, tokenizer, cfg, data, out)

    model.eval()
    with torch.no_grad():
        expected = torch.stack([model(**tokenizer(t, return_tensors="pt")).logits[0].softmax(-1) for t in TEXTS])
    predictor = domainfit.load(out, backend="torch")
    got = torch.as_tensor(predictor.predict_proba(TEXTS))
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    meta = json.loads((out / "domainfit.json").read_text())["peft"]
    assert meta["method"] == method and meta["trainable_percent"] < 5
    if save == "adapter":
        assert not (out / "model.safetensors").exists()  # only the trained weights, beside a base reference
        assert (out / "adapter_model.safetensors").stat().st_size < (tiny_bert / "model.safetensors").stat().st_size / 4
    if (method, save) == ("lora", "merged"):  # a plain folder: transformers alone gives the same answer
        plain = AutoModelForSequenceClassification.from_pretrained(out).eval()
        with torch.no_grad():
            logits = plain(**tokenizer(TEXTS[0], return_tensors="pt")).logits[0]
        torch.testing.assert_close(logits.softmax(-1), expected[0], rtol=0, atol=1e-5)


# -- adversarial training ---------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["fgm", "pgd", "freelb"])
def test_adversarial_adds_a_bounded_perturbation_loss(method):
    model = tiny_model(dropout=0.0).train()
    epsilon = 0.5
    objective = ADVERSARIAL.get(method)(create_objective("cross-entropy"), epsilon=epsilon, alpha=0.3, steps=3)
    out = objective(model, tiny_batch())
    assert "adv_loss" in out and out["adv_loss"] > out["task_loss"]  # the perturbation ascends the loss
    torch.testing.assert_close(out["loss"].detach(), out["task_loss"] + out["adv_loss"])
    norms = objective.last_delta.flatten(1).norm(dim=1)  # (batch,)
    assert (norms <= epsilon + 1e-5).all() and (norms > 0).all()
    if method == "fgm":
        torch.testing.assert_close(norms, torch.full_like(norms, epsilon))
    assert objective.last_delta[1, 6:].abs().max() == 0  # padding is not perturbed
    out["loss"].backward()  # the loop's one backward covers clean and adversarial graphs
    assert model.classifier.weight.grad is not None and model.classifier.weight.grad.abs().sum() > 0
    model.eval()
    clean = create_objective("cross-entropy")(model, tiny_batch())
    evaluated = objective(model, tiny_batch())
    assert "adv_loss" not in evaluated
    torch.testing.assert_close(evaluated["loss"], clean["loss"])


def test_adversarial_works_under_cpu_bf16_autocast():
    model = tiny_model().train()
    objective = ADVERSARIAL.get("freelb")(create_objective("cross-entropy"), epsilon=1.0, steps=2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = objective(model, tiny_batch())
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and torch.isfinite(model.classifier.weight.grad).all()


# -- losses and class weights -----------------------------------------------------------------------------


def test_focal_loss_is_cross_entropy_at_gamma_zero_and_smaller_above():
    logits, labels = torch.randn(16, 4, generator=torch.Generator().manual_seed(0)) * 2, torch.arange(16) % 4
    weights = torch.tensor([1.0, 2.0, 0.5, 3.0])
    torch.testing.assert_close(focal_loss(logits, labels, gamma=0.0), F.cross_entropy(logits, labels))
    torch.testing.assert_close(
        focal_loss(logits, labels, gamma=0.0, alpha=weights), F.cross_entropy(logits, labels, weight=weights)
    )
    torch.testing.assert_close(
        focal_loss(logits, labels, gamma=0.0, label_smoothing=0.1), F.cross_entropy(logits, labels, label_smoothing=0.1)
    )
    assert focal_loss(logits, labels, gamma=2.0) < F.cross_entropy(logits, labels)


def test_balanced_class_weights_and_named_weights():
    reg = RegularizationConfig(class_weights="balanced")
    w = class_weights(reg, ["a", "a", "a", "b"], ["a", "b"])
    torch.testing.assert_close(w, torch.tensor([4 / (2 * 3), 4 / (2 * 1)]))
    reg = RegularizationConfig(class_weights={"b": 5.0})
    torch.testing.assert_close(class_weights(reg, ["a", "b"], ["a", "b"]), torch.tensor([1.0, 5.0]))
    with pytest.raises(ConfigError, match="regularization.class_weights.c"):
        class_weights(RegularizationConfig(class_weights={"c": 2.0}), ["a"], ["a", "b"])
    assert class_weights(RegularizationConfig(), ["a"], ["a"]) is None


def test_rdrop_kl_is_zero_without_dropout_and_positive_with():
    base = create_objective("cross-entropy")
    out = RDropObjective(base, alpha=1.0)(tiny_model(dropout=0.0).train(), tiny_batch())
    assert out["rdrop_loss"] < 1e-6
    torch.testing.assert_close(out["loss"].detach(), out["task_loss"], atol=1e-6, rtol=0)
    out = RDropObjective(base, alpha=1.0)(tiny_model(dropout=0.3).train(), tiny_batch())
    assert out["rdrop_loss"] > 1e-4 and out["logits"].shape == (4, 3)


def test_composition_order_and_wrapper_names_rejected_as_task_loss(tmp_path):
    cfg = RunConfig()
    cfg.regularization = RegularizationConfig(
        objective="focal", rdrop_alpha=1.0, adversarial="pgd", class_weights="balanced"
    )
    objective = build_objective(cfg, ["a", "b", "b"], ["a", "b"])
    assert type(objective).__name__ == "PGD" and isinstance(objective.base, RDropObjective)
    assert type(objective.base.base).__name__ == "FocalLossObjective"
    torch.testing.assert_close(objective.base.base.class_weights, torch.tensor([1.5, 0.75]))
    # names are the task's contract (Task.check_config), which load_run_config applies
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  train: x.csv\n")
    with pytest.raises(ConfigError, match="regularization.objective"):
        load_run_config(path, ["regularization.objective=rdrop"])
    with pytest.raises(ConfigError, match="peft.method"):
        load_run_config(path, ["peft.method=lorra"])


def test_each_wrapper_registers_its_own_part_of_the_regularization_section():
    import dataclasses

    from domainfit.config import AdversarialConfig, RDropConfig, describe_fields
    from domainfit.objectives.base import WRAPPERS
    from domainfit.objectives.compose import WRAPPER_ORDER

    assert sorted(WRAPPER_ORDER) == WRAPPERS.names()  # a registered wrapper missing from the order would be ignored
    assert WRAPPERS.get("rdrop").config is RDropConfig and WRAPPERS.get("adversarial").config is AdversarialConfig
    for name in WRAPPER_ORDER:  # every part's keys are keys of the flat YAML section
        assert issubclass(RegularizationConfig, WRAPPERS.get(name).config)
    assert [f.name for f in dataclasses.fields(AdversarialConfig)] == [
        "adversarial",
        "adv_epsilon",
        "adv_alpha",
        "adv_steps",
    ]
    # the user-facing keys and their order are those of the one flat section they always were
    assert [key for key, _, _ in describe_fields() if key.startswith("regularization.")] == [
        f"regularization.{k}"
        for k in (
            "objective",
            "class_weights",
            "focal_gamma",
            "label_smoothing",
            "rdrop_alpha",
            "oversample",
            "adversarial",
            "adv_epsilon",
            "adv_alpha",
            "adv_steps",
        )
    ]


def test_a_wrapper_sees_only_its_own_settings_and_only_when_enabled(monkeypatch):
    from domainfit.config import RDropConfig
    from domainfit.objectives.base import WRAPPERS, ObjectiveWrapper

    seen = []
    rdrop = WRAPPERS.get("rdrop")
    monkeypatch.setitem(
        WRAPPERS._items,
        "rdrop",
        ObjectiveWrapper(
            rdrop.config, rdrop.enabled, lambda base, settings: seen.append(settings) or rdrop.create(base, settings)
        ),
    )
    cfg = RunConfig()
    build_objective(cfg, ["a", "b"], ["a", "b"])
    assert seen == []  # rdrop_alpha 0: off
    cfg.regularization = RegularizationConfig(rdrop_alpha=0.5, adversarial="fgm", adv_epsilon=0.2)
    objective = build_objective(cfg, ["a", "b"], ["a", "b"])
    assert seen == [RDropConfig(rdrop_alpha=0.5)] and type(seen[0]) is RDropConfig
    assert type(objective).__name__ == "FGM" and objective.epsilon == 0.2 and objective.base.alpha == 0.5


# -- sampling and optimisation ----------------------------------------------------------------------------


def test_oversampling_balances_classes_every_epoch_and_resumes():
    labels = [0] * 10 + [1] * 2 + [2] * 4
    lengths = list(range(5, 5 + len(labels)))
    sampler = EpochBatchSampler(lengths, 4, seed=1, balance_labels=labels)
    assert len(sampler) == 30 // 4 + 1
    epochs = []
    for epoch in range(2):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        counts = Counter(labels[i] for b in batches for i in b)
        assert counts == {0: 10, 1: 10, 2: 10}
        assert set(i for b in batches for i in b) == set(range(len(labels)))  # nothing dropped
        epochs.append(batches)
        sampler.set_epoch(epoch, start_batch=3)
        assert list(sampler) == batches[3:]
    assert epochs[0] != epochs[1]
    plain = EpochBatchSampler(lengths, 4, seed=1)
    assert sum(len(b) for b in plain) == len(labels)


def test_layer_decay_lowers_lr_with_depth():
    from domainfit.training.optim import create_optimizer

    model = tiny_model()
    optimizer = create_optimizer(model, TrainConfig(learning_rate=1e-3, layer_decay=0.5))
    lr_of = {}
    for group in optimizer.param_groups:
        for p in group["params"]:
            lr_of[id(p)] = group["lr"]
    named = dict(model.named_parameters())
    lr = {
        key: lr_of[id(named[name])]
        for key, name in {
            "head": "classifier.weight",
            "top": "bert.encoder.layer.1.attention.self.query.weight",
            "bottom": "bert.encoder.layer.0.attention.self.query.weight",
            "embeddings": "bert.embeddings.word_embeddings.weight",
        }.items()
    }
    assert lr == pytest.approx({"head": 1e-3, "top": 5e-4, "bottom": 2.5e-4, "embeddings": 1.25e-4})
    assert optimizer.param_groups[0]["lr"] == 1e-3  # the loop logs the first group's lr
    assert len(lr_of) == sum(1 for _ in model.parameters())  # every weight in exactly one group
    plain = create_optimizer(model, TrainConfig(learning_rate=1e-3))
    assert {g["lr"] for g in plain.param_groups} == {1e-3}


def test_sample_per_class_keeps_k_per_label_seeded():
    examples = [Example(f"t{i}", "a" if i % 4 else "b", i) for i in range(40)]  # 30 a, 10 b
    picked = sample_per_class(examples, 8, seed=0)
    assert Counter(e.label for e in picked) == {"a": 8, "b": 8}
    assert [e.line for e in picked] == sorted(e.line for e in picked)
    assert picked == sample_per_class(examples, 8, seed=0) and picked != sample_per_class(examples, 8, seed=1)
    assert len(sample_per_class(examples, 20, seed=0)) == 30  # b has only 10


def test_sample_fraction_keeps_the_imbalance_seeded():
    examples = [Example(f"t{i}", "a" if i % 10 else "b", i) for i in range(100)]  # 90 a, 10 b
    picked = sample_fraction(examples, 0.2, seed=0)
    assert Counter(e.label for e in picked) == {"a": 18, "b": 2}
    assert [e.line for e in picked] == sorted(e.line for e in picked)
    assert picked == sample_fraction(examples, 0.2, seed=0) and picked != sample_fraction(examples, 0.2, seed=1)
    assert Counter(e.label for e in sample_fraction(examples, 0.01, seed=0)) == {"a": 1, "b": 1}  # never empty


# -- everything together ----------------------------------------------------------------------------------


def test_end_to_end_lora_fgm_rdrop_focal_oversampling_llrd(tmp_path, tiny_bert, phrasebank_split):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    import domainfit
    from domainfit.training import train

    out = tmp_path / "out"
    cfg = load_config(
        None,
        [
            f"model.name={tiny_bert}",
            "model.max_length=64",
            f"data.train={phrasebank_split / 'train.csv'}",
            f"data.validation={phrasebank_split / 'val.csv'}",
            f"data.test={phrasebank_split / 'test.csv'}",
            "data.max_train_per_class=16",
            "train.epochs=2",
            "train.batch_size=16",
            "train.learning_rate=1e-3",
            "train.log_every=1",
            "train.layer_decay=0.8",
            f"output.dir={out}",
            "peft.method=lora",
            "regularization.objective=focal",
            "regularization.class_weights=balanced",
            "regularization.rdrop_alpha=1",
            "regularization.adversarial=fgm",
            "regularization.oversample=true",
        ],
    )
    results = train(cfg)
    assert results["data"]["counts"]["train"] == 48 and results["train"]["samples_seen"] == 2 * 48
    params = results["data"]["parameters"]
    assert params["method"] == "lora" and 0 < params["trainable_percent"] < 5
    assert "trained parameters (lora)" in (out / "model" / "README.md").read_text()
    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train/adv_loss", "train/rdrop_loss", "train/task_loss", "train/learning_rate_lowest"} <= tags
    lowest = max(e.value for e in acc.Scalars("train/learning_rate_lowest"))  # peaks (after warm-up)
    head = max(e.value for e in acc.Scalars("train/learning_rate"))
    assert 0 < lowest < head  # layer-wise decay is visible: the deepest trained layer gets a lower lr than the head
    adv = [e.value for e in acc.Scalars("train/adv_loss")]
    task = [e.value for e in acc.Scalars("train/task_loss")]
    assert adv != task
    assert not (out / "model" / "adapter_config.json").exists()  # merged by default
    probs = domainfit.load(out / "model", backend="torch").predict_proba(TEXTS)
    assert probs.shape == (4, 3)


def test_remedies_compose_with_the_joint_objective(tmp_path, tiny_bert, phrasebank_split):
    """The issue's promise: each remedy composes with the others *and* with L_task + lambda L_mlm."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    import domainfit
    from domainfit.training import train

    corpus = tmp_path / "domain.txt"
    corpus.write_text("Operating profit rose to EUR 13.1 mn .\nNet sales decreased by 5 % .\n" * 10, encoding="utf-8")
    out = tmp_path / "out"
    cfg = load_config(
        None,
        [
            f"model.name={tiny_bert}",
            "model.max_length=48",
            f"data.train={phrasebank_split / 'train.csv'}",
            f"data.validation={phrasebank_split / 'val.csv'}",
            "data.max_train_per_class=8",
            "train.epochs=1",
            "train.batch_size=8",
            "train.learning_rate=1e-3",
            "train.log_every=1",
            f"output.dir={out}",
            "peft.method=lora",
            "regularization.objective=focal",
            "regularization.rdrop_alpha=1",
            "regularization.adversarial=fgm",
            "augment.ops=[swap,delete]",
            "augment.rate=0.5",
            "joint.enabled=true",
            f"joint.corpus={corpus}",
            "joint.use_task_texts=false",
            "joint.batch_size=4",
        ],
    )
    results = train(cfg)
    assert results["train"]["samples_seen"] == 24 and 0 < results["data"]["parameters"]["trainable_percent"] < 5
    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    scalars = {tag: [e.value for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
    assert {"train/adv_loss", "train/rdrop_loss", "train/task_loss", "train/mlm_loss", "train/mlm_weight"} <= set(
        scalars
    )
    assert len(scalars["train/mlm_loss"]) == 3 and all(m > 5 for m in scalars["train/mlm_loss"])
    parts = zip(
        scalars["train/loss"],
        scalars["train/task_loss"],
        scalars["train/rdrop_loss"],
        scalars["train/adv_loss"],
        scalars["train/mlm_loss"],
        scalars["train/mlm_weight"],
    )
    for total, task, rdrop, adv, mlm, lam in parts:  # focal + 1 * R-Drop KL + FGM's loss + lambda * MLM, every step
        assert adv > 0 and rdrop >= 0 and lam == pytest.approx(0.1)
        assert total == pytest.approx(task + rdrop + adv + lam * mlm, rel=1e-4)
    assert (out / "model" / "domainfit.json").is_file()
    assert domainfit.load(out / "model", backend="torch").predict_proba(TEXTS).shape == (4, 3)
