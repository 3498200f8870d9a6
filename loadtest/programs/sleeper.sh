#!/bin/sh
# Reads its request body, then sleeps: a program that costs time, not CPU.
# usage: sleeper.sh [SECONDS]   (default 0.05)
cat >/dev/null
exec sleep "${1:-0.05}"
