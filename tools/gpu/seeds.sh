#!/bin/bash
# Comparison table: each seed architecture with its published recipe and with ours, concurrently.
export FER_CACHE_DIR=/tmp/fercache PYTHONUNBUFFERED=1
D=.gpu/fer.zip; OURS_EPOCHS=${OURS_EPOCHS:-200}
python3 -m fer_core info --data $D >/dev/null 2>&1
run() { name=$1; shift; rm -rf /tmp/seeds/$name
  python3 -m fer_core train --data $D --quiet --run-dir /tmp/seeds/$name "$@" > /tmp/seeds_$name.log 2>&1; }
mkdir -p /tmp/seeds
i=0
for arch in seed_cnn4_fc512 seed_cnn3_colab seed_vgg6_unpadded seed_cnn4_fc256 seed_cnn4_dropout; do
  run own_$i --recipe seed00$i &
  run ours_$i --recipe shipped --arch $arch --mixup 0 --cutmix 0 --epochs $OURS_EPOCHS &
  i=$((i+1))
done
wait
touch /tmp/seeds/DONE
