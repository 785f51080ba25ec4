"""`tunesmith bench`: one SFT job run several ways on the same machine, tunesmith vs a plain baseline.

    tunesmith bench                                   # 2,000 rows, the first 20 steps of 1,024 tokens
    tunesmith bench --precision fp32 --variants baseline,tunesmith,checkpointing
    tunesmith bench --model TINY_DIR --rows 16 --val-rows 4   # the reduced size the tests run
    python bench/sft_speed.py --append docs/benchmarks.md

The job: the embedded default model (or --model), a synthetic instruction set with a realistic
length spread (log-uniform 30-600 tokens; copy, reverse and sort tasks over common words, so the
loss has something to learn), LoRA r=16 / alpha 32 / dropout 0.05 on all linear layers, the same
learning rate, schedule, epochs and the same number of real tokens per optimiser step.

Variants, each in its own process (so peak memory is its own):
  baseline   what a user writes from the transformers + PEFT docs: `apply_chat_template`, prompt
             tokens masked, `DataCollatorForSeq2Seq` padding, `Trainer`, fp32 weights, random
             batches of `tokens_per_step / mean row length` rows; fp32 or the Trainer's bf16 autocast.
  tunesmith  `tunesmith train` with its defaults (bf16 autocast where the CPU/GPU has it,
             length-grouped batches, cached tokenisation), same batch size in rows.
  packed     tunesmith with `data.packing: true`: packs of `--pack-length` tokens, as many per
             step as make the same tokens per step.
  compiled   (only when asked) tunesmith's defaults with `training.compile: true` (torch.compile,
             inductor); compile time counts in its speed.
  checkpointing  (only when asked) tunesmith's defaults with `training.gradient_checkpointing: true`.

Precision (`--precision auto|fp32|bf16`): every row states the precision it ran, and is compared
with the baseline row of the same precision; with auto the baseline runs fp32 and, where tunesmith
picks bf16, bf16 too (report.plan_rows).

Figures: tokens/s (the real tokens, not padding, counted in the batches each side trained, over the
Trainer's own train_runtime; computed tokens/s with the padding), seconds per epoch, peak memory
(runtime.peak_memory: RSS high-water mark reset at the start on CPU, max allocated on GPU), the
final validation loss (one shared evaluator: token-weighted assistant-token loss of the same
held-out rows, fp32), each row's ratios to its baseline, and generation speed (greedy tokens/s,
one prompt at a time, both sides with the adapter merged into the base). On a GPU it adds
model-FLOPs utilisation. The report names the machine: CPU model and bf16 support or GPU, versions.

The package, by concern (only `args` is imported when the CLI builds its parser):
  args.py      the command-line options and the variant names; imports nothing heavy
  jobs.py      the synthetic rows, the job files and the job's token facts
  measure.py   what every variant measures the same way: validation loss, generation speed
  baseline.py  the plain transformers + PEFT trainer
  variants.py  the tunesmith variants (defaults, packed, compiled) through `tunesmith train`'s stage
  tokens.py    the TrainerCallback that counts the tokens of every training batch (both sides)
  report.py    the rows to run, each row against its baseline, the table and the markdown
  driver.py    one process per row, the whole benchmark; `main`
  flops.py     model FLOPs per token, GPU peak FLOPs, MFU
  machine.py   the machine: CPU model and bf16 support, GPU, library versions, one-line label
"""
