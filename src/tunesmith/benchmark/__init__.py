"""`tunesmith bench`: one SFT job run two ways on the same machine, tunesmith vs a plain baseline.

    tunesmith bench                                   # 2,000 rows, the first 20 steps of 1,024 tokens
    tunesmith bench --rows 64 --val-rows 16           # the reduced size CI runs
    python bench/sft_speed.py --append docs/benchmarks.md

The job: the embedded default model (or --model), a synthetic instruction set with a realistic
length spread (log-uniform 30-600 tokens; copy, reverse and sort tasks over common words, so the
loss has something to learn), LoRA r=16 / alpha 32 / dropout 0.05 on all linear layers, the same
learning rate, schedule, epochs and the same number of real tokens per optimiser step.

Variants, each in its own process (so peak memory is its own):
  baseline   what a user writes from the transformers + PEFT docs: `apply_chat_template`, prompt
             tokens masked, `DataCollatorForSeq2Seq` padding, `Trainer`, fp32, random batches of
             `tokens_per_step / mean row length` rows.
  tunesmith  `tunesmith train` with its defaults (bf16 autocast where the CPU/GPU has it,
             length-grouped batches, cached tokenisation), same batch size in rows.
  packed     tunesmith with `data.packing: true`: packs of `--pack-length` tokens, as many per
             step as make the same tokens per step.
  compiled   (only when asked: --variants ...,compiled) tunesmith's defaults with
             `training.compile: true` (torch.compile, inductor); compile time counts in its speed.

Figures: tokens/s (real tokens, not padding, over the Trainer's own train_runtime), seconds per
epoch, peak memory (RSS high-water mark on CPU, max allocated on GPU), the final validation loss
(one shared evaluator: token-weighted assistant-token loss of the same held-out rows, fp32), and
each variant's ratio to the baseline, and generation speed (greedy tokens/s, one prompt at a time:
the baseline's PEFT model as trained, tunesmith's output loaded as `tunesmith chat` loads it, with
the adapter merged). On a GPU it adds model-FLOPs utilisation.

The package, by concern (only `args` is imported when the CLI builds its parser):
  args.py      the command-line options and the variant names; imports nothing heavy
  jobs.py      the synthetic rows, the job files and the job's token facts
  measure.py   what every variant measures the same way: validation loss, generation speed
  baseline.py  the plain transformers + PEFT trainer
  variants.py  the tunesmith variants (defaults, packed, compiled) through `tunesmith train`'s stage
  driver.py    one process per variant, the summary, the table and the markdown; `main`
  flops.py     model FLOPs per token, GPU peak FLOPs, MFU
  machine.py   one line describing the machine and library versions
"""
