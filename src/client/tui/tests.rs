//! The full-screen client without a terminal: keys and server events in, ratatui's
//! `TestBackend` screen out.

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::style::{Color, Modifier};
use serde_json::{Value, json};
use unicode_width::UnicodeWidthStr;

use super::app::{App, Bell, ConnState, PaneKind};
use super::conn::NetEvent;
use super::input::{Edit, Editor};
use super::render::{name_color, render};
use crate::proto::ServerMsg;

const TS: &str = "2026-11-23T16:04:05.123Z";

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

fn ctrl(c: char) -> KeyEvent {
    KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL)
}

fn alt(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::ALT)
}

fn typed(editor: &mut Editor, text: &str) {
    for c in text.chars() {
        editor.handle_key(key(KeyCode::Char(c)));
    }
}

fn type_in(app: &mut App, text: &str) {
    for c in text.chars() {
        app.handle_key(key(KeyCode::Char(c)));
    }
}

fn event(v: Value) -> ServerMsg {
    serde_json::from_value(v).expect("a server event")
}

fn message(id: u64, room: &str, from: &str, text: &str) -> ServerMsg {
    event(
        json!({"type":"message","id":id,"ts":TS,"room":room,"from":from,
                 "kind":"message","text":text}),
    )
}

fn history(id: u64, room: &str, from: &str, text: &str) -> ServerMsg {
    event(
        json!({"type":"message","id":id,"ts":TS,"room":room,"from":from,
                 "kind":"message","text":text,"history":true}),
    )
}

/// alice in the lobby with bob and carol.
fn lobby() -> App {
    let mut app = App::new("127.0.0.1:5555", "chatroom 0.1.0", "alice", "lobby");
    app.handle_server(event(
        json!({"type":"joined","ts":TS,"room":"lobby","name":"alice"}),
    ));
    app.handle_server(event(
        json!({"type":"users","room":"lobby","users":["alice","bob","carol"]}),
    ));
    app.take_outgoing();
    app
}

fn join(app: &mut App, room: &str) {
    app.handle_server(event(
        json!({"type":"joined","ts":TS,"room":room,"name":"alice"}),
    ));
    app.handle_server(event(
        json!({"type":"users","room":room,"users":["alice","dave"]}),
    ));
}

fn draw(app: &mut App, width: u16, height: u16) -> Buffer {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|frame| render(app, frame)).unwrap();
    terminal.backend().buffer().clone()
}

/// The screen's rows as text; a wide character's second cell is not repeated.
fn rows(buffer: &Buffer) -> Vec<String> {
    let area = buffer.area;
    (0..area.height)
        .map(|y| {
            let mut row = String::new();
            let mut x = 0;
            while x < area.width {
                let symbol = buffer[(x, y)].symbol();
                row.push_str(symbol);
                x += (symbol.width() as u16).max(1);
            }
            row.trim_end().to_string()
        })
        .collect()
}

fn screen(buffer: &Buffer) -> String {
    rows(buffer).join("\n")
}

/// The position of the first cell where `needle` starts on the screen.
fn find(buffer: &Buffer, needle: &str) -> (u16, u16) {
    for y in 0..buffer.area.height {
        let mut x = 0;
        while x < buffer.area.width {
            let rest: String = (x..buffer.area.width)
                .map(|x| buffer[(x, y)].symbol())
                .collect();
            if rest.starts_with(needle) {
                return (x, y);
            }
            x += 1;
        }
    }
    panic!("{needle:?} not on screen:\n{}", screen(buffer));
}

#[test]
fn the_layout_has_scrollback_panel_status_and_input() {
    let mut app = lobby();
    app.handle_server(message(1, "lobby", "bob", "hello alice"));
    let buffer = draw(&mut app, 80, 12);
    let rows = rows(&buffer);
    let text = rows.join("\n");
    assert!(rows[0].ends_with("│Rooms"), "{text}");
    assert!(rows[1].ends_with("│1 #lobby"), "{text}");
    assert!(text.contains("│Members (3)"), "{text}");
    assert!(rows[9].contains("bob: hello alice"), "{text}");
    assert_eq!(
        rows[10], " 127.0.0.1:5555 │ alice │ #lobby │ connected",
        "{text}"
    );
    assert_eq!(rows[11], ">", "{text}");
}

