#!/bin/bash
# Round 3: longer schedules and a wider fer_vgg, concurrently; collect3.sh gathers.
export FER_CACHE_DIR=/tmp/fercache PYTHONUNBUFFERED=1
D=.gpu/fer.zip
python3 -m fer_core info --data $D >/dev/null 2>&1
run() { name=$1; shift; rm -rf /tmp/sw3/$name
  python3 -m fer_core train --data $D --quiet --half --run-dir /tmp/sw3/$name "$@" > /tmp/sw3_$name.log 2>&1; }
mkdir -p /tmp/sw3
run A --recipe shipped --arch fer_vgg --mixup 0 --cutmix 0 --epochs 400 --seed 0 &
run A2 --recipe shipped --arch fer_vgg --mixup 0 --cutmix 0 --epochs 400 --seed 0 &
run B --recipe shipped --arch fer_vgg --mixup 0 --cutmix 0 --epochs 600 --seed 0 &
run E --recipe shipped --arch fer_vgg --width 32 --mixup 0 --cutmix 0 --epochs 400 --seed 0 &
wait
touch /tmp/sw3/DONE
