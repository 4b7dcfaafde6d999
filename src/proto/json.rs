//! The JSON Lines encoding, for programs: decoding hellos and requests (encoding is serde's).

use serde::Deserialize;

use super::*;

/// An event as one JSON line, ending with `\n`.
pub(super) fn encode_line(msg: &ServerMsg) -> Vec<u8> {
    let mut out = serde_json::to_vec(msg).expect("server messages always serialize");
    out.push(b'\n');
    out
}

#[derive(Deserialize)]
struct JsonHello {
    #[serde(rename = "type")]
    kind: String,
    name: String,
    #[serde(default)]
    password: Option<String>,
}

/// A JSON `hello`: `{"type":"hello","name":…,"password":…}`.
pub(super) fn parse_hello(line: &str) -> Result<Hello, ProtocolError> {
    let req: JsonHello = from_json(line)?;
    if req.kind != "hello" {
        return Err(ProtocolError::BadRequest {
            detail: format!("the first request must be \"hello\", not {:?}", req.kind),
        });
    }
    validate_name(&req.name)?;
    Ok(Hello {
        mode: Mode::Json,
        name: req.name,
        password: req.password,
    })
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum JsonRequest {
    Say {
        text: String,
        #[serde(default)]
        room: Option<String>,
    },
    Me {
        text: String,
        #[serde(default)]
        room: Option<String>,
    },
    Msg {
        to: String,
        text: String,
    },
    Reply {
        text: String,
    },
    Join {
        room: String,
    },
    Leave {
        #[serde(default)]
        room: Option<String>,
    },
    Rooms,
    Who {
        #[serde(default)]
        room: Option<String>,
    },
    Switch {
        room: String,
    },
    Nick {
        name: String,
    },
    Away {
        #[serde(default)]
        reason: Option<String>,
    },
    Back,
    Whois {
        name: String,
    },
    History {
        #[serde(default)]
        n: Option<usize>,
    },
    Command {
        line: String,
    },
    Help,
    Ping {
        #[serde(default)]
        id: Option<u64>,
    },
    Pong {
        #[serde(default)]
        #[allow(dead_code)]
        id: Option<u64>,
    },
    Quit {
        #[serde(default)]
        reason: Option<String>,
    },
}

pub(super) fn parse_json(line: &str) -> Result<Request, ProtocolError> {
    let req: JsonRequest = from_json(line)?;
    let checked = |text: String| validate_text(&text).map(|()| text);
    let checked_room = |room: String| validate_room(&room).map(|()| room);
    let reason = |text: Option<String>| text.map(|t| validate_reason(&t).map(|()| t)).transpose();
    Ok(match req {
        JsonRequest::Say { text, room: None } => Request::Say(checked(text)?),
        JsonRequest::Say {
            text,
            room: Some(room),
        } => Request::SayIn {
            room: checked_room(room)?,
            text: checked(text)?,
        },
        JsonRequest::Me { text, room: None } => Request::Me(checked(text)?),
        JsonRequest::Me {
            text,
            room: Some(room),
        } => Request::MeIn {
            room: checked_room(room)?,
            text: checked(text)?,
        },
        JsonRequest::Msg { to, text } => Request::Msg {
            to,
            text: checked(text)?,
        },
        JsonRequest::Reply { text } => Request::Reply(checked(text)?),
        JsonRequest::Join { room } => Request::Join(checked_room(room)?),
        JsonRequest::Leave { room } => Request::Leave(room.map(checked_room).transpose()?),
        JsonRequest::Rooms => Request::Rooms,
        JsonRequest::Who { room } => Request::Who(room.map(checked_room).transpose()?),
        JsonRequest::Switch { room } => Request::Switch(checked_room(room)?),
        JsonRequest::Nick { name } => {
            validate_name(&name)?;
            Request::Nick(name)
        }
        JsonRequest::Away { reason: r } => Request::Away(reason(r)?),
        JsonRequest::Back => Request::Back,
        JsonRequest::Whois { name } => Request::Whois(name),
        JsonRequest::History { n } => Request::History(n),
        JsonRequest::Command { line } => {
            if !line.starts_with('/') {
                return Err(ProtocolError::BadRequest {
                    detail: "a command line starts with '/'".to_string(),
                });
            }
            match parse_command(&line)? {
                Request::Paste => {
                    return Err(ProtocolError::BadRequest {
                        detail: "/paste is for human mode; in JSON, a say's text may hold newlines"
                            .into(),
                    });
                }
                req => req,
            }
        }
        JsonRequest::Help => Request::Help,
        JsonRequest::Ping { id } => Request::Ping(id),
        JsonRequest::Pong { .. } => Request::Pong,
        JsonRequest::Quit { reason: r } => Request::Quit(reason(r)?),
    })
}

/// Deserializes a JSON object, telling "not JSON at all" apart from "JSON of the wrong shape".
pub(super) fn from_json<'a, T: Deserialize<'a>>(line: &'a str) -> Result<T, ProtocolError> {
    let value: serde_json::Value =
        serde_json::from_str(line).map_err(|e| ProtocolError::BadJson {
            detail: e.to_string(),
        })?;
    if !value.is_object() {
        return Err(ProtocolError::BadJson {
            detail: "expected an object like {\"type\":\"say\",\"text\":\"hi\"}".to_string(),
        });
    }
    serde_json::from_str(line).map_err(|e| ProtocolError::BadRequest {
        detail: e.to_string(),
    })
}
