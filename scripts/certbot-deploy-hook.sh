#!/usr/bin/env bash
# certbot deploy hook: installs a renewed certificate for chat-server and reloads it without
# dropping anyone. Install as /etc/letsencrypt/renewal-hooks/deploy/chatroom.sh (executable);
# certbot sets RENEWED_LINEAGE to /etc/letsencrypt/live/<host>.
set -euo pipefail
dest=/etc/chatroom/tls
install -d -m 750 -o root -g chatroom "$dest"
install -m 644 -o root -g chatroom "$RENEWED_LINEAGE/fullchain.pem" "$dest/fullchain.pem.new"
install -m 640 -o root -g chatroom "$RENEWED_LINEAGE/privkey.pem" "$dest/privkey.pem.new"
mv "$dest/fullchain.pem.new" "$dest/fullchain.pem"
mv "$dest/privkey.pem.new" "$dest/privkey.pem"
systemctl reload chat-server
