use super::*;

fn head(lines: &[(&str, &str)]) -> Head {
    Head {
        method: "GET".into(),
        target: "/ws".into(),
        minor: 1,
        headers: lines
            .iter()
            .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
            .collect(),
    }
}

#[test]
fn the_page_s_own_origin_may_upgrade_and_others_only_when_allowed() {
    let same = head(&[
        ("host", "chat.example.org"),
        ("origin", "https://chat.example.org"),
    ]);
    assert_eq!(origin_allowed(&same, true, &[]), Ok(()));
    // The same host over the other scheme is another origin.
    assert!(origin_allowed(&same, false, &[]).is_err());
    let ported = head(&[
        ("host", "Chat.Example.org:443"),
        ("origin", "https://chat.example.org/"),
    ]);
    assert_eq!(origin_allowed(&ported, true, &[]), Ok(()));
    let evil = head(&[
        ("host", "chat.example.org"),
        ("origin", "https://evil.example"),
    ]);
    assert_eq!(
        origin_allowed(&evil, true, &[]),
        Err("https://evil.example".into())
    );
    assert_eq!(
        origin_allowed(&evil, true, &["https://EVIL.example".into()]),
        Ok(())
    );
    let null = head(&[("host", "chat.example.org"), ("origin", "null")]);
    assert!(origin_allowed(&null, true, &[]).is_err());
    // No Origin: not a browser page, nothing to forge.
    assert_eq!(origin_allowed(&head(&[("host", "x")]), false, &[]), Ok(()));
}

#[test]
fn origins_are_scheme_host_and_port_only() {
    for good in [
        "https://chat.example.org",
        "http://127.0.0.1:8080",
        "http://[::1]:80",
    ] {
        assert!(is_origin(good), "{good}");
    }
    for bad in [
        "chat.example.org",
        "https://",
        "https://a/b",
        "ftp://a",
        "https://a b",
        "https://u@a",
        "*",
    ] {
        assert!(!is_origin(bad), "{bad}");
    }
}

#[test]
fn a_trusted_proxy_s_last_forwarded_address_is_the_client_s() {
    let peer: SocketAddr = "127.0.0.1:4000".parse().unwrap();
    let h = head(&[("x-forwarded-for", "10.0.0.9, 203.0.113.7")]);
    assert_eq!(client_address(&h, peer, false), Ok(peer));
    assert_eq!(
        client_address(&h, peer, true),
        Ok("203.0.113.7:0".parse().unwrap())
    );
    // A proxy that appends a line of its own: the last entry of the last line counts.
    let two_lines = head(&[
        ("x-forwarded-for", "9.9.9.9"),
        ("x-forwarded-for", "203.0.113.8"),
    ]);
    assert_eq!(
        client_address(&two_lines, peer, true),
        Ok("203.0.113.8:0".parse().unwrap())
    );
    let v6 = head(&[("x-forwarded-for", "2001:db8::1")]);
    assert_eq!(
        client_address(&v6, peer, true).unwrap().ip(),
        "2001:db8::1".parse::<IpAddr>().unwrap()
    );
    let mapped = head(&[("x-forwarded-for", "::ffff:192.0.2.1")]);
    assert_eq!(
        client_address(&mapped, peer, true).unwrap().ip(),
        "192.0.2.1".parse::<IpAddr>().unwrap()
    );
    assert_eq!(client_address(&head(&[]), peer, true), Ok(peer));
    assert!(client_address(&head(&[("x-forwarded-for", "evil")]), peer, true).is_err());
}

#[test]
fn built_in_files_have_stable_distinct_validators() {
    assert_eq!(etag(b"a"), etag(b"a"));
    assert_ne!(etag(b"a"), etag(b"b"));
    assert_eq!(etag(b"").len(), 18);
}
