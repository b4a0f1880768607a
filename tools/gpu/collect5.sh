#!/bin/bash
# Wait up to $WAIT seconds (default 540) for round 5, print each run's progress, and once it is
# done evaluate every best checkpoint on PublicTest with flip and ten-crop TTA (JSON in $OUT).
# With KEEP=name, also return that run's best checkpoint in fp16. Prints ALL_DONE at the end.
R=/tmp/r5; WAIT=${WAIT:-540}; D=.gpu/fer.zip
export FER_CACHE_DIR=/tmp/fercache
end=$((SECONDS + WAIT))
while [ $SECONDS -lt $end ] && [ ! -f $R/DONE ]; do sleep 5; done
for d in $R/*/; do
  echo "$(basename $d) $(python3 -c "import json;h=json.load(open('$d/history.json'));b=max(h,key=lambda e:e['val_acc']);print(len(h), 'best', b['val_acc'], 'at', b['epoch'])" 2>/dev/null)"
done
(cd $R && tar czf $OUT/runs5.tgz */history.json */run.json *.log 2>/dev/null)
if [ -f $R/DONE ]; then
  for d in $R/*/; do
    n=$(basename $d)
    [ -f $R/$n.eval_flip.json ] || python3 -m fer_core evaluate --data $D --split public_test \
      --checkpoint $d/best.pt --json > $R/$n.eval_flip.json 2>/dev/null
    [ -f $R/$n.eval_crops.json ] || python3 -m fer_core evaluate --data $D --split public_test \
      --checkpoint $d/best.pt --tta-mode crops --json > $R/$n.eval_crops.json 2>/dev/null
    python3 -c "import json,sys;[print(sys.argv[1], t, json.load(open(f'$R/'+sys.argv[1]+f'.eval_{t}.json'))['accuracy']) for t in ('flip','crops')]" $n
  done
  cp $R/*.eval_*.json $OUT/ 2>/dev/null
  if [ -n "$KEEP" ]; then
    cp $R/$KEEP/best.pt $OUT/$KEEP.pt
    python3 -c "import sys; from pathlib import Path; from fer_core.__main__ import _rewrite_half; _rewrite_half(Path(sys.argv[1]))" $OUT/$KEEP.pt
  fi
  echo ALL_DONE
fi
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
