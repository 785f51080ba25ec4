"""Models: resolve and load base models (hub id, folder, embedded default), reward models, tiny test
models, and LoRA sets of one base. Loading a finished output with its trained part is `methods.load`."""
