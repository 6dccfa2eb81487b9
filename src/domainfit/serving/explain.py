"""Explain a trained model's predictions from a model folder or a loaded predictor, whatever its task.

    domainfit explain runs/x/model texts.csv --method ig --output explanations.html
    domainfit explain runs/ner/model texts.csv --output entities.html      # per-entity word attributions
    domainfit explain runs/defects/model photos/ --output heatmaps.html    # Grad-CAM heat maps

    import domainfit
    from domainfit.serving.explain import explain
    explain("runs/x/model", ["Operating profit rose to EUR 13.1 mn ."], method="ig")
    # [{'text': ..., 'explanations': [{'label': 'positive', 'probability': 0.97, 'words': [...]}], ...}]

This module only opens the model (``domainfit.load``, PyTorch fp32: gradients need it) and hands the network
to the explainer registered for the folder's task in ``EXPLAINERS`` (one :class:`ExplainerSpec` per task):
text and multi-label classifiers get word attributions (:class:`~domainfit.evaluation.explain.TextExplainer`),
token classifiers per-entity word attributions
(:class:`~domainfit.evaluation.explain_entities.EntityExplainer`), image classifiers Grad-CAM heat maps
(:class:`~domainfit.evaluation.explain_images.GradCamExplainer`). A new task's explanations are one builder
plus one ``EXPLAINERS.register`` call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from domainfit.errors import DomainfitError
from domainfit.evaluation.explain import DEFAULT_STEPS, METHODS, TextExplainer, check_method, check_texts
from domainfit.evaluation.explain_entities import EntityExplainer
from domainfit.evaluation.explain_images import IMAGE_METHODS, GradCamExplainer
from domainfit.models.folder import folder_task
from domainfit.registry import Registry
from domainfit.serving.image_predictor import ImagePredictor
from domainfit.serving.loader import load
from domainfit.serving.model_folder import check_model_dir
from domainfit.serving.multilabel_predictor import MultiLabelPredictor
from domainfit.serving.predictor import Predictor
from domainfit.serving.runners import TorchRunner
from domainfit.serving.token_predictor import TokenPredictor


@dataclass(frozen=True)
class ExplainerSpec:
    """How one task's predictions are explained.

    Attributes:
        build: ``predictor -> explainer``, the explainer having ``explain(items, *, method, n_steps)``; the
            predictor runs on PyTorch fp32 and is of the task's predictor class.
        predictor_type: the predictor class of the task (a predictor of another class is refused).
        methods: the explanation methods, the default first.
        inputs: "texts" or "images": what ``domainfit explain``'s INPUT holds.
    """

    build: Callable[[Any], Any]
    predictor_type: type
    methods: tuple[str, ...]
    inputs: str = "texts"


EXPLAINERS: Registry = Registry("explainer")


def _text_explainer(predictor: Predictor) -> TextExplainer:
    tokenizer = predictor._tokenizer  # the FastTokenizer keeps the Hugging Face tokenizer it was made from
    # a model trained on windows reads a long text in pieces; its explanation covers the first window
    return TextExplainer(
        predictor._runner.model,
        tokenizer._hf,
        predictor.labels,
        max_length=predictor.max_length,
        text_prefix=predictor.text_prefix,
    )


def _multilabel_explainer(predictor: MultiLabelPredictor) -> TextExplainer:
    tokenizer = predictor._tokenizer
    return TextExplainer(
        predictor._runner.model,
        tokenizer._hf,
        predictor.labels,
        max_length=tokenizer.max_length,
        text_prefix=predictor.text_prefix,
        multi_label=True,
        thresholds=predictor.thresholds,
    )


def _entity_explainer(predictor: TokenPredictor) -> EntityExplainer:
    # the entities explained are the predictor's own: windows merged, strict IOB2 decoding
    return EntityExplainer(
        predictor._runner.model,
        predictor._tokenizer,
        predictor.labels,
        max_length=predictor.max_length,
        find_entities=predictor.predict,
        label_unit=predictor.label_unit,
    )


def _image_explainer(predictor: ImagePredictor) -> GradCamExplainer:
    return GradCamExplainer(
        predictor._runner.model, predictor.labels, predictor.preprocessing, temperature=predictor.temperature
    )


EXPLAINERS.register("text-classification", ExplainerSpec(_text_explainer, Predictor, METHODS))
EXPLAINERS.register("multi-label-classification", ExplainerSpec(_multilabel_explainer, MultiLabelPredictor, METHODS))
EXPLAINERS.register("token-classification", ExplainerSpec(_entity_explainer, TokenPredictor, METHODS))
EXPLAINERS.register(
    "image-classification", ExplainerSpec(_image_explainer, ImagePredictor, IMAGE_METHODS, inputs="images")
)
TASKS = tuple(EXPLAINERS.names())


def _refuse(task: str) -> DomainfitError:
    return DomainfitError(
        f"explanations cover {', '.join(TASKS)} models; this is a {task} model",
        fix="explain the folder of a model of one of those tasks.",
    )


def spec_for_folder(model_dir: str | Path) -> ExplainerSpec:
    """The :class:`ExplainerSpec` of a model folder's task, checked before anything is loaded.

    Raises:
        DomainfitError: the folder is missing or not a model folder, or its task has no explainer.
    """
    task = folder_task(check_model_dir(model_dir))
    if task not in EXPLAINERS:
        raise _refuse(task)
    return EXPLAINERS.get(task)


def _spec_for_predictor(predictor: Any) -> ExplainerSpec:
    # a multi-label predictor is not a text Predictor, nor an image one a token one: the class names the task
    for task in TASKS:
        spec = EXPLAINERS.get(task)
        if type(predictor) is spec.predictor_type:
            return spec
    raise _refuse(getattr(predictor, "task", type(predictor).__name__))


def explainer_for(predictor_or_dir: Any) -> Any:
    """The explainer of a model folder (loaded on PyTorch fp32) or of a loaded predictor.

    Returns:
        An object with ``explain(items, *, method, n_steps)``: a :class:`TextExplainer`,
        :class:`EntityExplainer` or :class:`GradCamExplainer`.

    Raises:
        DomainfitError: the folder's task has no explainer, or the predictor does not run on PyTorch fp32
            (ONNX has no gradients; bf16 ones are too coarse).
    """
    if isinstance(predictor_or_dir, (str, Path)):
        spec_for_folder(predictor_or_dir)  # refused before the model is loaded
        predictor = load(predictor_or_dir, backend="torch")
    else:
        predictor = predictor_or_dir
    spec = _spec_for_predictor(predictor)
    runner = predictor._runner
    if predictor.backend != "torch" or not isinstance(runner, TorchRunner):
        raise DomainfitError(
            f"explanations need the PyTorch fp32 backend; this predictor runs on "
            f"{predictor.backend!r} (no gradients there)",
            fix="load the folder with domainfit.load(DIR, backend='torch'), or pass the folder.",
        )
    return spec.build(predictor)


def explain(
    predictor_or_dir: Any, items: Sequence[Any], *, method: str | None = None, n_steps: int = DEFAULT_STEPS
) -> list[dict[str, Any]]:
    """Explain each item's prediction; the server's ``/explain`` calls this.

    Args:
        predictor_or_dir: a model folder, or a predictor from ``domainfit.load(DIR, backend="torch")``.
        items: texts, or for an image model image paths or PIL images.
        method: one of the task's methods (text and token classification: "ig" or "grad-x-input"; images:
            "grad-cam"); None for the task's default (the first).
        n_steps: IG integration steps.

    Returns:
        One JSON-ready dict per item (see the explainers' ``explain``).
    """
    if isinstance(predictor_or_dir, (str, Path)):
        spec = spec_for_folder(predictor_or_dir)
    else:
        spec = _spec_for_predictor(predictor_or_dir)
    method = method or spec.methods[0]
    check_method(method, spec.methods)  # before the model is loaded
    if spec.inputs == "texts":
        items = check_texts(items)
    return explainer_for(predictor_or_dir).explain(items, method=method, n_steps=n_steps)
