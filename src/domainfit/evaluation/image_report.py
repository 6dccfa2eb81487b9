"""The image-classification report: the standard ``report.md`` (scores, confusion matrix) plus a thumbnail grid
of the images the model got wrong, each labelled true -> predicted, so a reader sees *what* it confuses.

Written by :meth:`domainfit.tasks.image_classification.ImageClassificationTask.write_report` at the end of
``domainfit train``. With no mistakes, the grid shows a few correct examples per class instead.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from domainfit.evaluation.calibration_report import trust_sections
from domainfit.evaluation.report import REPORT_NAME, write_report
from domainfit.evaluation.reports import REPORTS, RunReport
from domainfit.io.atomic import write_atomic, write_text_atomic

THUMBNAILS_NAME = "misclassified.png"
_MAX_THUMBNAILS = 24
_CORRECT_PER_CLASS = 2
_COLUMNS = 6
# the image section goes in front of the first of these headings of report.md
_INSERT_BEFORE = ("## Training history", "## Run", "## How to read the scores")


def write_image_report(
    out_dir: Path,
    metrics: dict,
    *,
    model: torch.nn.Module | None,
    inputs: Any,
    examples: list,
    labels: list[str],
    probabilities: torch.Tensor | None = None,
    **kwargs: Any,
) -> Path:
    """Write report.md + confusion_matrix.png (see :func:`domainfit.evaluation.report.write_report`) and
    ``misclassified.png``, and add a section on the latter to report.md.

    Args:
        out_dir: the run folder.
        metrics: the scored split's ``classification_metrics`` dict.
        model: the shipped (best) model; None skips the image grid.
        inputs: the task's :class:`~domainfit.tasks.image_classification.ImageInputs`.
        examples: the scored split's :class:`~domainfit.data.images.ImageExample` list, in metric order.
        labels: class names in id order.
        probabilities: (n, num_labels) for ``examples`` if already computed; else the model predicts them.
        **kwargs: passed on to ``write_report`` (title, split_name, context, history, best_metric).
    """
    out_dir = Path(out_dir)
    report_path = write_report(out_dir, metrics, **kwargs)
    if model is None or not examples:
        return report_path
    if probabilities is None:
        probabilities = predict_probabilities(model, inputs, examples)  # (n, num_labels)
    predicted = probabilities.argmax(1).tolist()
    truth = [labels.index(e.label) for e in examples]
    wrong = [i for i in range(len(examples)) if predicted[i] != truth[i]]
    if wrong:
        shown = sorted(wrong, key=lambda i: -float(probabilities[i, predicted[i]]))[
            :_MAX_THUMBNAILS
        ]  # confident errors first
        heading = (
            f"{len(wrong)} of {len(examples)} {kwargs.get('split_name', 'test')} images are misclassified"
            + (f"; the {len(shown)} most confident mistakes are shown" if len(shown) < len(wrong) else "")
            + ", each titled true label -> predicted label (probability)."
        )
    else:
        shown = [
            i
            for label in range(len(labels))
            for i in [j for j in range(len(examples)) if truth[j] == label][:_CORRECT_PER_CLASS]
        ]
        heading = (
            f"The model got every {kwargs.get('split_name', 'test')} image right; here are up to "
            f"{_CORRECT_PER_CLASS} examples per class, each titled with its label and probability."
        )
    tiles = [
        (
            examples[i].path,
            f"{labels[truth[i]]} -> {labels[predicted[i]]}" if i in wrong else labels[truth[i]],
            float(probabilities[i, predicted[i]]),
            i in wrong,
        )
        for i in shown
    ]
    png = thumbnail_grid(tiles)
    write_atomic(out_dir / THUMBNAILS_NAME, lambda p: p.write_bytes(png))
    listing = "\n".join(f"- `{Path(path).name}`: {title} ({p:.2f})" for path, title, p, is_wrong in tiles if is_wrong)
    section = "\n".join(
        [
            "## Misclassified images" if wrong else "## Example images",
            "",
            heading,
            "",
            f"![Images]({THUMBNAILS_NAME})",
            *(["", listing] if listing else []),
        ]
    )
    text = report_path.read_text(encoding="utf-8")
    for marker in _INSERT_BEFORE:
        if marker in text:
            text = text.replace(marker, f"{section}\n\n{marker}", 1)
            break
    else:
        text = text.rstrip("\n") + f"\n\n{section}\n"
    write_text_atomic(out_dir / REPORT_NAME, text)
    return report_path


@torch.inference_mode()
def predict_probabilities(model: torch.nn.Module, inputs: Any, examples: list, batch_size: int = 32) -> torch.Tensor:
    """Softmax probabilities (n, num_labels) for image examples, with the evaluation preprocessing."""
    from domainfit.tasks.image_classification import collate_images

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    chunks = []
    for start in range(0, len(examples), batch_size):
        items = [{"path": e.path, "labels": 0} for e in examples[start : start + batch_size]]
        batch = collate_images(items, inputs, train=False)
        chunks.append(model(pixel_values=batch["pixel_values"].to(device)).logits.float().softmax(-1).cpu())
    model.train(was_training)
    return torch.cat(chunks)


def thumbnail_grid(tiles: list[tuple[str, str, float, bool]], *, columns: int = _COLUMNS) -> bytes:
    """A PNG grid of images, each titled ``title (probability)``, red for mistakes and green for correct ones.

    Args:
        tiles: (image path, title, probability of the predicted label, is a mistake) per image.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from domainfit.data.images import open_rgb

    columns = max(1, min(columns, len(tiles)))
    rows = -(-len(tiles) // columns)
    fig = Figure(figsize=(2.2 * columns, 2.7 * rows), dpi=100)
    FigureCanvasAgg(fig)
    for k, (path, title, probability, is_wrong) in enumerate(tiles):
        ax = fig.add_subplot(rows, columns, k + 1)
        image = open_rgb(path)
        image.thumbnail((160, 160))
        ax.imshow(image)
        ax.set_title(f"{title}\n({probability:.2f})", fontsize=8, color="firebrick" if is_wrong else "darkgreen")
        ax.axis("off")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _report_image_run(task: Any, out_dir: Path, metrics: dict, **kwargs: Any) -> Path:
    """The standard report (scores, confusion matrix) plus a grid of misclassified images of the last split
    the task scored (``task.shipped``: model, inputs, data; ``task.last_logits``)."""
    split = kwargs.get("split_name", "test")
    model, inputs, data = task.shipped if task.shipped else (None, None, None)
    examples = data.splits.get(split, []) if data else []
    logits = task.last_logits
    probabilities = logits.softmax(-1) if logits is not None and len(logits) == len(examples) else None
    return write_image_report(
        out_dir,
        metrics,
        model=model,
        inputs=inputs,
        examples=examples,
        labels=data.labels if data else metrics["labels"],
        probabilities=probabilities,
        extra_sections=trust_sections(out_dir, metrics, split),
        **kwargs,
    )


REPORTS.register("image-classification", RunReport(write_report=_report_image_run))
