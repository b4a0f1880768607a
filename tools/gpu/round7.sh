#!/bin/bash
# Round 7 (session 4): fer_vgg with a shared trunk (stages 1-2) splitting into 3 branches whose
# predictions are averaged, the shipped recipe otherwise, and the same with 4 branches.
# Results in /tmp/r7; `R=/tmp/r7 bash tools/gpu/collect6.sh` waits and evaluates.
export FER_CACHE_DIR=/tmp/fercache PYTHONUNBUFFERED=1
D=.gpu/fer.zip; R=/tmp/r7; mkdir -p $R
python3 -m fer_core info --data $D > /dev/null 2>&1
run() { name=$1; shift; rm -rf $R/$name
  python3 -m fer_core train --data $D --quiet --run-dir $R/$name "$@" > $R/$name.log 2>&1; }
run B3 --recipe shipped --branches 3 &
run B4 --recipe shipped --branches 4 &
wait
touch $R/DONE
