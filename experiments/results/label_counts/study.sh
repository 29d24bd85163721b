#!/usr/bin/env bash
# How the label-count study (this folder) runs across working sessions: the pilot first, the study only on a
# dataset the pilot qualifies. From the repository root:
#
#   bash experiments/results/label_counts/study.sh pilot [DS...]  # the pilot grids, two chains (one per core)
#   bash experiments/results/label_counts/study.sh table          # pilot.md, and the pilot's records in pilot/<DS>
#   bash experiments/results/label_counts/study.sh study DS       # the study on dataset DS, two chains
#   bash experiments/results/label_counts/study.sh sync [DS...]   # the study's records and report in <DS>/
#
# One commit for both: CODE_COMMIT (the count grid, the positive arm and the matched control), checked out in its own
# worktree (bare folder imports: PYTHONPATH=<worktree> pins it). The study is the pilot continued, so the pilot's
# finished cells are the study's cells of the same arm, count and seed, from the same code, preset and data.
#
# Pilot: scratch and the positive control at 8 and 20 labeled images, and scratch on all labels (the positive
# control's source), seeds 1 and 2, the cpu preset (16,000 poly steps a cell, about an hour on one AVX2 core, 20
# minutes on an AVX-512 one). One grid per dataset and seed, so that two run at once without sharing a runner state:
# seed 1 in $PILOT/<dataset>, seed 2 in $PILOT/<dataset>_seed2; core 1 runs seed 1, core 2 seed 2, dataset after
# dataset (default: CCP, then Kvasir-SEG).
# Study: scratch, surrogate, matched control and positive control x the counts x seeds 1-5, one pretraining run per
# seed. Run in parts, each its own grid (two runners must not share one): per seed, the anchor part (scratch and
# the positive control; for seeds 1 and 2 the pilot's grids) and the pretext part (surrogate and matched control,
# with their two pretraining runs), each about five hours of one AVX2 core. Two chains take the parts in order
# from a queue, so both cores stay busy; `sync` pools the parts (experiments/pool.py) into one grid folder here.
# Every command resumes: finished cells are skipped, an unfinished one continues from its last checkpoint.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../../.." && pwd)
HERE=$REPO/experiments/results/label_counts
DATA=${DATA:-$(cd "$REPO/.." && pwd)/shared/data}
CODE_COMMIT=76ea7cc                       # the count grid, positive arm and matched control; before the rename
WORKTREE=${WORKTREE:-/work/pilot-wt}
PILOT=${PILOT:-/work/pilot}
STUDY=${STUDY:-/work/study}
COUNTS=(8 20)                              # drop counts before seeds if the budget does not fit
ANCHOR=(scratch positive)
PRETEXT=(surrogate control)
# The study's parts in the order the chains take them: the pilot's grids first (done once the pilot is, then they
# finish at once), their seeds' pretext parts (completing seeds 1 and 2), then seed by seed.
PARTS=(1:anchor 2:anchor 1:pretext 2:pretext 3:anchor 3:pretext 4:anchor 4:pretext 5:anchor 5:pretext)

one_thread() { TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 OMP_NUM_THREADS=1 TF_CPP_MIN_LOG_LEVEL=2 "$@"; }

worktree() { [ -d "$WORKTREE" ] || git -C "$REPO" worktree add --detach "$WORKTREE" "$CODE_COMMIT"; }

grid() {  # OUT DATASET SEED INIT...: one grid at the pinned commit, on one core (one thread), niced
  local out=$1 ds=$2 seed=$3; shift 3
  mkdir -p "$(dirname "$out")"
  echo "$(date -u) $ds seed $seed, inits $*, commit $(git -C "$WORKTREE" rev-parse --short HEAD)" >> "$out.log"
  (cd "$WORKTREE" && PYTHONPATH=$WORKTREE one_thread nice -n 19 python experiments/label_efficiency.py \
     --data "$DATA/$ds" --out "$out" --preset cpu --labels "${COUNTS[@]}" --inits "$@" --seeds "$seed") \
     >> "$out.log" 2>&1
}

pilot_grid() {  # DATASET SEED: the pilot's grid of one seed (the study's anchor part of seeds 1 and 2)
  if [ "$2" = 1 ]; then echo "$PILOT/$1"; else echo "$PILOT/${1}_seed$2"; fi
}