#[test]
fn a_message_arriving_while_typing_leaves_the_input_alone() {
    let mut app = lobby();
    type_in(&mut app, "half a thou");
    app.handle_key(key(KeyCode::Left));
    app.handle_server(message(1, "lobby", "bob", "interrupting"));
    assert_eq!(app.editor.text(), "half a thou");
    assert_eq!(app.editor.cursor(), "half a tho".len());
    let buffer = draw(&mut app, 80, 10);
    let rows = rows(&buffer);
    assert_eq!(rows[9], "> half a thou");
    assert!(rows[7].contains("bob: interrupting"), "{}", rows.join("\n"));
    app.handle_key(key(KeyCode::End));
    type_in(&mut app, "ght");
    app.handle_key(key(KeyCode::Enter));
    assert_eq!(
        app.take_outgoing(),
        vec![json!({"type":"say","room":"lobby","text":"half a thought"})]
    );
    assert_eq!(app.editor.text(), "");
}

#[test]
fn unread_and_mention_counts_show_in_the_panel_and_clear_on_switching() {
    let mut app = lobby();
    join(&mut app, "ops");
    assert_eq!(app.current, 1, "a joined room is shown");
    app.handle_server(message(1, "lobby", "bob", "anyone?"));
    app.handle_server(message(2, "lobby", "bob", "alice: ping"));
    app.handle_server(message(3, "lobby", "bob", "malice is not a mention"));
    assert_eq!((app.panes[0].unread, app.panes[0].mentions), (3, 1));
    let buffer = draw(&mut app, 80, 12);
    assert!(
        rows(&buffer)[1].ends_with("│1 #lobby 3 @1"),
        "{}",
        screen(&buffer)
    );
    let (x, y) = find(&buffer, "@1");
    assert_eq!(buffer[(x, y)].fg, Color::Yellow);
    // Alt+1 shows the lobby, tells the server, and clears its counts.
    app.handle_key(alt(KeyCode::Char('1')));
    assert_eq!(app.current, 0);
    assert_eq!(
        app.take_outgoing(),
        vec![json!({"type":"switch","room":"lobby"})]
    );
    let buffer = draw(&mut app, 80, 12);
    assert!(
        rows(&buffer)[1].ends_with("│1 #lobby"),
        "{}",
        screen(&buffer)
    );
    let (x, y) = find(&buffer, "1 #lobby");
    assert!(buffer[(x, y)].modifier.contains(Modifier::REVERSED));
}

#[test]
fn wide_characters_wrap_by_cells() {
    let mut app = lobby();
    // 20 CJK characters: 40 cells, in a 30-cell scrollback (too narrow for the panel).
    let text = "你好世界你好世界你好世界你好世界你好世界";
    app.handle_server(message(1, "lobby", "bob", text));
    let buffer = draw(&mut app, 30, 8);
    let rows = rows(&buffer);
    let shown: String = rows[..6]
        .iter()
        .flat_map(|r| r.chars().filter(|c| !c.is_ascii()))
        .collect();
    assert_eq!(shown, text, "{}", rows.join("\n"));
    for row in &rows {
        assert!(row.width() <= 30, "{row:?} is wider than the screen");
    }
    // The continuation is indented under the text, and no character is cut in half.
    let first = rows.iter().position(|r| r.contains("bob:")).unwrap();
    assert!(
        rows[first + 1].starts_with("           "),
        "{}",
        rows.join("\n")
    );
    // The cursor sits after wide characters typed in the input, counted in cells.
    type_in(&mut app, "日本");
    let mut terminal = Terminal::new(TestBackend::new(30, 8)).unwrap();
    terminal.draw(|frame| render(&mut app, frame)).unwrap();
    assert_eq!(
        terminal.get_cursor_position().unwrap(),
        ratatui::layout::Position::new(6, 7)
    );
}

