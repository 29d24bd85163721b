"""The speed lab: how fast the toolkit trains, reads data and predicts, and why, apart from the study.

The label-efficiency study (the rest of `experiments/`) asks how well colorization pretraining helps with few
labels; nothing here touches its results. This subpackage measures time, memory and arithmetic instead: our
training step against the PyTorch peer (segmentation_models_pytorch's DeepLabV3+ ResNet50), the input pipeline,
inference latency, streaming a huge unlabeled folder, and where a step's time goes down to oneDNN's kernels, so
that a change meant to make training faster can be checked and a slow CPU kind explained. The scripts, run from
the repository root:

    python experiments/speed/benchmark.py train-step | data | peer | roofline | predict | scale | profile
        # JSON on stdout, a table on stderr; each command's --help lists its flags
    python experiments/speed/ab_step.py atrous,bias,bf16      # variants of the training step, A/B in one process
    python experiments/speed/onednn_kernels.py --framework ours|peer --isa AVX2   # oneDNN kernel time by kind
    python experiments/speed/conv_grad_kernels.py             # the backbone's convolution gradients, other ways

and the library modules they share: `train_step` (one compiled training step on random data, as the scripts
build it) and `flops` (a traced step's FLOPs and the machine's matrix-multiply rate; `benchmark.py roofline`).
How to read the figures: docs/speed.md; what was measured, per CPU kind: experiments/results/benchmarks.md.
"""
