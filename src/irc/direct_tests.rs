//! The broadcaster's direct path to an IRC socket ([`IrcStream::direct`]): when it is allowed,
//! and that a line it wrote only part of is finished before anything else, on a real loopback
//! socket.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::state::Settings;
use super::{IrcStream, lock};
use crate::proto::{self, ChatMessage, Kind, Mode, ServerMsg, Standing};
use crate::tls::Transport;

/// An IRC stream on the server's end of a loopback connection, and the client's end.
fn pair() -> (IrcStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let (server, _) = listener.accept().unwrap();
    let settings = Settings {
        tls: false,
        version: "chatroom 0.1.0".into(),
        max_rooms: 100,
    };
    let transport = Transport::Plain(Arc::new(server));
    let stream = IrcStream::new(
        transport,
        settings,
        Instant::now() + Duration::from_secs(10),
    );
    (stream, client)
}

fn json(msg: &ServerMsg) -> Vec<u8> {
    proto::encode(msg, Mode::Json)
}

fn welcome() -> ServerMsg {
    ServerMsg::Welcome {
        conn: 1,
        name: "ivy".into(),
        room: "lobby".into(),
        members: 1,
        role: Standing::Guest,
        server: "chatroom 0.1.0".into(),
    }
}

fn said(text: &str) -> Vec<u8> {
    let m = ServerMsg::Message(ChatMessage {
        id: 1,
        ts: "2026-11-26T10:00:00.000Z".into(),
        room: "lobby".into(),
        from: "jay".into(),
        to: None,
        kind: Kind::Message,
        text: text.into(),
        history: false,
    });
    proto::encode(&m, Mode::Irc)
}

/// Registers the client as `ivy`: NICK and USER in, the welcome out.
fn register(irc: &IrcStream) {
    let mut requests = Vec::new();
    for line in ["NICK ivy", "USER ivy 0 * :Ivy"] {
        super::client::line(&mut lock(&irc.state), line.as_bytes(), &mut requests);
    }
    lock(&irc.state).out.clear();
    irc.write_lines(&json(&welcome())).unwrap();
}

/// Reads from `client` until `want` bytes have come.
fn read_n(client: &mut TcpStream, want: usize) -> String {
    let mut got = vec![0u8; want];
    client
        .read_exact(&mut got)
        .expect("the bytes the server sent");
    String::from_utf8(got).unwrap()
}

#[test]
fn the_direct_path_opens_only_for_irc_lines_once_registered() {
    let (irc, mut client) = pair();
    let line = said("hello");
    assert!(irc.direct(&line).is_none(), "not registered yet");
    register(&irc);
    assert!(irc.direct(&line).is_some());
    assert!(irc.direct(&json(&ServerMsg::Ping { id: 1 })).is_none());
    let held = irc.direct(&line).unwrap();
    assert!(irc.direct(&line).is_none(), "one holder of the send lock");
    drop(held);
    // Lines released by registration and not yet written go first.
    lock(&irc.state).numeric("NOTICE", ":released");
    assert!(
        irc.direct(&line).is_none(),
        "ahead of lines still to be written"
    );
    irc.flush_out(None).unwrap();
    assert!(irc.direct(&line).is_some());
    // The welcome burst reached the client.
    let mut first = [0u8; 16];
    client.read_exact(&mut first).unwrap();
    assert_eq!(&first, b":chatroom 001 iv");
}

#[test]
fn a_line_written_in_part_is_finished_before_anything_else() {
    let (irc, mut client) = pair();
    register(&irc);
    // Drain the welcome burst: everything up to the MOTD's end.
    let mut burst = Vec::new();
    let mut byte = [0u8; 1];
    while !String::from_utf8_lossy(&burst).contains(" 422 ivy ") || burst.last() != Some(&b'\n') {
        client.read_exact(&mut byte).unwrap();
        burst.push(byte[0]);
    }

    // The broadcaster writes 10 bytes of a line and owes the rest, as after a partial send.
    let line = said("first line");
    let mut permit = irc.direct(&line).expect("direct");
    let Transport::Plain(sock) = &irc.inner else {
        unreachable!()
    };
    use std::io::Write;
    (&**sock).write_all(&line[..10]).unwrap();
    permit.owe(line.len() - 10);
    drop(permit);
    assert!(
        irc.direct(&said("x")).is_none(),
        "nothing overtakes what is owed"
    );

    // The reading side answers a PING meanwhile: its line waits behind the rest.
    lock(&irc.state).numeric("PONG", "chatroom :x");
    let pong = lock(&irc.state).out.clone();
    irc.flush_out(None).unwrap();
    // The writer is given the rest, then an event to translate and a line to pass.
    let mut more = line[10..].to_vec();
    more.extend_from_slice(&json(&ServerMsg::Ping { id: 9 }));
    more.extend_from_slice(&said("second line"));
    irc.write_lines(&more).unwrap();

    let expected = [
        line.clone(),
        pong,
        b"PING :9\r\n".to_vec(),
        said("second line"),
    ]
    .concat();
    let got = read_n(&mut client, expected.len());
    assert_eq!(got, String::from_utf8(expected).unwrap());
    assert!(irc.direct(&said("x")).is_some(), "nothing owed any more");
}
