#!/bin/bash
# Wait (bounded) for sweep3, then return histories (one tar) and fp16 checkpoints (split < 16 MiB).
for i in $(seq 1 ${WAIT:-57}); do [ -f /tmp/sw3/DONE ] && break; sleep 10; done
cd /tmp/sw3 && tar cf $OUT/histories.tar */history.json */run.json 2>/dev/null; cd - >/dev/null
for n in A A2 B E; do
  if [ -f /tmp/sw3/DONE ]; then split -b 15M -d /tmp/sw3/$n/best.pt $OUT/$n.pt.; fi
  echo "== $n $(grep -c '^epoch' /tmp/sw3_$n.log) epochs"; grep '^epoch' /tmp/sw3_$n.log | sort -k10 | tail -1; tail -2 /tmp/sw3_$n.log
done
ls /tmp/sw3/DONE 2>/dev/null && echo ALL_DONE
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