#[test]
fn names_have_stable_colours_and_history_is_dimmed_above_a_divider() {
    let mut app = lobby();
    app.handle_server(history(1, "lobby", "carol", "old news"));
    app.handle_server(event(
        json!({"type":"history_end","room":"lobby","count":1}),
    ));
    app.handle_server(message(2, "lobby", "bob", "fresh"));
    app.handle_server(event(
        json!({"type":"message","id":3,"ts":TS,"room":"lobby","from":"bob","kind":"action",
               "text":"waves at alice"}),
    ));
    let buffer = draw(&mut app, 80, 12);
    let text = screen(&buffer);
    let old = find(&buffer, "carol");
    assert_eq!(buffer[old].fg, name_color("carol"));
    assert!(buffer[old].modifier.contains(Modifier::DIM), "{text}");
    let divider = find(&buffer, " live ");
    assert!(divider.1 > old.1, "{text}");
    let fresh = find(&buffer, "bob: fresh");
    assert!(fresh.1 > divider.1, "{text}");
    assert_eq!(buffer[fresh].fg, name_color("bob"));
    assert_eq!(name_color("Bob"), name_color("bob"), "case aside");
    assert!(!buffer[fresh].modifier.contains(Modifier::DIM));
    // An emote is italic, and our name in it is highlighted.
    let action = find(&buffer, "* bob waves");
    assert!(buffer[action].modifier.contains(Modifier::ITALIC), "{text}");
    let (x, y) = find(&buffer, "at alice");
    assert_eq!(buffer[(x + 3, y)].bg, Color::Yellow, "{text}");
    assert_eq!(buffer[(x, y)].bg, Color::Reset, "{text}");
}

#[test]
fn page_up_scrolls_back_and_marks_new_messages_below() {
    let mut app = lobby();
    for i in 1..=40 {
        app.handle_server(message(i, "lobby", "bob", &format!("line {i}")));
    }
    let buffer = draw(&mut app, 80, 12);
    assert!(screen(&buffer).contains("line 40"));
    app.handle_key(key(KeyCode::PageUp));
    app.handle_server(message(41, "lobby", "bob", "line 41"));
    let buffer = draw(&mut app, 80, 12);
    let text = screen(&buffer);
    assert!(!text.contains("line 40"), "{text}");
    assert!(text.contains("line 22"), "{text}");
    assert!(text.contains("1 new below"), "{text}");
    app.handle_key(key(KeyCode::PageUp));
    app.handle_key(key(KeyCode::PageDown));
    let buffer = draw(&mut app, 80, 12);
    assert!(screen(&buffer).contains("line 22"), "{}", screen(&buffer));
    app.handle_key(key(KeyCode::PageDown));
    app.handle_key(key(KeyCode::PageDown));
    let buffer = draw(&mut app, 80, 12);
    let text = screen(&buffer);
    assert!(text.contains("line 41"), "{text}");
    assert!(!text.contains("new below"), "{text}");
}

#[test]
fn a_message_is_shown_once_whatever_repeats_it() {
    let mut app = lobby();
    app.handle_server(message(7, "lobby", "bob", "once"));
    app.handle_server(history(7, "lobby", "bob", "once"));
    app.handle_server(event(
        json!({"type":"history_end","room":"lobby","count":1}),
    ));
    let buffer = draw(&mut app, 80, 10);
    assert_eq!(screen(&buffer).matches("once").count(), 1);
    assert!(!screen(&buffer).contains(" live "), "no history was new");
}

#[test]
fn a_reconnect_rejoins_the_rooms_and_returns_to_the_one_shown() {
    let mut app = lobby();
    join(&mut app, "ops");
    join(&mut app, "dev");
    app.handle_key(ctrl('p'));
    assert_eq!(app.current, 1);
    app.take_outgoing();
    app.handle_net(NetEvent::Down {
        reason: "gone".into(),
        attempt: 1,
        retry_in: std::time::Duration::from_millis(250),
    });
    assert!(matches!(app.conn, ConnState::Reconnecting { .. }));
    let buffer = draw(&mut app, 80, 10);
    assert!(screen(&buffer).contains("reconnecting (attempt 1"));
    // Typed while disconnected: kept, not lost.
    type_in(&mut app, "wait for me");
    app.handle_key(key(KeyCode::Enter));
    assert!(app.take_outgoing().is_empty());
    assert_eq!(app.editor.text(), "wait for me");
    app.handle_net(NetEvent::Up {
        name: "alice".into(),
        server: "chatroom".into(),
        room: "lobby".into(),
    });
    assert_eq!(
        app.take_outgoing(),
        vec![
            json!({"type":"join","room":"ops"}),
            json!({"type":"join","room":"dev"}),
            json!({"type":"switch","room":"ops"}),
        ]
    );
    assert_eq!(app.conn, ConnState::Connected);
}

