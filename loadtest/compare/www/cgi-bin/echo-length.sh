#!/bin/sh
# CGI/1.1 for python3 -m http.server --cgi, which gives the script the socket
# itself as stdin (no end of file after the body): read CONTENT_LENGTH bytes.
printf 'Content-Type: text/plain\r\n\r\n'
exec head -c "${CONTENT_LENGTH:-0}"
