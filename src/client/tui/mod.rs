//! `chat-client`'s full-screen mode (ratatui over crossterm), used when stdin and stdout are
//! a terminal and `--plain` is not given.
//!
//! - `app`: the state ([`App`]): panes, counters, the commands the client handles itself;
//!   changed by keys and server events, drawn by `render`. No terminal, no socket.
//! - `input`: the input line's editor and history.
//! - `render`: the layout and the drawing, in terminal cells (`unicode-width`).
//! - `conn`: the connection: handshake, a reader thread feeding a channel, reconnecting.
//! - here: the terminal (raw mode, alternate screen, bracketed paste, restored on every way
//!   out, panics included) and the event loop: the UI thread polls crossterm for input with a
//!   timeout and drains the network channel in between. No async runtime.

use std::io::{self, BufRead, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{
    self, DisableBracketedPaste, EnableBracketedPaste, Event, KeyEventKind,
};
use ratatui::crossterm::execute;
use ratatui::crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};

use crate::error::{Error, Result};
use crate::proto::ErrorCode;

pub mod app;
pub mod conn;
pub mod input;
pub mod render;

#[cfg(test)]
mod tests;

pub use app::App;
pub use conn::{Connector, Login, NetEvent};

/// How long the UI waits for a key before looking at the network again.
const TICK: Duration = Duration::from_millis(50);

/// What the full-screen client needs to start.
#[derive(Debug, Clone, Default)]
pub struct TuiOptions {
    /// The name to ask for; asked on the terminal when absent.
    pub name: Option<String>,
    /// The password of a registered name; asked (without echo) when the server wants one.
    pub password: Option<String>,
    /// The server's address as typed, for the status line.
    pub server: String,
    /// `--room`: a room to join once connected.
    pub room: Option<String>,
}

/// How a full-screen session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// The user left (`/quit`, Ctrl-C).
    Quit,
    /// The server refused the login; the text says why.
    Refused(String),
    /// The connection was lost for good (kicked, banned, logged in elsewhere).
    Lost(String),
}

/// Runs the full-screen client: logs in on the plain terminal (so a name or a password can be
/// asked for), then takes the screen until the user leaves.
pub fn run(connect: Connector, opts: TuiOptions) -> Result<Ending> {
    let (login, session) = match first_login(&connect, &opts)? {
        Ok(pair) => pair,
        Err(refusal) => return Ok(Ending::Refused(refusal)),
    };
    let mut app = App::new(&opts.server, &session.server, &session.name, &session.room);
    if let Some(room) = &opts.room {
        app.join(room);
    }
    let (tx, rx) = crossbeam_channel::unbounded();
    let link = conn::spawn(connect, login, session, tx)?;
    // SIGTERM or SIGHUP (the terminal closed) leave as Ctrl-C does: politely, with the
    // terminal given back. Ctrl-C itself is a key in raw mode.
    let signalled = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGHUP] {
        signal_hook::flag::register(signal, signalled.clone())
            .map_err(|e| Error::io("cannot handle signals", e))?;
    }
    watch_the_terminal(link.clone());
    let ending = {
        let mut screen = Screen::enter()?;
        event_loop(&mut app, &mut screen, &rx, &link, &signalled)
    };
    link.close();
    ending
}

/// A terminal that hung up (its window closed, tmux killed) reads as end of file for ever,
/// crossterm's poll spins on it without returning, and no SIGHUP may come. A watcher thread
/// opens `/dev/tty` twice a second; once that fails (no controlling terminal), it says
/// goodbye to the server and ends the process (there is no terminal left to restore).
fn watch_the_terminal(link: conn::Link) {
    let _ = std::thread::Builder::new()
        .name("terminal-watch".into())
        .spawn(move || {
            loop {
                std::thread::sleep(Duration::from_millis(500));
                // After a hang-up the process has no controlling terminal any more.
                if std::fs::File::open("/dev/tty").is_err() {
                    let _ = link.send(&serde_json::json!({"type": "quit"}));
                    link.close();
                    std::process::exit(i32::from(crate::client::plain::exit::LOST));
                }
            }
        });
}