#[test]
fn rooms_switch_with_commands_and_keys() {
    let mut app = lobby();
    join(&mut app, "ops");
    app.take_outgoing();
    type_in(&mut app, "/switch lobby");
    app.handle_key(key(KeyCode::Enter));
    assert_eq!(app.current, 0);
    app.handle_key(ctrl('n'));
    assert_eq!(app.current, 1);
    app.handle_key(ctrl('n'));
    assert_eq!(app.current, 0, "wraps around");
    assert_eq!(
        app.take_outgoing(),
        vec![
            json!({"type":"switch","room":"lobby"}),
            json!({"type":"switch","room":"ops"}),
            json!({"type":"switch","room":"lobby"}),
        ]
    );
    type_in(&mut app, "/switch nowhere");
    app.handle_key(key(KeyCode::Enter));
    assert!(app.take_outgoing().is_empty());
    assert!(screen(&draw(&mut app, 80, 10)).contains("you are not in #nowhere"));
    type_in(&mut app, "/join #new");
    app.handle_key(key(KeyCode::Enter));
    assert_eq!(
        app.take_outgoing(),
        vec![json!({"type":"join","room":"new"})]
    );
}

#[test]
fn direct_messages_get_their_own_pane_and_ring_the_bell() {
    let mut app = lobby();
    app.handle_server(event(
        json!({"type":"message","id":1,"ts":TS,"from":"bob","to":"alice","kind":"direct",
               "text":"psst"}),
    ));
    assert_eq!(app.panes[1].kind, PaneKind::Direct("bob".into()));
    assert_eq!((app.panes[1].unread, app.panes[1].mentions), (1, 1));
    assert!(app.take_bell());
    app.handle_server(message(2, "lobby", "bob", "not for you"));
    assert!(!app.take_bell(), "the default rings on mentions only");
    app.handle_key(alt(KeyCode::Char('2')));
    type_in(&mut app, "hi bob");
    app.handle_key(key(KeyCode::Enter));
    assert_eq!(
        app.take_outgoing(),
        vec![json!({"type":"msg","to":"bob","text":"hi bob"})]
    );
    let buffer = draw(&mut app, 80, 10);
    assert!(screen(&buffer).contains("bob: psst"), "{}", screen(&buffer));
    type_in(&mut app, "/bell off");
    app.handle_key(key(KeyCode::Enter));
    assert_eq!(app.bell, Bell::Off);
    app.handle_server(message(3, "lobby", "bob", "alice!"));
    assert!(!app.take_bell());
    type_in(&mut app, "/bell on");
    app.handle_key(key(KeyCode::Enter));
    app.handle_server(message(4, "lobby", "bob", "anything"));
    assert!(app.take_bell());
}

#[test]
fn tab_completes_names_rooms_and_commands() {
    let mut app = lobby();
    type_in(&mut app, "b");
    app.handle_key(key(KeyCode::Tab));
    assert_eq!(
        app.editor.text(),
        "bob: ",
        "a name at the start is addressed"
    );
    app.handle_key(ctrl('u'));
    type_in(&mut app, "hi c");
    app.handle_key(key(KeyCode::Tab));
    assert_eq!(app.editor.text(), "hi carol ");
    app.handle_key(ctrl('u'));
    type_in(&mut app, "/sw");
    app.handle_key(key(KeyCode::Tab));
    assert_eq!(app.editor.text(), "/switch ");
    type_in(&mut app, "#lo");
    app.handle_key(key(KeyCode::Tab));
    assert_eq!(app.editor.text(), "/switch #lobby ");
    app.handle_key(ctrl('u'));
    // Tab again cycles through the candidates.
    type_in(&mut app, "/b");
    app.handle_key(key(KeyCode::Tab));
    let first = app.editor.text().to_string();
    app.handle_key(key(KeyCode::Tab));
    assert_ne!(app.editor.text(), first);
    assert!(["/back ", "/ban ", "/bans ", "/bell "].contains(&app.editor.text()));
}

#[test]
fn a_paste_is_one_multi_line_message() {
    let mut app = lobby();
    app.handle_paste("first line\r\nsecond line");
    app.handle_key(alt(KeyCode::Enter));
    type_in(&mut app, "third");
    let buffer = draw(&mut app, 80, 12);
    let rows = rows(&buffer);
    assert_eq!(rows[9..], ["> first line", "  second line", "  third"]);
    app.handle_key(key(KeyCode::Enter));
    assert_eq!(
        app.take_outgoing(),
        vec![json!({"type":"say","room":"lobby","text":"first line\nsecond line\nthird"})]
    );
}

