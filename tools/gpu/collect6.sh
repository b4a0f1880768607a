#!/bin/bash
# Wait up to $WAIT seconds (default 540) for round 6 (or the round in $R, e.g. R=/tmp/r7), then
# evaluate each run's best checkpoint on PublicTest (flip and ten-crop) and, for runs with peers,
# each member of its final grouped network and their average (peers_eval.py).
# KEEP="name ..." also returns those runs' best checkpoints in fp16. Prints ALL_DONE at the end.
R=${R:-/tmp/r6}; WAIT=${WAIT:-540}; D=.gpu/fer.zip
export FER_CACHE_DIR=/tmp/fercache PYTHONPATH=.
end=$((SECONDS + WAIT))
while [ $SECONDS -lt $end ] && [ ! -f $R/DONE ]; do sleep 5; done
for f in $R/*.log; do echo "$f: $(tail -n 1 $f)"; done
(cd $R && tar czf $OUT/runs-$(basename $R).tgz */history.json */run.json *.log 2>/dev/null)
if [ -f $R/DONE ]; then
  for d in $R/*/; do
    n=$(basename $d)
    [ -f $d/best.pt ] || continue
    for tta in flip crops; do
      python3 -m fer_core evaluate --data $D --split public_test --checkpoint $d/best.pt \
        --tta-mode $tta --json > $R/$n.eval_$tta.json 2>/dev/null
      echo "$n $tta $(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['accuracy'])" $R/$n.eval_$tta.json)"
    done
    if grep -q '"peers": [1-9]' $d/run.json; then
      python3 tools/gpu/peers_eval.py $d $D | tee $R/$n.peers.json
    fi
  done
  cp $R/*.eval_*.json $R/*.peers.json $OUT/ 2>/dev/null
  for k in $KEEP; do
    cp $R/$k/best.pt $OUT/$k.pt
    python3 -c "import sys; from pathlib import Path; from fer_core.__main__ import _rewrite_half; _rewrite_half(Path(sys.argv[1]))" $OUT/$k.pt
  done
  echo ALL_DONE
fi
