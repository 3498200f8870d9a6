#!/bin/sh
# Echoes its request body: the body is the answer. The same as running `cat`
# directly (what the default routes do); kept as a file for configs that want
# a path.
exec cat
