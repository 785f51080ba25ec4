"""Models: resolve and load base models (hub id, folder, embedded default) and trained outputs."""
