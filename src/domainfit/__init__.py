"""domainfit: adapt pretrained transformers to your industry's own data.

domainfit train config.yaml          # fine-tune, select the best epoch, report, write model/
domainfit predict runs/x/model in.csv --output out.csv

import domainfit
domainfit.load("runs/x/model").predict(["Operating profit rose to EUR 13.1 mn ."])
"""

from domainfit.version import __version__


def load(model_dir, **kwargs):
    """Load a trained model folder for prediction (see :func:`domainfit.serving.load`)."""
    from domainfit.serving import load as _load

    return _load(model_dir, **kwargs)


__all__ = ["__version__", "load"]
