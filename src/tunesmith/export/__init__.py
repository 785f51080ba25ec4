"""Export trained outputs: a transformers folder, a GGUF file or an ONNX decoder with its KV cache
(`export_model` in export.run; the formats are the records of export.formats, checked after export
in the artifact's runtime), and combine several LoRA adapters into one weighted adapter
(`combine_adapters`). Registered versions of exports live in `tunesmith.model_registry`.

The two entry points are imported on first use, so reading the format records (the command line's
choices) loads no model library."""

__all__ = ["combine_adapters", "export_model"]


def __getattr__(name: str):
    if name == "export_model":
        from tunesmith.export.run import export_model

        return export_model
    if name == "combine_adapters":
        from tunesmith.export.combine import combine_adapters

        return combine_adapters
    raise AttributeError(f"module 'tunesmith.export' has no attribute {name!r}")
