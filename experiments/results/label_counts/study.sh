#!/usr/bin/env bash
# How the label-count study (this folder) runs across working sessions: the pilot first, the study only on a
# dataset the pilot qualifies. From the repository root:
#
#   bash experiments/results/label_counts/study.sh pilot [DS...]  # the pilot grids, two chains (one per core)
#   bash experiments/results/label_counts/study.sh table          # pilot.md and the pilot's finished cells (pilot/)
#   STUDY_COMMIT=<sha> bash experiments/results/label_counts/study.sh study DS   # the study on dataset DS
#   bash experiments/results/label_counts/study.sh sync           # the study's finished cells and report here
#
# Pilot: scratch and the positive control at 8 and 20 labeled images, and scratch on all labels (the positive
# control's source), seeds 1 and 2, the cpu preset (16,000 poly steps a cell, about an hour on one core). One grid
# per dataset and seed, so that two run at once without sharing a runner state: seed 1 in $PILOT/<dataset>, seed 2
# in $PILOT/<dataset>_seed2; core 1 runs CCP then Kvasir-SEG for seed 1, core 2 the same for seed 2. CCP first: its
# labels look likelier to bind at 8 (README.md); `pilot DS...` runs only those datasets, in that order. Code: the
# pilot worktree at PILOT_COMMIT (bare folder imports, so PYTHONPATH=<worktree> pins it).
# Study: scratch, surrogate, matched control and positive control x the counts x 5 seeds, one pretraining run per
# seed, one grid with --jobs 2 (two cells at once, one core each), from the worktree at STUDY_COMMIT. The package
# name now resolves through an editable install to the main checkout, so the worktree is pinned by a folder of
# links, $PIN/surrogate_supervision/<folder> -> <worktree>/<folder>, put first on PYTHONPATH.
# Every command resumes: finished cells are skipped, an unfinished one continues from its last checkpoint.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../../.." && pwd)
HERE=$REPO/experiments/results/label_counts
DATA=${DATA:-$(cd "$REPO/.." && pwd)/shared/data}
PILOT_COMMIT=76ea7cc                      # the count grid, positive arm and matched control; before the rename
PILOT_WT=${PILOT_WT:-/work/pilot-wt}
PILOT=${PILOT:-/work/pilot}
STUDY_COMMIT=${STUDY_COMMIT:-}            # set when the pilot has qualified a dataset; then written here
STUDY_WT=${STUDY_WT:-/work/study-wt}
PIN=${PIN:-/work/pins/study}
STUDY=${STUDY:-/work/study}
COUNTS=(8 20)                              # the pilot's; the study's drop to fit its budget, counts before seeds
FOLDERS=(datasets models pretrain finetune experiments)

one_thread() { TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 OMP_NUM_THREADS=1 TF_CPP_MIN_LOG_LEVEL=2 "$@"; }

group() {  # DATASET: the grouped view's flag (CCP: background against the person's parts)
  [ "$1" = ccp_human_parsing ] && echo "--group=background:0;person:1-5" || true
}

pilot_grid() {  # DATASET SEED
  local ds=$1 seed=$2 out=$PILOT/$1
  [ "$seed" = 1 ] || out=$PILOT/${1}_seed$seed
  echo "$(date -u) pilot $ds seed $seed, commit $(git -C "$PILOT_WT" rev-parse --short HEAD)" >> "$out.log"
  (cd "$PILOT_WT" && PYTHONPATH=$PILOT_WT one_thread nice -n 19 python experiments/label_efficiency.py \
     --data "$DATA/$ds" --out "$out" --preset cpu --labels "${COUNTS[@]}" --inits scratch positive \
     --seeds "$seed") >> "$out.log" 2>&1
}

running() {  # OUT: refuse to start a second runner on the grids under OUT (they would race for the same cells)
  if pgrep -f "label_efficiency.py .*--out $1" > /dev/null; then
    echo "error: a grid under $1 is already running (pgrep -af label_efficiency.py)" >&2; exit 2
  fi
}

records() {  # SRC DST: a grid's tables and its finished runs' records (no weights, checkpoints, logs, samples or
  # prediction pictures: 400 KB a cell)
  mkdir -p "$2"
  (cd "$1" && {
    find . -maxdepth 1 -type f ! -name "*.tmp*" ! -name "*.log"
    for run in pretrain/*/ segment/*/; do
      [ -f "$run/metrics.json" ] || [ -f "$run/pretrain_metrics.json" ] || continue
      find "$run" -type f ! -path "*/checkpoints/*" ! -path "*/logs/*" ! -path "*/samples/*" \
        ! -name "*.weights.h5" ! -name "*.tmp*" ! -name predictions.png
    done 2>/dev/null
  } | tar -T - -cf -) | tar -C "$2" -xf -
}

case ${1:-} in
  pilot)
    running "$PILOT"
    [ -d "$PILOT_WT" ] || git -C "$REPO" worktree add --detach "$PILOT_WT" "$PILOT_COMMIT"
    mkdir -p "$PILOT"
    shift
    datasets=("$@")
    [ ${#datasets[@]} -gt 0 ] || datasets=(ccp_human_parsing kvasir_seg)  # default: both, CCP first
    for seed in 1 2; do
      (for ds in "${datasets[@]}"; do pilot_grid "$ds" $seed; done) &
    done
    echo "running; progress in $PILOT/<dataset>[_seed2].log" ;;
  table)
    grids=()
    for g in "$PILOT"/*/; do [ -f "$g/results.csv" ] && grids+=("${g%/}"); done
    (cd "$REPO" && TF_CPP_MIN_LOG_LEVEL=2 python experiments/pilot_table.py "${grids[@]}" --out "$HERE/pilot.md")
    for g in "${grids[@]}"; do records "$g" "$HERE/pilot/$(basename "$g")"; done ;;
  study)  # DATASET
    ds=${2:?which dataset (the one pilot.md qualifies)}
    running "$STUDY/$ds"
    [ -n "$STUDY_COMMIT" ] || { echo "error: set STUDY_COMMIT (the commit the study is pinned at)" >&2; exit 2; }
    [ -d "$STUDY_WT" ] || git -C "$REPO" worktree add --detach "$STUDY_WT" "$STUDY_COMMIT"
    [ "$(git -C "$STUDY_WT" rev-parse HEAD)" = "$(git -C "$REPO" rev-parse "$STUDY_COMMIT")" ] || {
      echo "error: $STUDY_WT is not at $STUDY_COMMIT" >&2; exit 2; }
    mkdir -p "$PIN/surrogate_supervision" "$STUDY"
    for f in "${FOLDERS[@]}"; do ln -sfn "$STUDY_WT/$f" "$PIN/surrogate_supervision/$f"; done
    (cd "$STUDY_WT" && PYTHONPATH=$PIN one_thread nice -n 19 python experiments/label_efficiency.py \
       --data "$DATA/$ds" --out "$STUDY/$ds" --preset cpu $(group "$ds") --labels "${COUNTS[@]}" \
       --inits scratch surrogate control positive --seeds 1 2 3 4 5 --jobs 2) >> "$STUDY/$ds.log" 2>&1 &
    echo "running; progress in $STUDY/$ds.log" ;;
  sync)  # the study's finished cells' records and its report, here
    for src in "$STUDY"/*/; do
      [ -f "$src/results.csv" ] || continue
      records "$src" "$HERE/$(basename "$src")"
      (cd "$REPO" && TF_CPP_MIN_LOG_LEVEL=2 python experiments/plot.py "$HERE/$(basename "$src")" > /dev/null)
    done ;;
  *) sed -n '2,20p' "$0"; exit 2 ;;
esac
