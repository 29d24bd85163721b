"""The label-efficiency grid's presets, as data: the reference recipe and the sizes the grid runs at.

Every value is a flag of experiments/label_efficiency.py (`--preset NAME`); an explicit flag beats the preset.
`finetune_steps` is a cap: a cell stops once validation mean Dice has not improved for `patience` evaluations (every
`eval_every` steps), but never before `min_steps`; where `min_steps` equals the cap (`cpu`), patience never acts.

`paper` is the reference recipe; every value of another preset that differs from it carries a one-line reason.
The history that chose them (the pilots, their measurements, commits and dates) is in
experiments/results/presets_history.md.
"""

# What each preset is for, one line each (`--preset`'s help lists them).
DESCRIPTIONS = {
    "paper": "the reference recipe as written: full-width network, 513 crops, 76,000 + 300,000 steps (GPU-sized)",
    "cpu": "the label-efficiency study on two CPU cores: ~1,000-image datasets, 3 arms x 4 fractions x 5 seeds",
    "demo": "the cpu grid scaled to the built-in 64-px synthetic set: the README's main command, minutes on a laptop",
    "smoke": "the fewest steps that run every stage of the grid: for tests, not for results",
}

# The pretext (colorize.py's colour loss, output, L1 weight λ and GAN weight μ).
REFERENCE_PRETEXT = dict(colour_loss="l1", predict="rgb", l1_weight=1.0, gan_weight=1.0)
# At CPU scale: the only pretext whose frozen body beat a random one on the downstream probe
# (experiments/results/pretext.md).
CPU_PRETEXT = dict(
    colour_loss="classify",  # colour classification: its frozen body beat a random one on the probe (pretext.md)
    predict="chroma",  # classification predicts chroma bins, the gray input supplies the luma
    l1_weight=1.0,
    gan_weight=0.0,  # no GAN term: without it the classify pretext did best on the probe (pretext.md)
)

PRESETS = {
    "paper": dict(crop=513, width=1.0, batch=4, pretrain_steps=76_000, finetune_steps=300_000, lr=1e-4,
                  pretrain_lr=2e-4, eval_every=5000, checkpoint_every=5000, sample_every=5000, patience=10,
                  min_delta=0.0, min_steps=0, seeds=[1, 2, 3], pretrain_seeds=3, loss="ce", lr_schedule="constant",
                  fracs=[0.1, 0.25, 0.5, 1.0], jobs=1, **REFERENCE_PRETEXT),
    "cpu": dict(
        crop=129,  # the crop the pretexts were compared at (pretext.md)
        width=0.25,  # a quarter-width network: the width the pretexts were compared at, trainable on one core
        batch=4,
        pretrain_steps=5000,  # within the grid's budget; the pretext learns skin and hair colour by then (pretext.md)
        finetune_steps=16_000,  # 8,000 under-trained every label fraction; doubling it raised both ends of the range
        lr=1e-3,  # a short schedule: at 1e-4 pilot cells stayed on the all-background plateau (loss_pilot.md)
        pretrain_lr=2e-4,
        eval_every=500,  # half the validations of 250: the poly schedule's best checkpoint falls in its last steps
        checkpoint_every=500,  # with every evaluation, so a cell's best validation checkpoint is on disk
        sample_every=1000,  # five colour sample grids per pretraining run, to look at
        patience=6,  # acts only where --min-steps is lowered: one noisy evaluation does not stop a cell
        min_delta=0.005,  # where patience acts: one noisy evaluation does not prolong a cell either
        min_steps=16_000,  # = the cap: every cell runs the poly schedule out (patience stopped cells before its gains)
        seeds=[1, 2, 3, 4, 5],  # five fine-tuning seeds: the intervals redraw seeds as well as test images
        pretrain_seeds=5,  # one pretraining run per seed: the interval over seeds is also one over pretraining runs
        loss="ce+dice",  # CE alone sat on Kvasir-SEG's all-background plateau; CE + Dice leaves it (loss_pilot.md)
        lr_schedule="poly",  # DeepLab's decay to 0: at a constant rate cells still climbed or wandered at the cap
        fracs=[0.1, 0.25, 0.5, 1.0],
        jobs=1,  # the study pins one grid per core itself (experiments/results/label_efficiency_study.sh)
        **CPU_PRETEXT,
    ),
    "demo": dict(
        crop=65,  # the whole 64-px scene in one crop: twice the steps per second of 129 on 128-px scenes (demo.md)
        width=0.25,  # as the cpu preset
        batch=4,
        pretrain_steps=400,  # two short pretraining runs: a demonstration of the machinery, not a result
        finetune_steps=1500,  # a cap well above where the cells stop on their own (demo.md)
        lr=1e-3,  # as the cpu preset: a short schedule from scratch
        pretrain_lr=2e-4,
        eval_every=50,  # often enough for patience to stop a cell well inside the cap
        checkpoint_every=50,  # with every evaluation, so a cell's best validation checkpoint is on disk
        sample_every=200,  # two colour sample grids per pretraining run
        patience=3,  # with min_delta: stop once 3 evaluations have added no real gain (demo.md)
        min_delta=0.01,  # the synthetic scenes reward training by ever smaller gains: they must not keep a cell going
        min_steps=0,
        seeds=[1],  # one seed: a demonstration, not a result
        pretrain_seeds=1,  # one seed, one pretraining run
        loss="ce",
        lr_schedule="constant",
        fracs=[0.1, 0.25, 1.0],  # three points of the curve: 9 cells, a grid inside 15 minutes on two cores (demo.md)
        jobs=2,  # two one-thread runs at once overlap each run's serial start-up and small ops (demo.md)
        **CPU_PRETEXT,  # the cpu preset's pretext, so the demo's surrogate arm is the study's
    ),
    "smoke": dict(
        crop=65,  # as the demo: small, so every stage runs in seconds
        width=0.125,  # the narrowest network: every stage runs, in seconds
        batch=2,  # half the reference's batch: seconds, not results
        pretrain_steps=4,  # just enough to checkpoint and sample twice
        finetune_steps=4,  # just enough to checkpoint and evaluate twice
        lr=1e-4,
        pretrain_lr=2e-4,
        eval_every=2,  # two evaluations a cell, so patience and the best checkpoint are exercised
        checkpoint_every=2,  # with every evaluation
        sample_every=2,  # sample grids are written too
        patience=1,  # the stopping rule can act within 4 steps
        min_delta=0.0,
        min_steps=0,
        seeds=[1],  # one seed: a check that the grid runs, not a result
        pretrain_seeds=1,  # one pretraining run per arm
        loss="ce",
        lr_schedule="constant",
        fracs=[0.1, 0.25, 0.5, 1.0],
        jobs=1,
        **REFERENCE_PRETEXT,
    ),
}
