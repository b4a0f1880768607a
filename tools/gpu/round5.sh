#!/bin/bash
# Round 5 (session 2): the three candidates round 4 could not finish, three at a time:
# SAM (rho 0.05) at width 64, width 96, and both. Results in /tmp/r5.
export FER_CACHE_DIR=/tmp/fercache PYTHONUNBUFFERED=1
D=.gpu/fer.zip; R=/tmp/r5; mkdir -p $R
python3 -m fer_core info --data $D > /dev/null 2>&1
run() { name=$1; shift; rm -rf $R/$name
  python3 -m fer_core train --data $D --quiet --half --run-dir $R/$name "$@" > $R/$name.log 2>&1; }
run K1 --recipe shipped --sam 0.05 &
run K3 --recipe shipped --width 96 --sam 0.05 &
run K4 --recipe shipped --width 96 &
wait
touch $R/DONE
