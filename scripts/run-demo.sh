#!/usr/bin/env bash
# Starts a coordinator with two local native workers, submits a demo job,
# prints where to look, and keeps serving until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

ADDR=${GRID_ADDR:-127.0.0.1:8080}
DATA=${GRID_DATA:-./grid-data}
GRID=target/release/grid
URL="http://$ADDR"

"$GRID" serve --addr "$ADDR" --data "$DATA" --local-workers 2 &
SERVER=$!
trap 'kill -TERM "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true' EXIT
trap 'exit 0' INT TERM

# Wait until the coordinator answers (it creates the token on first start).
for _ in $(seq 1 100); do
    if [[ -s "$DATA/token" ]] && "$GRID" --url "$URL" --token "$(cat "$DATA/token")" jobs >/dev/null 2>&1; then
        break
    fi
    if ! kill -0 "$SERVER" 2>/dev/null; then
        echo "error: the coordinator did not start (is $ADDR already in use? set GRID_ADDR=host:port)" >&2
        exit 1
    fi
    sleep 0.1
done
TOKEN=$(cat "$DATA/token")
export GRID_URL="$URL" GRID_TOKEN="$TOKEN"

echo
echo "demo: rendering a 1200x900 Mandelbrot image on the two local workers"
JOB=$("$GRID" submit mandelbrot --width 1200 --height 900 --x-min -2.5 --x-max 1.0 \
    --y-min -1.3125 --y-max 1.3125 --max-iter 1000 --tasks 90 --json | sed -n 's/^  "id": \([0-9]*\),$/\1/p')
"$GRID" watch "$JOB"
"$GRID" results "$JOB" --format png -o mandelbrot.png

cat <<INFO

browsergrid is running at $URL
  donor page      $URL/            (open it in a browser and press Start;
                                   GRID_ADDR=0.0.0.0:8080 lets other machines in)
  dashboard       $URL/dashboard#token=$TOKEN
  API token       $DATA/token
  the demo image  ./mandelbrot.png

try, in another terminal:
  export GRID_URL=$URL GRID_TOKEN=\$(cat $DATA/token)
  target/release/grid submit primes --start 0 --end 1000000000 --wait
  target/release/grid jobs

Ctrl-C stops the coordinator (jobs and results are kept in $DATA).
INFO
wait "$SERVER"
