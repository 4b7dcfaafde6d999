# chat-server in a container: non-root, data as a volume, settings by flags or environment.
#   docker build -t chatroom .
#   docker run -d --name chat -p 5555:5555 -v chatroom-data:/data chatroom
#   docker exec -it chat chat-server --data-dir /data users add boss --admin
#   docker kill -s HUP chat        # reload users, bans and the certificate
# scripts/docker-build.sh builds it and checks that it serves.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
RUN cargo build --release --locked --bins

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin chatroom \
    && install -d -o chatroom -g chatroom -m 700 /data
COPY --from=build /src/target/release/chat-server /src/target/release/chat-log /usr/local/bin/
USER chatroom
VOLUME ["/data"]
# 8080: the web client, when CHAT_WEB=0.0.0.0:8080 is set (docker run -e CHAT_WEB=... -p 8080:8080).
EXPOSE 5555 8080
ENV RUST_LOG=info CHAT_DATA_DIR=/data CHAT_BIND=0.0.0.0:5555
ENTRYPOINT ["/usr/local/bin/chat-server"]
