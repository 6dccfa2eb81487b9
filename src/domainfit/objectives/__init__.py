"""Training objectives: ``nn.Module``s returning ``{"loss": ..., <named parts>}``, chosen by registered name."""

from domainfit.objectives import binary_cross_entropy as _binary_cross_entropy  # noqa: F401
from domainfit.objectives import causal_lm as _causal_lm  # noqa: F401

# Import for registration side effects.
from domainfit.objectives import classification as _classification  # noqa: F401
from domainfit.objectives import fedprox as _fedprox  # noqa: F401
from domainfit.objectives import focal as _focal  # noqa: F401
from domainfit.objectives import joint_mlm as _joint_mlm  # noqa: F401
from domainfit.objectives import rdrop as _rdrop  # noqa: F401
from domainfit.objectives import token_classification as _token_classification  # noqa: F401
from domainfit.objectives.base import OBJECTIVES, Objective, create_objective

__all__ = ["OBJECTIVES", "Objective", "create_objective"]
