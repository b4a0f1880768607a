#!/bin/bash
# Wait up to $WAIT seconds (default 540) for round 5, then return what exists: JSON results,
# run records and histories; once done (or with FINAL=1) also the candidates' best checkpoints in
# fp16, split into 15 MB parts. Prints ALL_DONE when every run has finished.
R=${R:-/tmp/r5}; WAIT=${WAIT:-540}
end=$((SECONDS + WAIT))
while [ $SECONDS -lt $end ] && [ ! -f $R/DONE ]; do sleep 5; done
cp $R/*.json $OUT/ 2>/dev/null
(cd $R && tar czf $OUT/runs.tgz */history.json */run.json 2>/dev/null)
for d in $R/*/; do
  echo "$(basename $d) $(python3 -c "import json;h=json.load(open('$d/history.json'));print(len(h), max(e['val_acc'] for e in h))" 2>/dev/null)"
done
if [ -f $R/DONE ] || [ "$FINAL" = 1 ]; then
  rm -rf /tmp/ck && mkdir -p /tmp/ck
  for k in K1 K3 K4; do
    [ -f $R/$k/best.pt ] || continue
    cp $R/$k/best.pt /tmp/ck/$k.pt
    python3 -c "import sys; from pathlib import Path; from fer_core.__main__ import _rewrite_half; _rewrite_half(Path(sys.argv[1]))" /tmp/ck/$k.pt
  done
  (cd /tmp/ck && tar cf /tmp/ckpts.tar *.pt && split -b 15M /tmp/ckpts.tar $OUT/ckpts.tar.)
fi
[ -f $R/DONE ] && echo ALL_DONE
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
