"""Training stages: one readable recipe each (setup -> train -> save), chosen by `stage:`.

Each stage module declares a `Stage` record (`stages.base`): its name, the data it reads and the
data options it supports, its pre-flight `check`, its Trainer `arguments`, its `run` and its own
`evaluate`. `stages.registry` lists them; code outside this package asks the record and never
branches on a stage name. A stage never branches on the method, and no stage imports another:
what two recipes share lives in `stages.lifecycle`, `stages.token_recipe`, `stages.held_out` or a
layer down (data/, runtime/, eval/).

Stages: pt, sft, rm, dpo (with ipo/orpo/simpo), kto, grpo, ppo, mtl (multi-task).
"""
