#!/bin/bash
# Round 8 (session 5), on a 4-GPU machine: four branched fer_vgg layouts of the shipped recipe at
# once, one per GPU. The first call starts them; every call waits up to $WAIT s (default 560).
# When all are done: each best checkpoint is scored on PublicTest (flip, ten-crop), and the best
# by flip accuracy comes back in fp16, split into 12 MB parts (cat best.pt.* > best.pt).
# Carry .gpu_all in every call: a call that does not name it removes it on the machine (in
# session 5 the scoring step found no data for that reason, so the best run by its training-time
# PublicTest accuracy, B4, was fetched and scored on a CPU instead).
export FER_CACHE_DIR=/tmp/fercache PYTHONUNBUFFERED=1
D=${D:-.gpu_all/fer.zip}; R=/tmp/r8; WAIT=${WAIT:-560}
declare -A RUNS=(
  [B4]="--branches 4"
  [B6w48]="--branches 6 --width 48"
  [B6w48s1]="--branches 6 --width 48 --shared-stages 1"
  [B8w40s1]="--branches 8 --width 40 --shared-stages 1"
)
if [ ! -d $R ]; then
  mkdir -p $R
  nvidia-smi --query-gpu=name --format=csv,noheader > $R/gpus.txt
  python3 -m fer_core info --data $D > /dev/null 2>&1
  gpu=0
  for n in "${!RUNS[@]}"; do
    CUDA_VISIBLE_DEVICES=$gpu setsid python3 -m fer_core train --data $D --quiet --run-dir $R/$n \
      --recipe shipped ${RUNS[$n]} --half > $R/$n.log 2>&1 &
    gpu=$((gpu + 1))
  done
fi
cat $R/gpus.txt
end=$((SECONDS + WAIT))
done_all() { for n in "${!RUNS[@]}"; do grep -q "^best" $R/$n.log || grep -q "rror" $R/$n.log || return 1; done; }
while [ $SECONDS -lt $end ] && ! done_all; do sleep 5; done
for n in "${!RUNS[@]}"; do echo "$n: $(tail -c 300 $R/$n.log | tail -n 2 | tr '\n' ' ')"; done
(cd $R && tar czf $OUT/runs-r8.tgz */history.json */run.json *.log gpus.txt 2>/dev/null)
done_all || exit 0
best=""; top=0
for n in "${!RUNS[@]}"; do
  [ -f $R/$n/best.pt ] || continue
  for tta in flip crops; do
    [ -f $R/$n.eval_$tta.json ] || python3 -m fer_core evaluate --data $D --split public_test \
      --checkpoint $R/$n/best.pt --tta-mode $tta --json > $R/$n.eval_$tta.json 2>/dev/null
    acc=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['accuracy'])" $R/$n.eval_$tta.json)
    echo "$n $tta $acc"
    if [ $tta = flip ] && python3 -c "import sys; sys.exit(not float(sys.argv[1]) > float(sys.argv[2]))" $acc $top; then
      best=$n; top=$acc
    fi
  done
done
(cd $R && tar czf $OUT/evals-r8.tgz *.eval_*.json)
echo "best: $best $top"
split -b 12M $R/$best/best.pt $OUT/$best.pt.
ls -la $OUT
echo ALL_DONE
