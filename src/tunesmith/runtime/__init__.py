"""Runtime: Trainer arguments and precision policy, output folders, checkpoints and resume, signals,
the NaN policy, metrics logging and plots, the run manifest, launch (DDP/FSDP/DeepSpeed), hooks."""
