#!/bin/bash
# Wait up to $WAIT seconds (default 540) for round 7, then evaluate each run's best checkpoint on
# PublicTest (flip and ten-crop).
# KEEP="name ..." also returns those runs' best checkpoints in fp16. Prints ALL_DONE at the end.
R=/tmp/r7; WAIT=${WAIT:-540}; D=.gpu/fer.zip
export FER_CACHE_DIR=/tmp/fercache PYTHONPATH=.
end=$((SECONDS + WAIT))
while [ $SECONDS -lt $end ] && [ ! -f $R/DONE ]; do sleep 5; done
for f in $R/*.log; do echo "$f: $(tail -n 1 $f)"; done
(cd $R && tar czf $OUT/runs7.tgz */history.json */run.json *.log 2>/dev/null)
if [ -f $R/DONE ]; then
  for d in $R/*/; do
    n=$(basename $d)
    [ -f $d/best.pt ] || continue
    python3 -m fer_core evaluate --data $D --split public_test --checkpoint $d/best.pt --json > $R/$n.eval_flip.json 2>/dev/null
    python3 -m fer_core evaluate --data $D --split public_test --checkpoint $d/best.pt --tta-mode crops --json > $R/$n.eval_crops.json 2>/dev/null
    python3 -c "import json,sys;[print(sys.argv[1], t, json.load(open(f'$R/'+sys.argv[1]+f'.eval_{t}.json'))['accuracy']) for t in ('flip','crops')]" $n
  done
  cp $R/*.eval_*.json $OUT/ 2>/dev/null
  for k in $KEEP; do
    cp $R/$k/best.pt $OUT/$k.pt
    python3 -c "import sys; from pathlib import Path; from fer_core.__main__ import _rewrite_half; _rewrite_half(Path(sys.argv[1]))" $OUT/$k.pt
  done
  echo ALL_DONE
fi
