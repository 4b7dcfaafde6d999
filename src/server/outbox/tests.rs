use super::*;

fn b(s: &str) -> Bytes {
    Arc::from(s.as_bytes())
}

/// A connected pair: (the server's side, the client's side), with read timeouts.
fn sockets() -> (Arc<TcpStream>, TcpStream) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    (Arc::new(server), client)
}

/// A sink over `socket` whose writer threads are counted in `spawned`.
fn sink(transport: Transport, idle: Duration) -> (Sink, Arc<AtomicUsize>) {
    let spawned = Arc::new(AtomicUsize::new(0));
    let count = spawned.clone();
    let sink = Sink {
        conn: 1,
        transport: Arc::new(transport),
        idle,
        spawn: Box::new(move |work| {
            count.fetch_add(1, Ordering::SeqCst);
            std::thread::Builder::new().spawn(work).map(drop)
        }),
    };
    (sink, spawned)
}

fn plain(server: &Arc<TcpStream>, limit: usize, idle: Duration) -> (Outbox, Arc<AtomicUsize>) {
    let (sink, spawned) = sink(Transport::Plain(server.clone()), idle);
    (outbox(sink, limit, None), spawned)
}

/// Waits (bounded) until `cond` holds.
fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::yield_now();
    }
}

/// Runs `send` on another thread and fails if it blocks: the broadcaster must never
/// wait for a client.
fn send_without_blocking(
    tx: &Outbox,
    bytes: &Bytes,
    server: &Arc<TcpStream>,
) -> Result<(), PushError> {
    let (done_tx, done) = crossbeam_channel::bounded(1);
    let (tx, bytes) = (tx.clone(), bytes.clone());
    std::thread::spawn(move || {
        let _ = done_tx.send(tx.send(&bytes));
    });
    match done.recv_timeout(Duration::from_secs(5)) {
        Ok(result) => result,
        Err(_) => {
            // Unblock the stuck send so the thread can end, then fail.
            let _ = server.shutdown(Shutdown::Both);
            panic!("send blocked on a client that does not read");
        }
    }
}

/// Fills `server`'s socket until it takes nothing more.
fn fill(server: &TcpStream) {
    let chunk = vec![b'f'; 64 * 1024];
    let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
    while SockRef::from(server).send_with_flags(&chunk, flags).is_ok() {}
}

#[test]
fn the_bound_counts_waiting_messages() {
    let one = charge(b"a");
    let (tx, rx) = detached(2 * one, None);
    assert_eq!(tx.push(b("a")), Ok(()));
    assert_eq!(tx.push(b("b")), Ok(()));
    assert_eq!(tx.push(b("c")), Err(PushError::Full));
    assert_eq!(&*rx.recv().unwrap(), b"a");
    // Taken but not yet written still counts.
    assert_eq!(tx.push(b("d")), Err(PushError::Full));
    rx.written(one);
    assert_eq!(tx.push(b("d")), Ok(()));
    assert_eq!(&*rx.try_recv().unwrap(), b"b");
    assert_eq!(&*rx.try_recv().unwrap(), b"d");
    rx.written(2 * one);
    assert!(rx.try_recv().is_err());
    // An empty outbox takes a push bigger than the limit; a second one is refused.
    assert_eq!(tx.push(b("a big batch")), Ok(()));
    assert_eq!(tx.push(b("x")), Err(PushError::Full));
}

/// An idle plain connection has no writer: what the socket takes at once never starts one.
#[test]
fn an_idle_plain_outbox_writes_itself_and_starts_no_thread() {
    let (server, client) = sockets();
    let (tx, spawned) = plain(&server, 1024, WRITER_IDLE);
    for line in ["one\n", "two\n", "three\n"] {
        tx.send(&b(line)).unwrap();
    }
    assert_eq!(spawned.load(Ordering::SeqCst), 0);
    assert!(!tx.has_drainer());
    let mut got = [0u8; 14];
    (&client).read_exact(&mut got).unwrap();
    assert_eq!(&got, b"one\ntwo\nthree\n");
}

/// The writer's whole life: a client that stops reading gets one (the socket is full), is
/// refused at the bound; once it reads again it gets everything, in order, and the writer
/// ends after the idle time; the next message goes straight to the socket again.
#[test]
fn a_writer_starts_when_behind_and_ends_once_caught_up_and_order_is_kept() {
    let (server, client) = sockets();
    let idle = Duration::from_millis(100);
    let (tx, spawned) = plain(&server, 256 * 1024, idle);
    let mut n = 0u32;
    let full = loop {
        let line = b(&format!("line {n:08} {}\n", "x".repeat(100)));
        match send_without_blocking(&tx, &line, &server) {
            Ok(()) => n += 1,
            Err(e) => break e,
        }
        assert!(n < 1_000_000, "never full");
    };
    assert_eq!(full, PushError::Full, "refused at the bound");
    assert_eq!(
        spawned.load(Ordering::SeqCst),
        1,
        "one writer, started once"
    );
    assert!(tx.has_drainer());
    let mut lines = std::io::BufReader::new(&client);
    let mut line = String::new();
    for i in 0..n {
        line.clear();
        std::io::BufRead::read_line(&mut lines, &mut line).unwrap();
        assert!(
            line.starts_with(&format!("line {i:08} ")),
            "line {i}: {line:?}"
        );
    }
    eventually("the writer ends once idle", || !tx.has_drainer());
    tx.send(&b("after\n")).unwrap();
    line.clear();
    std::io::BufRead::read_line(&mut lines, &mut line).unwrap();
    assert_eq!(line, "after\n");
    assert_eq!(
        spawned.load(Ordering::SeqCst),
        1,
        "no writer for an idle client"
    );
}

