#!/bin/sh
# CGI/1.1: reads the body, answers after SECONDS (query string, default 30):
# a request that keeps a server's one slot busy while its queue is filled.
s=${QUERY_STRING#s=}
case $s in ''|*[!0-9.]*) s=30 ;; esac
cat >/dev/null
sleep "$s"
printf 'Content-Type: text/plain\r\n\r\nslept %s\n' "$s"