#[test]
fn ctrl_c_quits_and_leaving_a_room_closes_its_pane() {
    let mut app = lobby();
    join(&mut app, "ops");
    app.handle_server(event(
        json!({"type":"left","ts":TS,"room":"ops","name":"alice","reason":"left"}),
    ));
    assert_eq!(app.panes.len(), 1);
    assert_eq!(app.current, 0);
    app.take_outgoing();
    app.handle_key(ctrl('c'));
    assert!(app.wants_quit());
    assert_eq!(app.take_outgoing(), vec![json!({"type":"quit"})]);
}

#[test]
fn the_editor_moves_and_deletes_by_character_word_and_line() {
    let mut e = Editor::default();
    typed(&mut e, "hello wide 世界");
    e.handle_key(key(KeyCode::Backspace));
    assert_eq!(e.text(), "hello wide 世");
    e.handle_key(key(KeyCode::Home));
    e.handle_key(key(KeyCode::Delete));
    assert_eq!(e.text(), "ello wide 世");
    e.handle_key(key(KeyCode::Right));
    typed(&mut e, "L");
    assert_eq!(e.text(), "eLllo wide 世");
    e.handle_key(key(KeyCode::End));
    e.handle_key(ctrl('w'));
    assert_eq!(e.text(), "eLllo wide ");
    e.handle_key(ctrl('w'));
    assert_eq!(e.text(), "eLllo ");
    e.handle_key(key(KeyCode::Left));
    e.handle_key(key(KeyCode::Left));
    e.handle_key(ctrl('u'));
    assert_eq!(e.text(), "o ");
    assert_eq!(e.cursor(), 0);
    e.handle_key(ctrl('e'));
    assert_eq!(e.cursor(), 2);
    assert_eq!(e.handle_key(key(KeyCode::F(5))), Edit::Ignored);
}

#[test]
fn the_editor_keeps_a_history_and_a_draft() {
    let mut e = Editor::default();
    typed(&mut e, "one");
    assert_eq!(
        e.handle_key(key(KeyCode::Enter)),
        Edit::Submit("one".into())
    );
    typed(&mut e, "two");
    e.handle_key(key(KeyCode::Enter));
    typed(&mut e, "dra");
    e.handle_key(key(KeyCode::Up));
    assert_eq!(e.text(), "two");
    e.handle_key(key(KeyCode::Up));
    assert_eq!(e.text(), "one");
    e.handle_key(key(KeyCode::Up));
    assert_eq!(e.text(), "one", "the oldest stays");
    e.handle_key(key(KeyCode::Down));
    e.handle_key(key(KeyCode::Down));
    assert_eq!(e.text(), "dra", "the draft comes back");
}

#[test]
fn the_editor_moves_between_the_lines_of_a_multi_line_buffer() {
    let mut e = Editor::default();
    typed(&mut e, "abc");
    e.handle_key(alt(KeyCode::Enter));
    typed(&mut e, "de");
    assert_eq!(e.text(), "abc\nde");
    e.handle_key(key(KeyCode::Up));
    assert_eq!(e.cursor(), 2, "same column on the line above");
    e.handle_key(key(KeyCode::End));
    e.handle_key(key(KeyCode::Down));
    assert_eq!(e.cursor(), "abc\nde".len());
    e.handle_key(key(KeyCode::Home));
    e.handle_key(ctrl('w'));
    assert_eq!(e.text(), "abcde", "Ctrl-W at a line start joins the lines");
}

#[test]
fn resizing_reflows_the_scrollback() {
    let mut app = lobby();
    let long = "word ".repeat(30);
    app.handle_server(message(1, "lobby", "bob", long.trim()));
    let wide = rows(&draw(&mut app, 100, 12));
    let narrow = rows(&draw(&mut app, 40, 12));
    let lines_of = |rows: &[String]| rows.iter().filter(|r| r.contains("word")).count();
    assert!(
        lines_of(&narrow) > lines_of(&wide),
        "{}\n--\n{}",
        wide.join("\n"),
        narrow.join("\n")
    );
    assert!(narrow.iter().all(|r| r.width() <= 40));
    // Too narrow for the side panel: it goes, the status line stays.
    assert!(!narrow.iter().any(|r| r.contains("Rooms")));
    assert!(narrow[10].contains("alice"), "{}", narrow.join("\n"));
}
