#!/usr/bin/env bash
# hymtl on a GPU in one command, at most 8 minutes, ending in one table:
#   1. versions and the device;
#   2. a 1-epoch run on a generated image folder, checked by scripts/check_run_dir.py;
#   3. scripts/bench.py --quick: the PyTorch tutorial's loop against hymtl's;
#   4. the reference study, experiment=regularization_study (12 runs, ResNet-18 by default,
#      25 epochs), with --n-jobs runs side by side on the device, then two of its runs again one
#      after another, compared epoch by epoch (scripts/gpu_study.py).
# The last line is gpu_study_s=<wall seconds of the whole study, the fastest --n-jobs>.
#
#   bash scripts/gpu_check.sh --data data/hymenoptera_data [--weights mobilenet_v2_features.pth]
#   bash scripts/gpu_check.sh --device cpu    # dry run: the same steps at toy sizes, no GPU needed
#
# Each step has its own time limit, so one slow step cannot eat the others' time; its full
# output is in OUT/<step>.log. Exit status 1 when any step failed.
set -uo pipefail
cd "$(dirname "$0")/.."

device=cuda
data=data/hymenoptera_data
weights=""
out=""
epochs=""
n_jobs=""
model=resnet18
usage="usage: bash scripts/gpu_check.sh [--device cuda|cpu] [--data DIR] [--weights FILE] [--model NAME] [--out DIR] [--epochs N] [--n-jobs N[,N]]"
while [ $# -gt 0 ]; do
  case "$1" in
    --device) device=$2; shift 2 ;;
    --data) data=$2; shift 2 ;;
    --weights) weights=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --epochs) epochs=$2; shift 2 ;;
    --n-jobs) n_jobs=$2; shift 2 ;;
    -h|--help) echo "$usage"; exit 0 ;;
    *) echo "gpu_check: unknown argument $1; $usage" >&2; exit 2 ;;
  esac
done
python=${PYTHON:-python}
out=${out:-$(mktemp -d -t hymtl-gpu-check-XXXXXX)}
mkdir -p "$out"

if [ "$device" = cpu ]; then
  # Dry run: every step and the table, at sizes that finish in about two minutes on 2 cores.
  epochs=${epochs:-1}
  n_jobs=${n_jobs:-2}
  toy_size=(data.image_size=64 data.resize_size=72 model.pretrained=false)
  bench_args=(--rounds 1 --train-steps 2 --eval-steps 2 --warmup 1 --num-workers 0)
else
  epochs=${epochs:-25}
  n_jobs=${n_jobs:-12,4}
  toy_size=()
  bench_args=(--rounds 3 --train-steps 30 --eval-steps 30 --warmup 5 --also precision=fp32)
fi

rows=()
failed=0
# step NAME LIMIT_SECONDS COMMAND...: runs it with its output in OUT/NAME.log, notes the seconds.
step() {
  local name=$1 limit=$2
  shift 2
  echo "== $name (limit ${limit} s): $*"
  local started=$SECONDS
  timeout --kill-after=10 "$limit" "$@" >"$out/$name.log" 2>&1
  local status=$?
  step_seconds=$((SECONDS - started))
  if [ $status -eq 124 ] || [ $status -eq 137 ]; then
    echo "   timed out after ${limit} s; see $out/$name.log"
    return 124
  elif [ $status -ne 0 ]; then
    echo "   failed (exit $status); last lines of $out/$name.log:"
    tail -n 5 "$out/$name.log" | sed 's/^/   /'
    return $status
  fi
  echo "   done in ${step_seconds} s"
}
add_row() { rows+=("| $1 | $2 | $3 |"); }

# 1. Versions and the device; a CUDA check without a GPU stops here with one line.
versions=$("$python" - "$device" 2>&1 <<'EOF'
import sys, platform
import torch, torchvision, hydra, hymtl
device = sys.argv[1]
if device.startswith("cuda") and not torch.cuda.is_available():
    sys.exit("no CUDA device visible to torch; run with --device cpu for the dry run")
name = torch.cuda.get_device_name(device) if device.startswith("cuda") else platform.processor() or "cpu"
cuda = f", CUDA {torch.version.cuda}" if device.startswith("cuda") else ""
print(f"hymtl {hymtl.__version__}, torch {torch.__version__}, torchvision {torchvision.__version__}, "
      f"hydra {hydra.__version__}, Python {platform.python_version()}{cuda}; {name}")
EOF
)
if [ $? -ne 0 ]; then
  echo "gpu_check: ${versions##*$'\n'}" >&2
  exit 2
fi
echo "$versions"
add_row "versions and device" "$versions" ""

# 2. One epoch on a generated folder, then the run directory's own check.
toy=$out/toy_images
"$python" -c "import sys; from hymtl.data.toydata import make_toy_image_folder as m; m(sys.argv[1], 24, 12)" "$toy"
if step run_1_epoch 120 "$python" -m hymtl.train data.root="$toy" epochs=1 device="$device" \
    model=resnet18 model.pretrained=false "hydra.run.dir=$out/run_1_epoch" "${toy_size[@]}" \
  && run_seconds=$step_seconds \
  && step check_run_dir 60 "$python" scripts/check_run_dir.py "$out/run_1_epoch" --epochs 1; then
  add_row "1-epoch run, generated folder" "$(tail -n 1 "$out/check_run_dir.log")" "$run_seconds"
else
  add_row "1-epoch run, generated folder" "FAILED (see $out/run_1_epoch.log)" ""
  failed=1
fi

# 3. The tutorial loop against hymtl, on the real images when present, else the generated ones.
bench_data=$data
[ -d "$bench_data/train" ] || bench_data=$toy
if step bench 120 "$python" scripts/bench.py --device "$device" --data "$bench_data" "${bench_args[@]}"; then
  add_row "bench.py on $(basename "$bench_data")" "$(grep -h '^speedup_vs_reference=' "$out/bench.log")" "$step_seconds"
else
  add_row "bench.py on $(basename "$bench_data")" "FAILED (see $out/bench.log)" ""
  failed=1
fi

# 4. The reference study, runs side by side, and two of its runs again one by one.
study_args=(--data "$bench_data" --device "$device" --epochs "$epochs" --n-jobs "$n_jobs"
  --model "$model" --out "$out/study")
[ -n "$weights" ] && study_args+=(--weights "$weights")
[ ${#toy_size[@]} -gt 0 ] && study_args+=(--set "${toy_size[@]}")
study_line=""
if step study 420 "$python" scripts/gpu_study.py "${study_args[@]}"; then
  # gpu_study's rows are | runs at a time | wall s | accuracies |; here: | check | result | seconds |
  while IFS= read -r line; do
    rows+=("$line")
  done < <(awk -F' [|] ' '/^[|] [0-9]+ [|]/ {
    printf "| study, %s runs at a time | best val acc %s | %s |\n", substr($1, 3), substr($3, 1, length($3) - 2), $2
  }' "$out/study.log")
  study_line=$(grep -h '^gpu_study_s=' "$out/study.log")
  add_row "study, runs one by one against side by side" "$(grep -h '^largest_difference=' "$out/study.log")" "$step_seconds"
else
  add_row "reference study" "FAILED or timed out (see $out/study.log)" ""
  failed=1
fi

echo
echo "gpu_check, device=$device, $model, $epochs epochs per study run; logs in $out"
echo "| check | result | seconds |"
echo "|---|---|---|"
printf '%s\n' "${rows[@]}"
[ -n "$study_line" ] && echo "$study_line"
exit $failed
