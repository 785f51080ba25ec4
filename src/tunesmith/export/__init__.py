"""Export trained outputs: merge adapters into plain base weights (`export_model`)."""

from tunesmith.export.merge import export_model

__all__ = ["export_model"]
