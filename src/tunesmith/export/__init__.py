"""Export trained outputs: a transformers folder, a GGUF file or an ONNX decoder with its KV cache
(`export_model`, checked after export in the artifact's runtime), combine several LoRA adapters
into one weighted adapter (`combine_adapters`). Registered versions of exports live in
`tunesmith.model_registry`."""

from tunesmith.export.combine import combine_adapters
from tunesmith.export.merge import export_model

__all__ = ["combine_adapters", "export_model"]
