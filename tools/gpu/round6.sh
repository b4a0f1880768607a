#!/bin/bash
# Round 6 (session 4): online ensemble distillation. The shipped recipe with 3 peers trained
# alongside the model in one grouped network; the model distils from their average. Two
# distillation weights at once. Results in /tmp/r6; collect6.sh waits and evaluates.
export FER_CACHE_DIR=/tmp/fercache PYTHONUNBUFFERED=1
D=.gpu/fer.zip; R=/tmp/r6; mkdir -p $R
python3 -m fer_core info --data $D > /dev/null 2>&1
run() { name=$1; shift; rm -rf $R/$name
  python3 -m fer_core train --data $D --quiet --run-dir $R/$name "$@" > $R/$name.log 2>&1; }
run P1 --recipe shipped --peers 3 --distill 0.5 --distill-temperature 2 &
run P2 --recipe shipped --peers 3 --distill 0.9 --distill-temperature 2 &
wait
touch $R/DONE
