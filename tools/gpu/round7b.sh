#!/bin/bash
# Round 7b (session 4): round 7's B3 alone (the machine holding round 7 was lost): fer_vgg with a
# shared trunk and 3 averaged branches, the shipped recipe. Waits up to $WAIT s (default 560) for it
# to finish, then returns its best checkpoint (fp16) and history in $OUT. Re-running only waits.
export FER_CACHE_DIR=/tmp/fercache PYTHONUNBUFFERED=1
D=${D:-.gpu_all/fer.zip}; R=/tmp/r7b; WAIT=${WAIT:-560}
if [ ! -d $R ]; then
  mkdir -p $R
  (python3 -m fer_core info --data $D > /dev/null 2>&1
   python3 -m fer_core train --data $D --quiet --run-dir $R/B3 --recipe shipped --branches 3 \
     --half > $R/B3.log 2>&1; touch $R/DONE) &
fi
end=$((SECONDS + WAIT))
while [ $SECONDS -lt $end ] && [ ! -f $R/DONE ]; do sleep 5; done
tail -n 3 $R/B3.log
cp $R/B3.log $R/B3/history.json $R/B3/run.json $OUT/ 2>/dev/null
[ -f $R/DONE ] && cp $R/B3/best.pt $OUT/B3.pt && echo ALL_DONE
