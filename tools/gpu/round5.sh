#!/bin/bash
# Round 5 (session 3): self-distillation from the EMA weights (--distill), two candidates at once,
# each the shipped recipe plus one change. Results in /tmp/r5; collect5.sh waits and evaluates.
export FER_CACHE_DIR=/tmp/fercache PYTHONUNBUFFERED=1
D=.gpu/fer.zip; R=/tmp/r5; mkdir -p $R
python3 -m fer_core info --data $D > /dev/null 2>&1
run() { name=$1; shift; rm -rf $R/$name
  python3 -m fer_core train --data $D --quiet --run-dir $R/$name "$@" > $R/$name.log 2>&1; }
run D1 --recipe shipped --distill 0.5 --distill-temperature 4 &
run D2 --recipe shipped --distill 0.7 &
wait
touch $R/DONE
