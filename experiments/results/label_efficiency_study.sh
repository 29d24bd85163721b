#!/usr/bin/env bash
# How the label-efficiency study (ccp_human_parsing/ and kvasir_seg/ here) is run across working sessions whose
# machines do not keep their files: only what is committed survives. From the repository root:
#
#   bash experiments/results/label_efficiency_study.sh setup        # worktree at the pinned commit; restore results
#   bash experiments/results/label_efficiency_study.sh queue [DS..]  # the grid, one dataset per core, in the background
#   bash experiments/results/label_efficiency_study.sh longer FRAC STEPS [DS..]  # a schedule check per dataset
#   bash experiments/results/label_efficiency_study.sh sync         # finished cells back here, reports and READMEs' tables redrawn
#
# DS (dataset names) defaults to both; the n-th dataset named runs on core FIRST_CORE + n (FIRST_CORE=0 unless set).
# Each dataset's grid is experiments/label_efficiency.py (cpu preset) run in parts, one arm and seed at a time
# (`--inits surrogate --seeds 1`: that seed's pretraining run and its 4 cells, about 2.5 hours on one core), in the
# order seed 1..5 x (scratch, surrogate, control). Finished cells are skipped, so `queue` on a new machine continues
# where the committed results end; a part cut off by the end of a session pretrains its run again, and report.md
# then names the two weights files its cells started from.
# Schedule checks: the scratch FRAC seed-1 cell of the cpu preset with STEPS poly steps instead of the preset's,
# nothing else changed, into <dataset>/longer_schedule/, which sync copies beside the grid; a finished check is not
# run again. The 8,000-step grid's checks (schedule_8000/) moved the preset to 16,000; whether 16,000 is enough is
# the 10 % cell at 24,000 (`longer 0.1 24000 ccp_human_parsing`: of the checks, CCP's 10 % cell gained the most;
# 32,000 steps take 2.6 hours on a Zen 1 EPYC, more than a session has). Done 2026-12-04: +0.008, the preset stays.
set -euo pipefail
COMMIT=${COMMIT:-0458c16}                    # the pinned code (the 16,000-step grid; schedule_8000/ ran at e004420, b82724b)
WORKTREE=${WORKTREE:-/work/grid17e}          # its checkout, beside this one
RUNS=${RUNS:-/work/runs/grid17e}             # run directories with checkpoints and weights (never committed)
DATASETS=(ccp_human_parsing kvasir_seg)
FIRST_CORE=${FIRST_CORE:-0}
REPO=$(cd "$(dirname "$0")/../.." && pwd)
RESULTS=$REPO/experiments/results

part() {  # CORE DATASET INIT SEED: one part on one core, one thread, code from the pinned worktree
  local core=$1 ds=$2 init=$3 seed=$4 group=()
  [ "$ds" = ccp_human_parsing ] && group=(--group "background:0;person:1-5")
  echo "$(date -u) $ds: $init seed $seed on core $core, commit $(git -C "$WORKTREE" rev-parse --short HEAD)"
  (cd "$WORKTREE" && PYTHONPATH=$WORKTREE TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 OMP_NUM_THREADS=1 \
     TF_CPP_MIN_LOG_LEVEL=2 taskset -c "$core" python experiments/label_efficiency.py \
     --data "../shared/data/$ds" --out "$RUNS/$ds" "${group[@]}" --inits "$init" --seeds "$seed")
}

longer() {  # CORE DATASET FRAC STEPS: the scratch FRAC seed-1 cell of the cpu preset with STEPS poly steps
  local core=$1 ds=$2 frac=$3 steps=$4 group=()
  local out=$RUNS/$2/longer_schedule/scratch_frac$(python -c "print(f'{float(\"$frac\"):g}')")_seed1_steps$steps
  [ "$ds" = ccp_human_parsing ] && group=(--group "background:0;person:1-5")
  [ -f "$out/metrics.json" ] && return 0
  echo "$(date -u) $ds: schedule check (frac $frac, $steps steps) on core $core, commit $(git -C "$WORKTREE" rev-parse --short HEAD)"
  (cd "$WORKTREE" && PYTHONPATH=$WORKTREE TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 OMP_NUM_THREADS=1 \
     TF_CPP_MIN_LOG_LEVEL=2 taskset -c "$core" python finetune/segment.py --out "$out" --data "../shared/data/$ds" \
     "${group[@]}" --init scratch --frac "$frac" --seed 1 --steps "$steps" --min-steps "$steps" --lr 0.001 \
     --lr-schedule poly --eval-every 500 --checkpoint-every 500 --patience 6 --min-delta 0.005 --loss ce+dice \
     --crop 129 --width 0.25 --batch 4 --backbone resnet50)
}

