#!/bin/bash
# Wait (bounded) for sweep2, then copy histories and fp16 checkpoints to $OUT.
for i in $(seq 1 ${WAIT:-57}); do [ -f /tmp/sw2/DONE ] && break; sleep 10; done
for n in M0 M1 N0 N1; do
  cp /tmp/sw2/$n/history.json $OUT/$n.json 2>/dev/null
  [ -f /tmp/sw2/DONE ] && cp /tmp/sw2/$n/best.pt $OUT/$n.pt 2>/dev/null
  echo "== $n $(grep -c '^epoch' /tmp/sw2_$n.log) epochs"; tail -2 /tmp/sw2_$n.log
done
ls -la /tmp/sw2/DONE 2>/dev/null && echo ALL_DONE
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv
