#!/bin/bash
for i in $(seq 1 ${WAIT:-57}); do [ -f /tmp/seeds/DONE ] && break; sleep 10; done
cd /tmp/seeds && tar cf $OUT/seeds.tar */history.json */run.json 2>/dev/null; cd - >/dev/null
for f in /tmp/seeds_*.log; do echo "== $f $(grep -c '^epoch' $f)"; tail -1 $f; done
ls /tmp/seeds/DONE 2>/dev/null && echo ALL_DONE
