#!/usr/bin/env bash
# Checks what `sam build` produced: every function of template.yaml has an
# arm64 ELF `bootstrap` under the size budget. Prints the sizes.
set -euo pipefail
cd "$(dirname "$0")/.."
# 8 MB: small enough to start fast; `make bench` reports the same figure.
BUDGET=8000000
functions=$(grep -B1 -A0 'Type: AWS::Serverless::Function' template.yaml | grep -oE '^  [A-Za-z]+:' | tr -d ' :')
status=0
printf '%-26s %10s  %s\n' function bytes check
for f in $functions; do
  artifact=".aws-sam/build/$f/bootstrap"
  if [[ ! -f "$artifact" ]]; then
    printf '%-26s %10s  %s\n' "$f" - "MISSING $artifact"; status=1; continue
  fi
  size=$(stat -c %s "$artifact")
  # ELF magic, 64-bit, machine 0xB7 (AArch64) at offset 18.
  magic=$(od -An -tx1 -N4 "$artifact" | tr -d ' ')
  class=$(od -An -tx1 -j4 -N1 "$artifact" | tr -d ' ')
  machine=$(od -An -tx1 -j18 -N2 "$artifact" | tr -d ' ')
  verdict=ok
  if [[ "$magic" != 7f454c46 || "$class" != 02 || "$machine" != b700 ]]; then
    verdict="NOT an arm64 ELF executable"; status=1
  elif (( size > BUDGET )); then
    verdict="OVER the $BUDGET-byte budget"; status=1
  fi
  printf '%-26s %10d  %s\n' "$f" "$size" "$verdict"
done
exit $status
