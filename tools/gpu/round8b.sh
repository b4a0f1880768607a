#!/bin/bash
# Round 8b (session 5): the winner of round 8 (4 branches after the shared trunk), now the shipped
# recipe, retrained alone on one H100 with the recorded command: its time, and whether it repeats
# round 8's H200 run. Waits up to $WAIT s (default 560) per call; re-running only waits. When done
# it returns the fp16 checkpoint in 12 MB parts (cat best.pt.* > best.pt) and the history.
# Carry .gpu_all in every call.
export FER_CACHE_DIR=/tmp/fercache PYTHONUNBUFFERED=1
D=${D:-.gpu_all/fer.zip}; R=/tmp/r8b; WAIT=${WAIT:-560}
if [ ! -d $R ]; then
  mkdir -p $R
  nvidia-smi --query-gpu=name --format=csv,noheader > $R/gpus.txt
  python3 -m fer_core info --data $D > /dev/null 2>&1
  setsid bash -c "python3 -m fer_core train --data $D --quiet --run-dir $R/B4 --recipe shipped \
    --half > $R/B4.log 2>&1; touch $R/DONE" &
fi
cat $R/gpus.txt
end=$((SECONDS + WAIT))
while [ $SECONDS -lt $end ] && [ ! -f $R/DONE ]; do sleep 5; done
tail -n 3 $R/B4.log
cp $R/B4.log $R/B4/history.json $R/B4/run.json $OUT/ 2>/dev/null
[ -f $R/DONE ] && split -b 12M $R/B4/best.pt $OUT/best.pt. && md5sum $R/B4/best.pt && echo ALL_DONE
