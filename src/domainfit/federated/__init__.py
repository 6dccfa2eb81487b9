"""Federated fine-tuning on Flower: ``domainfit federate CONFIG``.

Sites keep their data; each round they train the shared model locally and send back only the weights that
train (LoRA adapters and the head under ``peft.method: lora``), which the server averages with Flower's
FedAvg or FedProx. ``simulation`` runs N sites on one machine; ``deploy`` holds the Flower ServerApp and
ClientApp of a real deployment (docs/federated.md). Needs the ``federated`` extra.
"""
