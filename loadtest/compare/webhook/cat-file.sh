#!/bin/sh
# For webhook, which gives a command no stdin: cat the file it wrote the
# request body to (pass-file-to-command, $BODY_FILE).
exec cat "$BODY_FILE"
