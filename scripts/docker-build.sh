#!/usr/bin/env bash
# Builds the container image and checks that it serves: a container on a loopback-published
# port, a client's hello answered with a welcome, the message logged in the volume, and the
# process not running as root. Needs a Docker daemon that can pull rust:1-bookworm and
# debian:bookworm-slim; not part of scripts/test.sh (the development machine has neither).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! docker info >/dev/null 2>&1; then
  echo "docker-build.sh: no Docker daemon here; nothing built" >&2
  exit 1
fi
tag=chatroom:test
docker build -t "$tag" .
name=chatroom-check-$$
trap 'docker rm -f "$name" >/dev/null 2>&1 || true; docker volume rm "$name" >/dev/null 2>&1 || true' EXIT
docker run -d --name "$name" -p 127.0.0.1::5555 -v "$name:/data" "$tag" >/dev/null
port=$(docker port "$name" 5555/tcp | head -1 | sed 's/.*://')
for _ in $(seq 50); do
  docker logs "$name" 2>&1 | grep -q "listening on" && break
  sleep 0.1
done
reply=$(printf '{"type":"hello","name":"probe"}\n{"type":"say","text":"from the check"}\n' |
  timeout 5 python3 -c '
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
s.sendall(sys.stdin.buffer.read())
data = b""
while b"from the check" not in data:
    chunk = s.recv(4096)
    if not chunk:
        break
    data += chunk
print(data.decode())' "$port")
grep -q '"type":"welcome"' <<<"$reply" || { echo "no welcome: $reply" >&2; exit 1; }
docker exec "$name" grep -q "from the check" /data/messages.csv
[ "$(docker exec "$name" id -u)" != 0 ] || { echo "runs as root" >&2; exit 1; }
echo "docker-build.sh: $tag serves, logs to its volume, and runs as $(docker exec "$name" id -un)"
