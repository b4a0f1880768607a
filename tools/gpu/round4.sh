#!/bin/bash
# Round 4 (session 2): the training benchmark alone on the GPU, solo epoch times, then the seed
# comparison and four candidates (SAM, width 96) concurrently. Results in /tmp/r4.
export FER_CACHE_DIR=/tmp/fercache PYTHONUNBUFFERED=1
D=.gpu/fer.zip; R=/tmp/r4; mkdir -p $R
python3 -m fer_core info --data $D > /dev/null 2>&1
python3 bench/train_gpu.py --data $D --compile --json > $R/train_gpu.json 2> $R/train_gpu.log
python3 tools/gpu/epoch_times.py --data $D --extra K1:64:0.05 K3:96:0.05 K4:96:0 \
  > $R/epoch_times.json 2> $R/epoch_times.log
touch $R/PHASE_A
run() { name=$1; shift; rm -rf $R/$name
  python3 -m fer_core train --data $D --quiet --half --run-dir $R/$name "$@" > $R/$name.log 2>&1; }
i=0
for arch in seed_cnn4_fc512 seed_cnn3_colab seed_vgg6_unpadded seed_cnn4_fc256 seed_cnn4_dropout; do
  run own_$i --recipe seed00$i &
  run ours_$i --recipe shipped --arch $arch &
  i=$((i+1))
done
run K1 --recipe shipped --sam 0.05 &
run K2 --recipe shipped --sam 0.1 &
run K3 --recipe shipped --width 96 --sam 0.05 &
run K4 --recipe shipped --width 96 &
wait
touch $R/DONE