part_grid() {  # DATASET SEED KIND
  if [ "$3" = anchor ] && [ "$2" -le 2 ]; then pilot_grid "$1" "$2"; else echo "$STUDY/$1/seed$2_$3"; fi
}

running() {  # OUT: refuse to start a second runner on the grids under OUT (they would race for the same cells)
  if pgrep -f "label_efficiency.py .*--out $1" > /dev/null; then
    echo "error: a grid under $1 is already running (pgrep -af label_efficiency.py)" >&2; exit 2
  fi
}

pool() {  # OUT GRID...: the grids' finished runs' records, pooled into OUT with their table and report
  local out=${1#"$REPO"/}; shift  # relative to the repository: the report names it
  (cd "$REPO" && TF_CPP_MIN_LOG_LEVEL=2 python experiments/pool.py "$@" --out "$out")
}

case ${1:-} in
  pilot)  # [DS...]
    running "$PILOT"
    worktree
    mkdir -p "$PILOT"
    shift
    datasets=("$@")
    [ ${#datasets[@]} -gt 0 ] || datasets=(ccp_human_parsing kvasir_seg)  # default: both, CCP first
    for seed in 1 2; do
      (for ds in "${datasets[@]}"; do grid "$(pilot_grid "$ds" $seed)" "$ds" $seed "${ANCHOR[@]}"; done) &
    done
    echo "running; progress in $PILOT/<dataset>[_seed2].log" ;;
  table)  # pilot.md from the pilot's grids (their TensorBoard logs give the schedule columns); records in pilot/<DS>
    grids=()
    for g in "$PILOT"/*/; do [ -f "$g/results.csv" ] && grids+=("${g%/}"); done
    (cd "$REPO" && TF_CPP_MIN_LOG_LEVEL=2 python experiments/pilot_table.py "${grids[@]}" --out "$HERE/pilot.md")
    for ds in $(printf '%s\n' "${grids[@]##*/}" | sed 's/_seed[0-9]*$//' | sort -u); do
      parts=()
      for g in "${grids[@]}"; do [[ ${g##*/} =~ ^${ds}(_seed[0-9]+)?$ ]] && parts+=("$g"); done
      pool "$HERE/pilot/$ds" "${parts[@]}" > /dev/null
    done ;;
  study)  # DATASET: two chains take the parts from the queue; a part in progress in the other chain is skipped
    ds=${2:?which dataset (the one pilot.md qualifies)}
    running "$PILOT/$ds"
    running "$STUDY/$ds"
    worktree
    mkdir -p "$STUDY/$ds"
    rm -rf "$STUDY/$ds/claims" && mkdir "$STUDY/$ds/claims"  # claims of this start only (no runner is left)
    for chain in 1 2; do
      (for part in "${PARTS[@]}"; do
         seed=${part%:*} kind=${part#*:}
         mkdir "$STUDY/$ds/claims/$part" 2> /dev/null || continue  # the other chain has it
         if [ "$kind" = anchor ]; then inits=("${ANCHOR[@]}"); else inits=("${PRETEXT[@]}"); fi
         out=$(part_grid "$ds" "$seed" "$kind")
         grid "$out" "$ds" "$seed" "${inits[@]}" || echo "$(date -u) chain $chain: $part failed" >> "$STUDY/$ds.log"
       done) &
    done
    echo "running; progress in $STUDY/$ds/seed<N>_<part>.log" ;;
  sync)  # [DS...]: every part of the study of DS (the pilot's grids included), pooled into <DS>/ here
    shift
    datasets=("$@")
    if [ ${#datasets[@]} -eq 0 ]; then for d in "$STUDY"/*/; do [ -d "$d" ] && datasets+=("$(basename "$d")"); done; fi
    for ds in "${datasets[@]}"; do
      parts=()
      for seed in 1 2 3 4 5; do
        for kind in anchor pretext; do
          g=$(part_grid "$ds" $seed $kind)
          [ -f "$g/runner_state.json" ] && parts+=("$g")
        done
      done
      [ ${#parts[@]} -gt 0 ] && pool "$HERE/$ds" "${parts[@]}"
    done ;;
  *) sed -n '2,23p' "$0"; exit 2 ;;
esac
