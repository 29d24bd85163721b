#!/usr/bin/env bash
# The pretext comparison of experiments/results/pretext.md, one run after another on 2 CPU cores.
# Re-running resumes each run from its last checkpoint (finished runs exit at once).
#   STEPS=2000 bash experiments/results/pretext/run_all.sh      (from the repository root)
set -u
STEPS=${STEPS:-2000}
DATA=${DATA:-../shared/data/ccp_human_parsing}
NAME=${NAME:-ccp}
OUT=experiments/results/pretext
COMMON=(--data "$DATA" --width 0.25 --crop 129 --batch 4 --steps "$STEPS" --checkpoint-every 250
        --sample-every 500 --probe-data "$DATA" --probe-every 250)
declare -A VARIANTS=(
  [classify_gan]="--colour-loss classify --gan-weight 1"
  [chroma_l1w1000_gan]="--predict chroma --l1-weight 1000 --gan-weight 1"
  [reference_gan]="--predict rgb --l1-weight 1 --gan-weight 1"
  [classify_nogan]="--colour-loss classify --gan-weight 0"
  [chroma_l1w1000_nogan]="--predict chroma --l1-weight 1000 --gan-weight 0"
  [reference_nogan]="--predict rgb --l1-weight 1 --gan-weight 0"
)
ORDER=${ORDER:-classify_gan chroma_l1w1000_gan reference_gan classify_nogan chroma_l1w1000_nogan reference_nogan}
for name in $ORDER; do
  echo "=== $NAME $name $(date -u +%FT%TZ)"
  # shellcheck disable=SC2086
  python pretrain/colorize.py "${COMMON[@]}" ${VARIANTS[$name]} --out "$OUT/${NAME}_$name"
  python pretrain/evaluate.py "$OUT/${NAME}_$name"
done
echo "=== done $(date -u +%FT%TZ)"
