#!/bin/sh
# CGI/1.1: the request body back as text. What a user writes to run `cat`
# behind a CGI server (busybox httpd, lighttpd mod_cgi, python -m http.server
# --cgi, fiddler_crab --cgi): a shell, then cat.
printf 'Content-Type: text/plain\r\n\r\n'
exec cat
