#!/usr/bin/env bash
# certbot deploy hook: installs a renewed certificate for chat-server and reloads it without
# dropping anyone. Install as /etc/letsencrypt/renewal-hooks/deploy/chatroom.sh (executable)
# and set the host name below; certbot runs deploy hooks for every certificate of the machine,
# with RENEWED_LINEAGE=/etc/letsencrypt/live/<host>.
set -euo pipefail
host=${CHATROOM_HOST:-chat.example.org}
[ "$(basename "$RENEWED_LINEAGE")" = "$host" ] || exit 0
dest=/etc/chatroom/tls
install -d -m 750 -o root -g chatroom "$dest"
install -m 644 -o root -g chatroom "$RENEWED_LINEAGE/fullchain.pem" "$dest/fullchain.pem.new"
install -m 640 -o root -g chatroom "$RENEWED_LINEAGE/privkey.pem" "$dest/privkey.pem.new"
mv "$dest/fullchain.pem.new" "$dest/fullchain.pem"
mv "$dest/privkey.pem.new" "$dest/privkey.pem"
# Reload when running (SIGHUP: new connections get the new certificate); start it otherwise.
systemctl try-reload-or-restart chat-server
