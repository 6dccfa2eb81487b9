"""Serving: load a trained model folder and classify texts, fast.

import domainfit
domainfit.load("runs/x/model").predict(["Operating profit rose to EUR 13.1 mn ."])
"""

from domainfit.serving.backends import BACKENDS
from domainfit.serving.loader import load
from domainfit.serving.predictor import Predictor

__all__ = ["BACKENDS", "Predictor", "load"]
