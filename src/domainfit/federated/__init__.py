"""Federated fine-tuning on Flower: ``domainfit federate CONFIG``.

Sites keep their data; each round they train the shared model locally and send back only the weights that
train (LoRA adapters and the head under ``peft.method: lora``), which the server combines with one of Flower's
strategies (``strategies``: FedAvg, FedProx, FedAvgM, FedAdam, FedYogi). ``simulation`` runs N sites on one
machine; ``deploy`` holds the Flower ServerApp and ClientApp of a real deployment (docs/federated.md). Needs
the ``federated`` extra.
"""