/// A push that races the writer's ending is still written: either the writer sees it, or
/// the push starts a new one.
#[test]
fn pushes_racing_the_writers_end_are_never_stranded() {
    let (server, client) = sockets();
    let (tx, _spawned) = plain(&server, 1 << 20, Duration::from_micros(50));
    let mut lines = std::io::BufReader::new(&client);
    let mut line = String::new();
    for i in 0..2_000 {
        tx.push(b(&format!("{i}\n"))).unwrap();
        if i % 7 == 0 {
            std::thread::yield_now();
        }
        line.clear();
        std::io::BufRead::read_line(&mut lines, &mut line).unwrap();
        assert_eq!(line, format!("{i}\n"));
    }
}

/// Two threads sending at once (the broadcaster and the connection's reader) never split
/// each other's lines: when the socket takes only part of one, its rest is queued before
/// anything the other thread queues meanwhile. The test pushes from another thread in
/// exactly that window.
#[test]
fn a_partial_write_is_never_split_by_another_threads_push() {
    let (server, client) = sockets();
    let (tx, _) = plain(&server, 64 << 20, WRITER_IDLE);
    let other = tx.clone();
    *tx.shared.after_partial.lock().unwrap() = Some(Box::new(move || {
        let other = other.clone();
        let (done_tx, done) = crossbeam_channel::bounded(1);
        std::thread::spawn(move || {
            let _ = done_tx.send(other.push(b("PING\n")));
        });
        // Done at once if nothing holds it back: then it is queued before the rest.
        let _ = done.recv_timeout(Duration::from_millis(200));
    }));
    let big: Bytes = Arc::from([vec![b'M'; 16 << 20], b"\n".to_vec()].concat());
    send_without_blocking(&tx, &big, &server).unwrap();
    let mut lines = std::io::BufReader::new(&client);
    let mut line = Vec::new();
    std::io::BufRead::read_until(&mut lines, b'\n', &mut line).unwrap();
    assert!(
        line[..] == big[..],
        "the first line ({} bytes) was split",
        line.len()
    );
    line.clear();
    std::io::BufRead::read_until(&mut lines, b'\n', &mut line).unwrap();
    assert_eq!(line, b"PING\n");
}

/// The reader's end: with no writer running it drains on its own thread until the last
/// sender is gone, then closes; the peer gets every byte, then end of file.
#[test]
fn the_last_drainer_writes_everything_then_closes() {
    let (server, client) = sockets();
    let (tx, _) = plain(&server, 1 << 20, WRITER_IDLE);
    let hub = tx.clone();
    let reader = std::thread::spawn(move || tx.finish());
    hub.push(b("last words\n")).unwrap();
    drop(hub);
    let mut got = Vec::new();
    (&client).read_to_end(&mut got).unwrap();
    assert_eq!(got, b"last words\n");
    reader.join().unwrap();
}

#[test]
fn a_partial_send_queues_exactly_the_rest() {
    let (server, client) = sockets();
    let big: Bytes = (0..16 * 1024 * 1024u32)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<u8>>()
        .into();
    let (tx, spawned) = plain(&server, 64 * 1024 * 1024, WRITER_IDLE);
    send_without_blocking(&tx, &big, &server).unwrap();
    assert_eq!(
        spawned.load(Ordering::SeqCst),
        1,
        "the rest went to a writer"
    );
    let mut got = vec![0u8; big.len()];
    (&client).read_exact(&mut got).unwrap();
    assert!(got[..] == big[..], "the bytes differ");
    eventually("all written", || {
        tx.shared.queued.load(Ordering::Acquire) == 0
    });
}

#[test]
fn a_full_socket_queues_the_whole_message() {
    let (server, _client) = sockets();
    fill(&server);
    // A writer that never runs, so the queue can be looked at.
    let (mut sink, _) = sink(Transport::Plain(server.clone()), WRITER_IDLE);
    sink.spawn = Box::new(|_| Ok(()));
    let tx = outbox(sink, 1024, None);
    send_without_blocking(&tx, &b("whole\n"), &server).unwrap();
    assert_eq!(&*tx.shared.rx.try_recv().unwrap(), b"whole\n");
    assert_eq!(tx.shared.queued.load(Ordering::Acquire), charge(b"whole\n"));
}

