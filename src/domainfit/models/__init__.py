"""Model resolution and loading (hub id, local folder, or a packaged built-in)."""

from domainfit.models.loading import BUILTIN_MODELS, load_tokenizer, resolve_model_path

__all__ = ["BUILTIN_MODELS", "load_tokenizer", "resolve_model_path"]
