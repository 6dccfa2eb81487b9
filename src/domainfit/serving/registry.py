"""Task name -> the function that opens a trained model folder of that task for prediction.

Each predictor module registers its loader beside itself (``PREDICTORS.register("token-classification",
load_token_predictor)``); :func:`domainfit.serving.load` reads the folder's task from ``domainfit.json`` and
dispatches. A new task's predictor is one module plus that registration.
"""

from domainfit.registry import Registry

PREDICTORS: Registry = Registry("predictor")