#[test]
fn a_dead_socket_is_reported_closed_and_nothing_is_queued() {
    let (server, _client) = sockets();
    server.shutdown(Shutdown::Write).unwrap();
    let (tx, spawned) = plain(&server, 1024, WRITER_IDLE);
    assert_eq!(tx.send(&b("lost\n")), Err(PushError::Closed));
    assert!(tx.shared.rx.try_recv().is_err());
    assert_eq!(tx.shared.queued.load(Ordering::Acquire), 0);
    assert_eq!(spawned.load(Ordering::SeqCst), 0);
}

/// A writer whose write fails marks the outbox dead: later pushes are refused, not queued
/// for nobody.
#[test]
fn a_failed_write_refuses_later_pushes() {
    let (server, client) = sockets();
    fill(&server);
    let (tx, _) = plain(&server, 1 << 20, WRITER_IDLE);
    tx.send(&b("queued\n")).unwrap();
    // The peer resets: the writer's write fails.
    SockRef::from(&client)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(client);
    eventually("the push is refused", || {
        tx.push(b("more\n")) == Err(PushError::Closed)
    });
}

/// No thread to be had: the client is refused, not left waiting.
#[test]
fn no_writer_thread_means_the_connection_ends() {
    let (server, mut client) = sockets();
    fill(&server);
    let (mut sink, _) = sink(Transport::Plain(server.clone()), WRITER_IDLE);
    sink.spawn = Box::new(|_| Err(io::Error::other("no threads left")));
    let tx = outbox(sink, 1 << 20, None);
    assert_eq!(tx.send(&b("x\n")), Err(PushError::Closed));
    assert_eq!(tx.push(b("y\n")), Err(PushError::Closed));
    let mut buf = vec![0u8; 1 << 16];
    // The socket was reset: reading ends in an error or end of file, not a timeout.
    loop {
        match client.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => continue,
            Err(e) => {
                assert!(
                    !matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ),
                    "{e}"
                );
                break;
            }
        }
    }
}

/// Many small pushes cost more than their bytes: the bound counts what they hold.
#[test]
fn small_pushes_are_charged_their_overhead() {
    let (tx, _rx) = detached(100 * (2 + PUSH_OVERHEAD), None);
    let mut n = 0;
    while tx.push(b("!\n")).is_ok() {
        n += 1;
    }
    assert_eq!(n, 100);
}

/// The connections of one address share a budget: past it, a push to any of them fails,
/// and what a closed connection still held is given back.
#[test]
fn an_address_budget_bounds_all_its_outboxes() {
    let one = charge(b"x");
    let budget = AddressBudget {
        queued: Arc::new(AtomicUsize::new(0)),
        limit: 3 * one,
    };
    let (first, arx) = detached(100 * one, Some(budget.clone()));
    let (second, brx) = detached(100 * one, Some(budget.clone()));
    assert_eq!(first.push(b("x")), Ok(()));
    assert_eq!(first.push(b("x")), Ok(()));
    assert_eq!(second.push(b("x")), Ok(()));
    assert_eq!(
        second.push(b("x")),
        Err(PushError::Full),
        "the address is full"
    );
    arx.recv().unwrap();
    arx.written(one);
    assert_eq!(second.push(b("x")), Ok(()));
    assert_eq!(budget.queued.load(Ordering::Acquire), 3 * one);
    drop((arx, first));
    assert_eq!(
        budget.queued.load(Ordering::Acquire),
        2 * one,
        "first's last push given back"
    );
    drop((brx, second));
    assert_eq!(budget.queued.load(Ordering::Acquire), 0);
}

/// TLS: every byte goes through the writer, which stays once started.
#[test]
fn a_tls_outbox_never_writes_itself_and_ends_its_socket() {
    let (server, mut client) = sockets();
    let config = crate::tls::test_server_config();
    let tls = crate::tls::TlsStream::server(config, server.clone()).unwrap();
    let (mut sink, _) = sink(Transport::Tls(Box::new(tls)), WRITER_IDLE);
    sink.spawn = Box::new(|_| Ok(()));
    let tx = outbox(sink, 1024, None);
    tx.send(&b("via the writer\n")).unwrap();
    assert_eq!(&*tx.shared.rx.try_recv().unwrap(), b"via the writer\n");
    tx.abandon();
    let mut buf = [0u8; 8];
    // Nothing was written to the socket, and it was reset.
    assert!(client.read(&mut buf).map_or(true, |n| n == 0));
}

/// One push larger than the bound still fits an empty outbox (and an address budget with
/// nothing queued): a big batch alone never makes a client slow. The next one waits for it
/// to be written.
#[test]
fn an_empty_outbox_takes_one_push_of_any_size() {
    let big: Bytes = Arc::from(vec![b'x'; 1000]);
    let budget = AddressBudget {
        queued: Arc::new(AtomicUsize::new(0)),
        limit: 16,
    };
    for address in [None, Some(budget)] {
        let (tx, rx) = detached(16, address);
        assert_eq!(tx.push(big.clone()), Ok(()));
        assert_eq!(tx.push(b("y")), Err(PushError::Full));
        let taken = rx.try_recv().unwrap();
        rx.written(charge(&taken));
        assert_eq!(tx.push(big.clone()), Ok(()));
    }
}
