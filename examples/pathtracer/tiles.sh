#!/usr/bin/env bash
# Prints the tile lines of a whole image for the path tracer, one task each:
#
#   examples/pathtracer/tiles.sh W H TW TH > tiles.txt
#
# W x H is the image (the kernel's --width and --height), TW x TH the tile
# size. Each line is `X Y W H`, row by row from the top-left; the tiles at
# the right and bottom edges are cut to fit, so together they cover the
# image exactly once.
set -euo pipefail

if [[ $# -ne 4 ]]; then
    echo "usage: $0 WIDTH HEIGHT TILE_WIDTH TILE_HEIGHT" >&2
    exit 2
fi
for n in "$@"; do
    if ! [[ "$n" =~ ^[1-9][0-9]{0,5}$ ]]; then
        echo "$0: $n: expected a whole number from 1 to 999999" >&2
        exit 2
    fi
done
width=$1 height=$2 tile_w=$3 tile_h=$4

for ((y = 0; y < height; y += tile_h)); do
    h=$((height - y < tile_h ? height - y : tile_h))
    for ((x = 0; x < width; x += tile_w)); do
        w=$((width - x < tile_w ? width - x : tile_w))
        echo "$x $y $w $h"
    done
done
