#!/bin/bash
# Round 2: long schedules for fer_vgg, mixing on/off, two seeds each. Runs detached; collect.sh gathers.
export FER_CACHE_DIR=/tmp/fercache PYTHONUNBUFFERED=1
D=.gpu/fer.zip; EP=${EP:-180}
python3 -m fer_core info --data $D >/dev/null 2>&1
run() { name=$1; shift; rm -rf /tmp/sw2/$name
  python3 -m fer_core train --data $D --quiet --half --run-dir /tmp/sw2/$name --epochs $EP "$@" > /tmp/sw2_$name.log 2>&1; }
mkdir -p /tmp/sw2
run M0 --recipe shipped --arch fer_vgg --seed 0 &
run M1 --recipe shipped --arch fer_vgg --seed 1 &
run N0 --recipe shipped --arch fer_vgg --mixup 0 --cutmix 0 --seed 0 &
run N1 --recipe shipped --arch fer_vgg --mixup 0 --cutmix 0 --seed 1 &
wait
touch /tmp/sw2/DONE
