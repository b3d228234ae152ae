"""Networks: CIPA with 2.5D input and slice modules, its building blocks, and the registry of variants."""

from igtv.models.cipa import CIPA, CIPAConfig, normalize_png
from igtv.models.registry import create_model, list_models, model_config, register_model

__all__ = ["CIPA", "CIPAConfig", "create_model", "list_models", "model_config", "normalize_png", "register_model"]