/// Connects and logs in, asking for the name and the password on the terminal as needed.
fn first_login(
    connect: &Connector,
    opts: &TuiOptions,
) -> Result<std::result::Result<(Login, conn::Session), String>> {
    let mut name = opts.name.clone();
    let mut password = opts.password.clone();
    loop {
        let wanted = match name.take() {
            Some(n) => n,
            None => {
                print!("name: ");
                io::stdout()
                    .flush()
                    .map_err(|e| Error::io("cannot write output", e))?;
                let mut line = String::new();
                if io::stdin()
                    .lock()
                    .read_line(&mut line)
                    .map_err(|e| Error::io("cannot read input", e))?
                    == 0
                {
                    return Ok(Err("no name given".into()));
                }
                line.trim().to_string()
            }
        };
        let login = Login {
            name: wanted.clone(),
            password: password.clone(),
        };
        match conn::handshake(connect()?, &login)? {
            Ok(session) => return Ok(Ok((login, session))),
            Err((ErrorCode::PasswordRequired, _)) if password.is_none() => {
                let typed = rpassword::prompt_password(format!("password for {wanted}: "))
                    .map_err(|e| Error::io("cannot read the password", e))?;
                password = Some(typed);
                name = Some(wanted);
            }
            Err((code, message)) => {
                eprintln!("! {message}");
                // A name can be chosen again; a login that failed is over.
                if !matches!(
                    code,
                    ErrorCode::NameInvalid | ErrorCode::NameReserved | ErrorCode::NameTaken
                ) || opts.name.is_some()
                {
                    return Ok(Err(message));
                }
            }
        }
    }
}

fn event_loop(
    app: &mut App,
    screen: &mut Screen,
    rx: &crossbeam_channel::Receiver<NetEvent>,
    link: &conn::Link,
    signalled: &AtomicBool,
) -> Result<Ending> {
    let draw_err = |e: io::Error| Error::io("cannot draw on the terminal", e);
    let mut dirty = true;
    loop {
        if signalled.load(Ordering::SeqCst) {
            app.handle_key(event::KeyEvent::new(
                event::KeyCode::Char('c'),
                event::KeyModifiers::CONTROL,
            ));
        }
        for request in app.take_outgoing() {
            // Nothing to do on failure: the reader notices the loss and says so.
            let _ = link.send(&request);
        }
        if app.wants_quit() {
            // After a loss for good, the screen stayed up so the reason could be read.
            return Ok(match &app.conn {
                app::ConnState::Gone(why) => Ending::Lost(why.clone()),
                _ => Ending::Quit,
            });
        }
        if app.repaint {
            app.repaint = false;
            screen.terminal.clear().map_err(draw_err)?;
            dirty = true;
        }
        if dirty {
            screen
                .terminal
                .draw(|frame| render::render(app, frame))
                .map_err(draw_err)?;
            dirty = false;
        }
        if app.take_bell() {
            let mut out = io::stdout();
            let _ = out.write_all(b"\x07").and_then(|()| out.flush());
        }
        if event::poll(TICK).map_err(|e| Error::io("cannot read the terminal", e))? {
            match event::read().map_err(|e| Error::io("cannot read the terminal", e))? {
                Event::Key(key) if key.kind != KeyEventKind::Release => app.handle_key(key),
                Event::Paste(text) => app.handle_paste(&text),
                _ => {}
            }
            dirty = true;
        }
        while let Ok(ev) = rx.try_recv() {
            app.handle_net(ev);
            dirty = true;
        }
    }
}

/// The terminal in full-screen mode; dropping it gives the terminal back as it was.
struct Screen {
    terminal: Terminal<CrosstermBackend<io::Stdout>>,
}

impl Screen {
    fn enter() -> Result<Screen> {
        let err = |e: io::Error| Error::io("cannot set up the terminal", e);
        install_panic_hook();
        enable_raw_mode().map_err(err)?;
        execute!(io::stdout(), EnterAlternateScreen, EnableBracketedPaste).map_err(err)?;
        let terminal = Terminal::new(CrosstermBackend::new(io::stdout())).map_err(err)?;
        Ok(Screen { terminal })
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        restore();
        let _ = self.terminal.show_cursor();
    }
}

/// Gives the terminal back: cooked mode, the normal screen, no bracketed paste.
fn restore() {
    let _ = disable_raw_mode();
    let _ = execute!(
        io::stdout(),
        DisableBracketedPaste,
        LeaveAlternateScreen,
        ratatui::crossterm::cursor::Show
    );
}

/// A panic restores the terminal before its message is printed, so the message is readable
/// and the shell is usable.
fn install_panic_hook() {
    let previous = Arc::new(std::panic::take_hook());
    std::panic::set_hook(Box::new(move |info| {
        restore();
        previous(info);
    }));
}
