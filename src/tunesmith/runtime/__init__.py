"""Runtime: output folders, metrics logging, loss plots, and (later) checkpoints and launch."""
