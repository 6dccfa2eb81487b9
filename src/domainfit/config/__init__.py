"""Typed configuration: ``RunConfig`` for ``domainfit train``, ``PretrainConfig`` for ``domainfit pretrain``.

    domainfit train my.yaml train.learning_rate=3e-5 output.dir=runs/try2

``core`` holds the run config's core sections and the loading rules (YAML < overrides, strict keys, coercion,
cross-field checks); ``sections`` the task and method sections; ``pretrain`` the pretraining config.
"""

from domainfit.config.core import (
    DataConfig,
    ModelConfig,
    OutputConfig,
    RunConfig,
    TrainConfig,
    describe_fields,
    dump_yaml,
    load_config,
    to_dict,
    validate,
)
from domainfit.config.pretrain import CorpusConfig, PretrainConfig, PretrainTrainConfig, load_pretrain_config
from domainfit.config.sections import (
    AdversarialConfig,
    AugmentConfig,
    EvaluationConfig,
    GenerationConfig,
    ImageConfig,
    JointConfig,
    MaskingConfig,
    MultiLabelConfig,
    NerConfig,
    PeftConfig,
    RDropConfig,
    RegularizationConfig,
    SamplingConfig,
    TaskLossConfig,
)

__all__ = [
    "AdversarialConfig",
    "AugmentConfig",
    "CorpusConfig",
    "DataConfig",
    "EvaluationConfig",
    "GenerationConfig",
    "ImageConfig",
    "JointConfig",
    "MaskingConfig",
    "ModelConfig",
    "MultiLabelConfig",
    "NerConfig",
    "OutputConfig",
    "PeftConfig",
    "PretrainConfig",
    "PretrainTrainConfig",
    "RDropConfig",
    "RegularizationConfig",
    "RunConfig",
    "SamplingConfig",
    "TaskLossConfig",
    "TrainConfig",
    "describe_fields",
    "dump_yaml",
    "load_config",
    "load_pretrain_config",
    "to_dict",
    "validate",
]