case ${1:-} in
  setup)
    [ -d "$WORKTREE" ] || git -C "$REPO" worktree add --detach "$WORKTREE" "$COMMIT"
    for ds in "${DATASETS[@]}"; do
      mkdir -p "$RUNS/$ds"
      [ -f "$RUNS/$ds/runner_state.json" ] || tar -C "$RESULTS/$ds" --exclude=./schedule_8000 -cf - . | tar -C "$RUNS/$ds" -xf -
    done ;;
  queue)  # [DS ...]
    shift; core=$FIRST_CORE; [ $# -gt 0 ] || set -- "${DATASETS[@]}"
    for ds in "$@"; do
      (for seed in 1 2 3 4 5; do
         for init in scratch surrogate control; do part $core "$ds" $init $seed; done
       done) >> "$RUNS/$ds.out" 2>&1 &
      core=$((core + 1))
    done
    echo "running; progress in $RUNS/<dataset>.out" ;;
  longer)  # FRAC STEPS [DS ...]
    frac=$2 steps=$3; shift 3; core=$FIRST_CORE; [ $# -gt 0 ] || set -- "${DATASETS[@]}"
    for ds in "$@"; do
      longer $core "$ds" "$frac" "$steps" >> "$RUNS/$ds.longer.out" 2>&1 &
      core=$((core + 1))
    done
    echo "running; progress in $RUNS/<dataset>.longer.out" ;;
  sync)
    for ds in "${DATASETS[@]}"; do
      src=$RUNS/$ds dst=$RESULTS/$ds
      [ -f "$src/runner_state.json" ] || continue
      # top-level tables, FINISHED pretraining runs without checkpoints, logs or weights (and only their last sample, the
      # one report.md shows), and FINISHED cells only: an unfinished one would bring a best.json without its
      # weights. Test predictions only for the 10 % cells, which report.md shows.
      (cd "$src" && {
        find . -maxdepth 1 -type f ! -name "*.tmp*" ! -name README.md
        for run in pretrain/*/; do  # finished runs only (none before a seed's first one: scratch comes first)
          [ -f "$run/pretrain_metrics.json" ] || continue
          find "$run" -type f ! -path "*/checkpoints/*" ! -path "*/logs/*" ! -path "*/samples/*" \
            ! -name "*.weights.h5" ! -name "*.tmp*"
          ls "$run"samples/*.png | sort | tail -n 1 || true
        done 2>/dev/null
        for cell in segment/*/ longer_schedule/*/; do
          [ -f "$cell/metrics.json" ] || continue
          find "$cell" -type f ! -path "*/checkpoints/*" ! -path "*/logs/*" ! -name "*.weights.h5" ! -name "*.tmp*" \
            \( ! -name predictions.png -o -path "*_frac0.1_seed*" \)
        done 2>/dev/null
      } | tar -T - -cf -) | tar -C "$dst" -xf -
      # the table again from the copied cells (the pinned runner counts a cell whose outputs were removed as done)
      (cd "$REPO" && python -c "import sys; from surrogate_supervision.experiments.records import collect_results, read_runner_state as s
collect_results(sys.argv[1], [], s(sys.argv[1]))" "$dst")
      (cd "$REPO" && TF_CPP_MIN_LOG_LEVEL=2 python experiments/plot.py "$dst" > /dev/null 2>&1)
      python - "$dst" <<'PY'
import csv, re, sys
from collections import defaultdict
from datetime import date
from pathlib import Path
dst = Path(sys.argv[1])
done = defaultdict(list)
for row in csv.DictReader(open(dst / "results.csv")):
    if row["status"] == "done":
        done[(int(row["seed"]), row["init"])].append(f"{100 * float(row['frac']):g} %")
listing = "; ".join(f"{init} seed {seed}: {', '.join(fracs)}" for (seed, init), fracs in sorted(done.items()))
status = f"**Status: {sum(map(len, done.values()))} of 60 cells finished** ({listing or 'none yet'})."
readme = dst / "README.md"
text = re.sub(r"\*\*Status: .*?\)\.", lambda _: status, readme.read_text(), count=1, flags=re.S)
# the README's current tables (between its `<!-- current -->` markers) copied from report.md, never typed
report = (dst / "report.md").read_text()
def all_classes_table(section):  # the "mean Dice, all classes" table of one section of report.md
    part = report.split(section, 1)[1].split("\n## ", 1)[0].split("### mean Dice, all classes", 1)[1]
    return "\n".join(line for line in part.split("\n### ", 1)[0].splitlines() if line.startswith("|"))
if "## Mean Dice per arm" in report and "## Paired differences (95" in report:
    code = re.search(r"Code: commit (\w+)", report)[1]
    cpu = re.sub(r" \(\d+ cells?: [^)]*\)", "", re.search(r"CPUs?: (.*?)(?: \(from each.*?\))?\. Platform of this report", report)[1])
    current = (f"Synced {date.today()} from `report.md` (code {code}; {cpu}). Mean Dice over all classes, "
               "each arm's mean over its seeds [95 % interval] (seeds):\n\n" + all_classes_table("## Mean Dice per arm")
               + "\n\nPaired differences, matched by seed and test image [95 % interval]:\n\n"
               + all_classes_table("## Paired differences (95"))
    text = re.sub(r"(<!-- current -->\n).*?(<!-- /current -->)", lambda m: m[1] + current + "\n" + m[2], text,
                  flags=re.S)
readme.write_text(text)
print(dst.name, status)
PY
    done ;;
  *) sed -n '2,22p' "$0"; exit 2 ;;
esac
