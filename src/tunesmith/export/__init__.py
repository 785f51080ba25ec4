"""Export trained outputs: merge adapters into plain base weights (`export_model`), combine several
LoRA adapters into one weighted adapter (`combine_adapters`)."""

from tunesmith.export.combine import combine_adapters
from tunesmith.export.merge import export_model

__all__ = ["combine_adapters", "export_model"]
