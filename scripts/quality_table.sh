#!/bin/sh
# The quality table of Documentation/quality.md: FID/KID (classifier features, against the Fashion-MNIST test
# split) of a trained run's samples for several samplers and step counts, EMA and raw weights,
# and the training split as the floor. Usage:
#   scripts/quality_table.sh RUN COUNT [ROWS]
# ROWS picks rows by name (default: all): floor ddim10 ddim20 ddim50 ddim100 dpm10 dpm20 raw50 ddpm1000.
# Each row's JSON goes to RUN/eval/ROW-COUNT.json; the markdown table is printed at the end.
set -eu
RUN=$1
COUNT=$2
ROWS=${3:-"floor ddim10 ddim20 ddim50 ddim100 dpm10 dpm20 raw50 ddpm1000"}
HAZE=${HAZE:-.build/release/haze}
CHECKPOINT=$RUN/$(cat "$RUN/latest")
mkdir -p "$RUN/eval"
row() {  # name, then haze evaluate arguments
  name=$1; shift
  out=$RUN/eval/$name-$COUNT.json
  [ -f "$out" ] || "$HAZE" evaluate --count "$COUNT" --batch-size 250 --json "$out" "$@"
}
for r in $ROWS; do
  case $r in
    floor)    row floor --samples fashion-mnist:train ;;
    ddim*)    row "$r" --model "$CHECKPOINT/ema" --scheduler ddim --steps "${r#ddim}" ;;
    dpm*)     row "$r" --model "$CHECKPOINT/ema" --scheduler dpm++2m --steps "${r#dpm}" ;;
    raw*)     row "$r" --model "$CHECKPOINT/model" --scheduler ddim --steps "${r#raw}" ;;
    ddpm*)    row "$r" --model "$CHECKPOINT/ema" --scheduler ddpm --steps "${r#ddpm}" ;;
    *) echo "unknown row $r" >&2; exit 2 ;;
  esac
done
echo "| row | FID | KID (mean ± std) | samples |"
echo "|---|---|---|---|"
for r in $ROWS; do
  f=$RUN/eval/$r-$COUNT.json
  [ -f "$f" ] || continue
  get() { sed -n "s/.*\"$1\" : \([-0-9.e+]*\).*/\1/p" "$f"; }
  printf '| %s | %.2f | %.5f ± %.5f | %s |\n' "$r" "$(get fid)" "$(get kid_mean)" "$(get kid_std)" "$(get count)"
done
