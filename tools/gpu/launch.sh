#!/bin/bash
# Training runs on the GPU machine, from a runs file: one run per line,
#
#   NAME: train flags...        # a comment; $VAR and ${VAR} in the flags come from the environment
#
# Each run is `python3 -m fer_core train --data $DATA --run-dir $R/NAME --quiet --half FLAGS`, then
# `evaluate` of its best.pt on PublicTest ($R/NAME.public.json) and, if $PHOTOS is set, on the two
# development photo sets ($R/NAME.taiwanese.json, $R/NAME.ckplus.json); $R/NAME.rc holds the exit
# status of the whole chain.
#
#   bash tools/gpu/launch.sh start RUNSFILE   start, detached, every run of RUNSFILE not yet in $R
#   bash tools/gpu/launch.sh collect          wait up to $WAIT s for all runs to end, print one line
#                                             per run, write $OUT/results.tgz; ALL_DONE once all ended
#   bash tools/gpu/launch.sh fetch NAME       NAME's fp16 best.pt into $OUT in 14 MB parts
#
# Environment: DATA (default .gpu/fer.zip), R (run folders, default /tmp/runs), OUT (collect and
# fetch), WAIT (default 540), PHOTOS (a folder holding ckplus48_dev and taiwanese_dev, or
# taiwanese_crops: the 48x48 crops of taiwanese_dev, scored with --no-detect where OpenCV has no
# Haar cascades, as in opencv-python 5). With one GPU (or none) every run shares it; with several
# (CUDA_VISIBLE_DEVICES, else all that nvidia-smi lists) runs go round-robin, one GPU each.
# Run it from the repository root.
set -u
export FER_CACHE_DIR=${FER_CACHE_DIR:-/tmp/fercache} PYTHONUNBUFFERED=1
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
export DATA=${DATA:-.gpu/fer.zip} R=${R:-/tmp/runs} PHOTOS=${PHOTOS:-}
WAIT=${WAIT:-540}
SELF=$(readlink -f "${BASH_SOURCE[0]}")

die() {
  echo "launch.sh: $*" >&2
  exit 1
}

expand() {  # $1 with each $VAR / ${VAR} replaced by its value; an unset variable is an error
  local s=$1 out="" name
  local re='^([^$]*)\$(\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))(.*)$'
  while [[ $s =~ $re ]]; do
    name=${BASH_REMATCH[3]:-${BASH_REMATCH[4]}}
    out+=${BASH_REMATCH[1]}
    s=${BASH_REMATCH[5]}
    [ -n "${!name+set}" ] || die "\$$name is not set"
    out+=${!name}
  done
  printf '%s' "$out$s"
}

gpus() {  # the GPUs to spread runs over, one per line (none on a machine without nvidia-smi)
  if [ -n "${CUDA_VISIBLE_DEVICES+set}" ]; then
    tr ',' '\n' <<< "$CUDA_VISIBLE_DEVICES" | grep -v '^$'
  elif command -v nvidia-smi > /dev/null; then
    nvidia-smi --query-gpu=index --format=csv,noheader
  fi
}

run_one() {  # NAME GPU FLAGS...: the train-evaluate chain of one run (started detached by start)
  local name=$1 gpu=$2 tw
  shift 2
  if [ -n "$gpu" ]; then export CUDA_VISIBLE_DEVICES=$gpu; fi
  local ckpt=$R/$name/best.pt log=$R/$name.log
  python3 -m fer_core train --data "$DATA" --run-dir "$R/$name" --quiet --half "$@" > "$log" 2>&1 &&
    python3 -m fer_core evaluate --checkpoint "$ckpt" --data "$DATA" --json \
      > "$R/$name.public.json" 2>> "$log" &&
    if [ -n "$PHOTOS" ]; then
      read -ra tw < "$R/taiwanese.txt"
      python3 -m fer_core evaluate --checkpoint "$ckpt" "${tw[@]}" --json \
        > "$R/$name.taiwanese.json" 2>> "$log" &&
        python3 -m fer_core evaluate --checkpoint "$ckpt" --data "$PHOTOS/ckplus48_dev" \
          --no-detect --json > "$R/$name.ckplus.json" 2>> "$log"
    fi
  echo $? > "$R/$name.rc"
}

photo_sets() {  # which taiwanese set this machine scores: the photos, or their crops (no cascades)
  [ -d "$PHOTOS/ckplus48_dev" ] || die "no $PHOTOS/ckplus48_dev"
  if [ -d "$PHOTOS/taiwanese_dev" ] &&
    python3 -c "import cv2, sys; sys.exit(not hasattr(cv2, 'CascadeClassifier'))" 2> /dev/null; then
    echo "--data $PHOTOS/taiwanese_dev"
  elif [ -d "$PHOTOS/taiwanese_crops" ]; then
    echo "--data $PHOTOS/taiwanese_crops --no-detect"
  else
    die "no $PHOTOS/taiwanese_crops (this OpenCV cannot detect faces in $PHOTOS/taiwanese_dev)"
  fi
}

