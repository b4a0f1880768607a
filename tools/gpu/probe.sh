#!/bin/bash
# Probe: epoch time of candidate configs alone and concurrently on the H100.
export FER_CACHE_DIR=/tmp/fercache PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv
python3 -c "import torch,torchvision;print(torch.__version__,torchvision.__version__)"
D=.gpu/fer.zip
T() { python3 -m fer_core train --data $D --quiet --run-dir /tmp/probe/$1 "${@:2}" 2>&1 | grep -E "^epoch|error|Error" | sed "s/^/[$1] /"; }
T warm --recipe shipped --epochs 1 --limit 2000
T resnet64 --recipe shipped --epochs 2
T resnet64_bs256 --recipe shipped --epochs 2 --batch-size 256 --lr 0.2
T resnet64_compile --recipe shipped --epochs 3 --compile
T vgg64 --recipe shipped --arch fer_vgg --epochs 2
T small --recipe cpu_default --epochs 2
echo "--- 3 concurrent"
T c1 --recipe shipped --epochs 2 & T c2 --recipe shipped --epochs 2 & T c3 --recipe shipped --arch fer_vgg --epochs 2 & wait
