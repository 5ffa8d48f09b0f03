#!/bin/sh
# As the official image's 20-envsubst-on-templates.sh: substitute only variables that
# are defined, so nginx's own $variables stay as they are.
set -eu
defined=$(env | cut -d= -f1 | sed 's/.*/${&}/' | tr '\n' ' ')
for template in /etc/nginx/templates/*.template; do
    [ -f "$template" ] || continue
    output="/etc/nginx/conf.d/$(basename "$template" .template)"
    envsubst "$defined" <"$template" >"$output"
    echo "rendered $template to $output"
done
exec "$@"