start() {
  local file=${1:-} line name flags gpu started=0
  local -a names=() specs=() words=() gpu_list
  local -A seen=()
  [ -f "$file" ] || die "start needs a runs file"
  [ -e "$DATA" ] || die "no data at $DATA (set DATA)"
  while IFS= read -r line || [ -n "$line" ]; do
    line=${line%%#*}
    [[ $line =~ ^[[:space:]]*$ ]] && continue
    [[ $line =~ ^[[:space:]]*([A-Za-z0-9_.-]+):(.*)$ ]] || die "$file: not 'NAME: FLAGS': $line"
    name=${BASH_REMATCH[1]}
    flags=$(expand "${BASH_REMATCH[2]}") || exit 1
    read -ra words <<< "$flags"
    flags=${words[*]}
    [ -z "${seen[$name]:-}" ] || die "$file: $name twice"
    [[ " $flags " =~ \ --(data|run-dir|out)[\ =] ]] && die "$file: $name sets what launch.sh sets"
    seen[$name]=1
    names+=("$name")
    specs+=("$flags")
  done < "$file"
  [ ${#names[@]} -gt 0 ] || die "$file lists no runs"

  mkdir -p "$R"
  {
    nvidia-smi --query-gpu=name --format=csv,noheader 2> /dev/null || echo "no GPU"
    python3 -c "import cv2; print('cv2', cv2.__version__, hasattr(cv2, 'CascadeClassifier'))"
  } > "$R/machine.txt" 2>&1
  if [ -n "$PHOTOS" ]; then photo_sets > "$R/taiwanese.txt" || exit 1; fi
  python3 -m fer_core info --data "$DATA" > /dev/null 2>&1 # fills the data cache once
  mapfile -t gpu_list < <(gpus)
  touch "$R/runs.txt"
  for i in "${!names[@]}"; do
    name=${names[$i]}
    if [ -e "$R/$name.log" ]; then
      echo "$name: already started"
      continue
    fi
    gpu=""
    if [ ${#gpu_list[@]} -gt 1 ]; then
      gpu=${gpu_list[$(($(wc -l < "$R/runs.txt") % ${#gpu_list[@]}))]}
    fi
    echo "$name" >> "$R/runs.txt"
    touch "$R/$name.log"
    # shellcheck disable=SC2086  # the flags are split on spaces on purpose
    setsid bash "$SELF" _run "$name" "$gpu" ${specs[$i]} > /dev/null 2>&1 < /dev/null &
    echo "$name${gpu:+ (GPU $gpu)}: --data $DATA --run-dir $R/$name --quiet --half ${specs[$i]}"
    started=$((started + 1))
  done
  echo "started $started, $(wc -l < "$R/runs.txt") in $R"
  cat "$R/machine.txt"
}

all_ended() {
  local name
  while read -r name; do [ -f "$R/$name.rc" ] || return 1; done < "$R/runs.txt"
}

collect() {
  [ -n "${OUT:-}" ] || die "set OUT"
  [ -s "$R/runs.txt" ] || die "no runs started in $R"
  mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
  local end=$((SECONDS + WAIT)) name rc
  while [ $SECONDS -lt $end ] && ! all_ended; do sleep 5; done
  cat "$R/machine.txt"
  python3 - "$R" << 'EOF'
import json
import sys
from pathlib import Path

r = Path(sys.argv[1])


def read(path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def acc(kind):
    result = read(r / f"{name}.{kind}.json")
    return f"{result['accuracy']:.4f}" if isinstance(result, dict) else "-"


for name in (r / "runs.txt").read_text().split():
    history = read(r / name / "history.json") or []
    best = max(history, key=lambda e: e["val_acc"], default=None)
    val = f"{best['val_acc']:.4f}@{best['epoch']}" if best else "-"
    rc = r / f"{name}.rc"
    print(f"{name:16} epochs {len(history):3}  val {val:10}  public {acc('public')}  "
          f"taiwanese {acc('taiwanese')}  ckplus {acc('ckplus')}  "
          f"rc {rc.read_text().strip() if rc.exists() else '-'}")
EOF
  while read -r name; do
    rc=$(cat "$R/$name.rc" 2> /dev/null)
    if [ -n "$rc" ] && [ "$rc" != 0 ]; then
      echo "--- $name (rc $rc):"
      tail -n 3 "$R/$name.log"
    fi
  done < "$R/runs.txt"
  if command -v nvidia-smi > /dev/null; then
    nvidia-smi --query-gpu=index,utilization.gpu,memory.used --format=csv,noheader
  fi
  (cd "$R" && shopt -s nullglob && tar czf "$OUT/results.tgz" ./*.json ./*.log ./*.txt \
    ./*/history.json ./*/run.json)
  if all_ended; then echo ALL_DONE; fi
}

fetch() {
  local name=${1:-}
  [ -n "$name" ] || die "fetch needs a run name"
  [ -n "${OUT:-}" ] || die "set OUT"
  # --half rewrites best.pt in fp16 when training ends; until then it is the fp32 file
  [ -f "$R/$name.rc" ] || die "$name has not ended (no $R/$name.rc)"
  [ -f "$R/$name/best.pt" ] || die "no $R/$name/best.pt"
  [ "$(cat "$R/$name.rc")" = 0 ] || echo "launch.sh: $name ended with rc $(cat "$R/$name.rc")" >&2
  mkdir -p "$OUT"
  split -b 14M "$R/$name/best.pt" "$OUT/$name.pt." && md5sum "$R/$name/best.pt"
  echo "rejoin: cat $name.pt.* > $name.pt"
}

[ -d fer_core ] || die "run from the repository root"
case ${1:-} in
start) start "${2:-}" ;;
collect) collect ;;
fetch) fetch "${2:-}" ;;
_run)
  shift
  run_one "$@"
  ;;
*)
  awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$SELF"
  exit 2
  ;;
esac
