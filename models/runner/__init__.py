"""The run plumbing every script shares: flags and config.json (`cli`), accelerator options (`runtime`), the
training loop and its checkpoints (`training`), trained runs loaded back (`runs`) and pictures (`visualize`).

Above `models/` and `datasets/`, below the scripts in pretrain/, finetune/ and experiments/.
"""

from surrogate_supervision.models import cpu  # noqa: F401  (first: settings TensorFlow reads when it loads)
