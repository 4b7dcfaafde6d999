//! `cluster-in`: the stream, read in order into the hub's events.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crossbeam_channel::Sender;
use log::{info, warn};

use super::*;

/// `cluster-in`: reads the stream, in order, into the hub.
pub(super) struct Reader {
    pub(super) client: redis::Client,
    pub(super) events: Sender<Event>,
    pub(super) last_id: Arc<AtomicU64>,
    pub(super) node: String,
    /// The last entry read (or caught up on at start-up).
    pub(super) after: Option<String>,
}

impl Reader {
    pub(super) fn run(mut self) {
        let mut up = false;
        loop {
            let mut conn = match connect(&self.client) {
                Ok(c) => c,
                Err(e) => {
                    if !self.say_down(&mut up, &e.to_string()) {
                        return;
                    }
                    std::thread::sleep(TICK);
                    continue;
                }
            };
            // Our own ids (from serving alone) must never be given again.
            let mine = self.last_id.load(Ordering::SeqCst);
            if let Err(e) = redis::Script::new(RAISE)
                .key(COUNTER)
                .arg(mine)
                .invoke::<i64>(&mut conn)
            {
                if !self.say_down(&mut up, &e.to_string()) {
                    return;
                }
                std::thread::sleep(TICK);
                continue;
            }
            // First connection without a backlog: from the stream's end (what others said
            // while this node was alone is not exchanged).
            let mut after = match self.after.take() {
                Some(after) => after,
                None => {
                    let last: redis::RedisResult<redis::Value> = redis::cmd("XREVRANGE")
                        .arg(STREAM)
                        .arg("+")
                        .arg("-")
                        .arg("COUNT")
                        .arg(1)
                        .query(&mut conn);
                    let last = last.map(|v| {
                        entries(redis::Value::Array(vec![redis::Value::Array(vec![
                            redis::Value::Nil,
                            v,
                        ])]))
                    });
                    match last {
                        Ok(list) => list.first().map_or("0-0".to_string(), |(e, _)| e.clone()),
                        Err(_) => continue,
                    }
                }
            };
            if !up {
                up = true;
                info!("cluster: node {} connected to Redis", self.node);
                if self.events.send(Event::Cluster(FromCluster::Up)).is_err() {
                    return;
                }
            }
            // Blocking reads, each shorter than the read timeout.
            let _ = conn.set_read_timeout(Some(IO_TIMEOUT + Duration::from_secs(1)));
            loop {
                let reply: redis::RedisResult<redis::Value> = redis::cmd("XREAD")
                    .arg("COUNT")
                    .arg(512)
                    .arg("BLOCK")
                    .arg(IO_TIMEOUT.as_millis() as u64)
                    .arg("STREAMS")
                    .arg(STREAM)
                    .arg(&after)
                    .query(&mut conn);
                let reply = match reply {
                    Ok(r) => r,
                    Err(e) => {
                        self.after = Some(after);
                        if !self.say_down(&mut up, &e.to_string()) {
                            return;
                        }
                        break;
                    }
                };
                for (entry, fields) in entries(reply) {
                    after = entry;
                    if !self.deliver(&fields) {
                        return;
                    }
                }
            }
        }
    }

    /// Tells the hub Redis is gone (once); false when the hub is gone.
    fn say_down(&self, up: &mut bool, why: &str) -> bool {
        if std::mem::take(up) {
            warn!("cluster: lost Redis: {why}; serving this node's clients alone");
            return self
                .events
                .send(Event::Cluster(FromCluster::Down(why.to_string())))
                .is_ok();
        }
        true
    }

    /// Hands one entry to the hub, unless this node logged it already.
    fn deliver(&self, fields: &HashMap<String, String>) -> bool {
        let event = if let Some(m) = fields.get("m") {
            let id: u64 = fields.get("id").and_then(|i| i.parse().ok()).unwrap_or(0);
            if id <= self.last_id.load(Ordering::SeqCst) {
                return true;
            }
            match serde_json::from_str::<Wire>(m) {
                Ok(wire) => FromCluster::Message { id, wire },
                Err(e) => {
                    warn!("cluster: an entry that is not a message ({e}); skipped");
                    return true;
                }
            }
        } else if let Some(c) = fields.get("c") {
            match serde_json::from_str::<Control>(c) {
                Ok(control) => FromCluster::Control(control),
                Err(e) => {
                    warn!("cluster: an entry that is not a control ({e}); skipped");
                    return true;
                }
            }
        } else {
            return true;
        };
        self.events.send(Event::Cluster(event)).is_ok()
    }
}

/// The entries of an `XREAD` reply: (entry id, fields).
pub(super) fn entries(reply: redis::Value) -> Vec<(String, HashMap<String, String>)> {
    use redis::Value;
    let text = |v: &Value| -> Option<String> {
        match v {
            Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
            Value::SimpleString(s) => Some(s.clone()),
            _ => None,
        }
    };
    let mut out = Vec::new();
    let Value::Array(streams) = reply else {
        return out;
    };
    for stream in streams {
        let Value::Array(parts) = stream else {
            continue;
        };
        let Some(Value::Array(list)) = parts.get(1) else {
            continue;
        };
        for entry in list {
            let Value::Array(pair) = entry else { continue };
            let (Some(id), Some(Value::Array(kv))) = (pair.first().and_then(text), pair.get(1))
            else {
                continue;
            };
            let fields = kv
                .chunks(2)
                .filter_map(|c| Some((text(c.first()?)?, text(c.get(1)?)?)))
                .collect();
            out.push((id, fields));
        }
    }
    out
}
