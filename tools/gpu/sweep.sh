#!/bin/bash
# Sweep: candidate recipes concurrently on one GPU; PublicTest is the selection split.
export FER_CACHE_DIR=/tmp/fercache PYTHONUNBUFFERED=1
D=.gpu/fer.zip; EP=${EP:-50}; BUDGET=${BUDGET:-545}
python3 -m fer_core info --data $D >/dev/null 2>&1   # warm the cache once
run() { name=$1; shift; rm -rf /tmp/sweep/$name
  timeout $BUDGET python3 -m fer_core train --data $D --quiet --run-dir /tmp/sweep/$name --epochs $EP "$@" > /tmp/sweep_$name.log 2>&1; }
mkdir -p /tmp/sweep
run A --recipe shipped &
run B --recipe shipped --mixup 0 --cutmix 0 &
run C --recipe shipped --arch fer_vgg &
run D --recipe shipped --optimizer adamw --lr 2e-3 --weight-decay 0.05 &
( while sleep 15; do for n in A B C D; do cp /tmp/sweep/$n/history.json $OUT/$n.json 2>/dev/null; done; done ) &
copier=$!
wait %1 %2 %3 %4
kill $copier
for n in A B C D; do cp /tmp/sweep/$n/history.json $OUT/$n.json 2>/dev/null; echo "== $n"; grep -E "^epoch" /tmp/sweep_$n.log | sort -t' ' -k1 | awk '{print}' | sort -k11 -n | tail -1; tail -2 /tmp/sweep_$n.log; done
