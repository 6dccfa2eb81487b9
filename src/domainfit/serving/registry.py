"""What the serving layer dispatches on, each filled by the modules that provide it.

``PREDICTORS``: task name -> the function that opens a trained model folder of that task for prediction. Each
predictor module registers its loader beside itself (``PREDICTORS.register("token-classification",
load_token_predictor)``); :func:`domainfit.serving.load` reads the folder's task from ``domainfit.json`` and
dispatches. A new task's predictor is one module plus that registration.

``RUNNER_KINDS``: runner kind -> ``factory(model_dir, backend, num_threads) -> Runner``, what a model worker
process (:mod:`domainfit.serving.model_process`) builds; a predictor module registers the kind its model needs
(``RUNNER_KINDS.register("token", create_token_runner)``) and asks for it by name.
"""

from domainfit.registry import Registry

PREDICTORS: Registry = Registry("predictor")
RUNNER_KINDS: Registry = Registry("model-process runner kind")
