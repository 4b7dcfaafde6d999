// chatroom web client: plain JavaScript, no framework, no build step.
//
// One WebSocket to /ws carries the JSON protocol of docs/PROTOCOL.md: one JSON request per
// frame from us, one event per frame from the server. Every piece of text from the network
// goes into the page with textContent or text nodes, never as HTML.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const STORE_NAME = 'chatroom.name';
  const STORE_ROOMS = 'chatroom.rooms';
  const STORE_VIEW = 'chatroom.view';
  const COLOURS = 12;
  const MAX_ROWS = 3000; // rows kept per conversation; older ones are dropped from the page

  const state = {
    info: { login: 'none', rooms: [], more: 0, max_line: 4096, max_lines: 100, history: 50 },
    name: '', // the name we ask for
    me: '', // our name as the server spells it, once welcomed
    password: '', // kept in memory only, for reconnecting
    ws: null,
    welcomed: false, // the open socket got its welcome
    session: false, // logged in: an unexpected close reconnects
    retries: 0,
    retryTimer: null,
    convs: new Map(), // key ('#room' or '@name', lower case) -> conversation
    current: null, // key of the conversation shown
    serverRoom: null, // the server's current room (where `me` and `history` go)
    wanted: [], // rooms to be in, as displayed; saved in localStorage
    dropping: new Set(), // rooms the server put us in that we had left (the lobby)
    pendingView: null, // a room to show as soon as we have joined it (its key)
    pendingRoom: null, // the room chosen on the start view
    pendingWho: new Set(), // rooms whose next member list was asked for with /who
    away: null, // our away reason, null when here
    sent: [], // lines sent, for recall with the Up key
    sentPos: 0,
  };

  // ---------------------------------------------------------------------------------------
  // Small helpers

  /** Creates an element with a class and, optionally, text (as a text node). */
  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  const roomKey = (room) => '#' + room.replace(/^#/, '').toLowerCase();
  const dmKey = (name) => '@' + name.toLowerCase();
  const same = (a, b) => !!a && !!b && a.toLowerCase() === b.toLowerCase();
  const pad = (n) => String(n).padStart(2, '0');
  const utf8Length = (s) => new TextEncoder().encode(s).length;

  /** localStorage, which may be refused (private windows, blocked storage): then forgets. */
  function store(key, value) {
    try { localStorage.setItem(key, value); } catch (_) { /* nothing to remember with */ }
  }
  function stored(key) {
    try { return localStorage.getItem(key); } catch (_) { return null; }
  }

  /** A stable colour class for a name: FNV-1a of its lower-case form, one of COLOURS. */
  function colourClass(name) {
    let h = 0x811c9dc5;
    for (const ch of name.toLowerCase()) {
      h ^= ch.codePointAt(0);
      h = Math.imul(h, 0x01000193) >>> 0;
    }
    return 'c' + (h % COLOURS);
  }

  /** A name, in its colour. */
  function nameSpan(name, cls) {
    return el('span', 'nick ' + colourClass(name) + (cls ? ' ' + cls : ''), name);
  }

  /** `<time>` showing hh:mm in local time, the full date on hover. */
  function timeEl(ts) {
    const d = ts ? new Date(ts) : new Date();
    const t = el('time', 'ts', pad(d.getHours()) + ':' + pad(d.getMinutes()));
    if (ts) t.dateTime = ts;
    t.title = d.toLocaleString(undefined, { dateStyle: 'full', timeStyle: 'medium' });
    return t;
  }

  /** Appends `text` to `parent`, with http(s) URLs as links (built, never parsed as HTML). */
  function appendLinkified(parent, text) {
    const re = /\bhttps?:\/\/[^\s<>"']+/gi;
    let last = 0;
    for (let m; (m = re.exec(text)); ) {
      let url = m[0].replace(/[.,;:!?)\]]+$/, '');
      let ok = false;
      try {
        const u = new URL(url);
        ok = u.protocol === 'http:' || u.protocol === 'https:';
      } catch (_) { ok = false; }
      if (!ok || !url) continue;
      parent.append(document.createTextNode(text.slice(last, m.index)));
      const a = el('a', null, url);
      a.href = url;
      a.rel = 'noopener noreferrer';
      a.target = '_blank';
      parent.append(a);
      last = m.index + url.length;
      re.lastIndex = last;
    }
    parent.append(document.createTextNode(text.slice(last)));
  }

  /** Whether `text` mentions our name as a word. */
  function mentionsMe(text) {
    if (!state.me) return false;
    const esc = state.me.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    return new RegExp('(^|[^\\p{L}\\p{N}_])' + esc + '($|[^\\p{L}\\p{N}_])', 'iu').test(text);
  }

  // ---------------------------------------------------------------------------------------
  // Conversations: rooms and direct-message partners, each with its own log element

  /** The conversation for `key`, made (with its log and sidebar entry) if new. */
  function ensureConv(key, display) {
    let c = state.convs.get(key);
    if (c) return c;
    const kind = key[0] === '#' ? 'room' : 'dm';
    const log = el('div', 'log');
    log.setAttribute('role', 'log');
    log.setAttribute('aria-live', 'polite');
    log.setAttribute('aria-label', 'Messages in ' + (kind === 'room' ? '#' : '') + display);
    log.hidden = true;
    $('logs').append(log);
    c = {
      key, kind, name: display, log,
      ids: new Set(), // message ids shown: none is ever shown twice
      lastId: 0, // the highest id shown
      members: new Map(), // name -> away reason (null when here)
      unread: 0, mention: false,
      joined: false,
      replay: null, // while a join's history is arriving: {seenBefore, min, gapFetch}
      batch: 0, // history messages inserted since the last history_end
      scroll: null, // scrollTop when not at the bottom, kept while another is shown
      item: null,
    };
    state.convs.set(key, c);
    makeItem(c);
    return c;
  }

  /** Builds the sidebar entry of a conversation. */
  function makeItem(c) {
    const li = el('li', 'conv');
    const b = el('button', 'conv-button');
    b.type = 'button';
    b.dataset.key = c.key;
    b.append(el('span', 'conv-prefix', c.kind === 'room' ? '#' : '@'), el('span', 'conv-name'),
      el('span', 'badge'));
    b.addEventListener('click', () => { showConv(c.key); closePanels(); $('input').focus(); });
    const x = el('button', 'conv-close', '×');
    x.type = 'button';
    x.addEventListener('click', () => closeConv(c));
    li.append(b, x);
    c.item = li;
    (c.kind === 'room' ? $('room-list') : $('dm-list')).append(li);
    updateItem(c);
  }

  /** Refreshes a sidebar entry: name, unread count, mention and current marks. */
  function updateItem(c) {
    const b = c.item.querySelector('.conv-button');
    b.querySelector('.conv-name').textContent = c.name;
    const badge = b.querySelector('.badge');
    badge.textContent = c.unread ? String(c.unread) : '';
    badge.hidden = !c.unread;
    c.item.classList.toggle('unread', c.unread > 0);
    c.item.classList.toggle('mention', c.mention);
    c.item.classList.toggle('current', c.key === state.current);
    b.setAttribute('aria-current', c.key === state.current ? 'page' : 'false');
    b.setAttribute('aria-label', (c.kind === 'room' ? 'room ' : 'conversation with ') + c.name +
      (c.unread ? ', ' + c.unread + ' unread' + (c.mention ? ', mentioned' : '') : ''));
    c.item.querySelector('.conv-close').setAttribute('aria-label',
      c.kind === 'room' ? 'Leave #' + c.name : 'Close conversation with ' + c.name);
    $('dm-empty').hidden = $('dm-list').childElementCount > 0;
    updateTitle();
  }

  /** The page title: unread count and the conversation shown. */
  function updateTitle() {
    let total = 0;
    for (const c of state.convs.values()) total += c.unread;
    const cur = state.convs.get(state.current);
    const where = cur ? (cur.kind === 'room' ? '#' : '@') + cur.name + ' · ' : '';
    document.title = (total ? '(' + total + ') ' : '') + where + 'chatroom';
  }

  /** Shows a conversation: its log, header and member list; clears its unread count. */
  function showConv(key) {
    const c = state.convs.get(key);
    if (!c) return;
    const logs = $('logs');
    const prev = state.convs.get(state.current);
    if (prev && prev !== c) {
      prev.scroll = atBottom() ? null : logs.scrollTop;
      prev.log.hidden = true;
      state.current = null;
      updateItem(prev);
    }
    state.current = key;
    c.log.hidden = false;
    c.unread = 0;
    c.mention = false;
    updateItem(c);
    if (c.kind === 'room' && c.joined) toServerRoom(c);
    if (c.kind === 'room') store(STORE_VIEW, c.name);
    $('title').textContent = (c.kind === 'room' ? '#' : '@') + c.name;
    $('input').placeholder = 'Message ' + $('title').textContent;
    renderMembers();
    if (prev === c) return;
    logs.scrollTop = c.scroll === null ? logs.scrollHeight : c.scroll;
    $('jump').hidden = true;
  }

  /** Leaves a room, or closes a direct conversation (client side only). */
  function closeConv(c) {
    if (c.kind === 'room') {
      send({ type: 'leave', room: c.name });
    } else {
      dropConv(c);
    }
  }

  /** Removes a conversation from the page, showing another one if it was shown. */
  function dropConv(c) {
    c.log.remove();
    c.item.remove();
    state.convs.delete(c.key);
    if (state.serverRoom === c.key) state.serverRoom = null;
    if (state.current === c.key) {
      state.current = null;
      // Show a room rather than a direct conversation (the last room shown is remembered).
      const all = [...state.convs.values()];
      const next = all.find((o) => o.kind === 'room') || all[0];
      if (next) showConv(next.key);
      else { $('title').textContent = 'no room'; renderMembers(); }
    }
    $('dm-empty').hidden = $('dm-list').childElementCount > 0;
    updateTitle();
  }

  /** Makes `c` the server's current room, which `me`, `history` and commands act on. */
  function toServerRoom(c) {
    if (c.kind !== 'room' || state.serverRoom === c.key) return;
    if (send({ type: 'switch', room: c.name })) state.serverRoom = c.key;
  }

  /** Adds a room to (or removes it from) the rooms to rejoin, remembered for the next visit
   *  (as the name is; never the password). */
  function want(room, yes) {
    const i = state.wanted.findIndex((r) => roomKey(r) === roomKey(room));
    if (yes && i < 0) state.wanted.push(room);
    else if (yes) state.wanted[i] = room; // the server's spelling
    else if (i >= 0) state.wanted.splice(i, 1);
    store(STORE_ROOMS, JSON.stringify(state.wanted));
  }

  // ---------------------------------------------------------------------------------------
  // The message list

  /** Whether the log is scrolled to (near) its end. */
  function atBottom() {
    const l = $('logs');
    return l.scrollHeight - l.scrollTop - l.clientHeight < 40;
  }

  /** Adds a row to a conversation's log at `before` (or the end), keeping the view. */
  function place(c, row, before) {
    const shown = c.key === state.current;
    const stick = shown && atBottom();
    c.log.insertBefore(row, before || null);
    while (c.log.childElementCount > MAX_ROWS) c.log.firstElementChild.remove();
    if (!shown) return;
    if (stick) $('logs').scrollTop = $('logs').scrollHeight;
    else if (!before) $('jump').hidden = false;
  }

  /** A divider row: "history", "live", or a day. */
  function divider(text, cls) {
    const d = el('div', 'divider ' + (cls || ''));
    d.setAttribute('role', 'separator');
    d.append(el('span', null, text));
    return d;
  }

  /** A notice row (joins, leaves, presence, errors...) at the end of a conversation. */
  function notice(c, text, cls, ts) {
    if (!c) c = state.convs.get(state.current);
    if (!c) { $('composer-error').textContent = text; return; }
    const row = el('div', 'notice ' + (cls || 'info'));
    row.append(timeEl(ts), el('span', 'notice-text', text));
    place(c, row);
  }

  /** The first message row of `c` with an id above `id` (where `id` goes), or null. */
  function rowAfter(c, id) {
    let found = null;
    for (let n = c.log.lastElementChild; n; n = n.previousElementSibling) {
      if (!n.dataset.id) continue;
      if (Number(n.dataset.id) > id) found = n; else break;
    }
    return found;
  }

  /** The local day of a timestamp, as a divider's text. */
  function dayOf(ts) {
    return new Date(ts).toLocaleDateString(undefined,
      { weekday: 'long', day: 'numeric', month: 'long', year: 'numeric' });
  }

  /** Inserts a chat message in id order, unless its id is shown already. */
  function addMessage(c, ev) {
    if (c.replay && ev.history) c.replay.min = Math.min(c.replay.min, ev.id);
    if (c.ids.has(ev.id)) return false;
    c.ids.add(ev.id);
    c.lastId = Math.max(c.lastId, ev.id);
    const before = rowAfter(c, ev.id);
    const last = c.log.lastElementChild;
    if (!before) {
      if (ev.history && c.batch === 0) {
        if (last && last.classList.contains('divider')) last.remove();
        place(c, divider('history', 'history-divider'));
      }
      // A day divider when the day changes between two messages at the end (or the first
      // message is not from today).
      let prev = c.log.lastElementChild;
      while (prev && !prev.dataset.id) prev = prev.previousElementSibling;
      const prevDay = dayOf(prev ? prev.dataset.ts : new Date());
      if (dayOf(ev.ts) !== prevDay) place(c, divider(dayOf(ev.ts), 'day'));
    }
    if (ev.history) {
      c.batch++;
      c.batchAtEnd = !before; // the replay ends at the bottom: a "live" divider goes after it
    }
    place(c, messageRow(ev), before);
    return true;
  }

  /** The row of one chat message. */
  function messageRow(ev) {
    const mine = same(ev.from, state.me);
    const row = el('div', 'msg ' + (ev.kind || 'message'));
    row.dataset.id = String(ev.id);
    row.dataset.ts = ev.ts;
    if (ev.history) row.classList.add('history');
    if (mine) row.classList.add('self');
    if (!mine && (ev.kind === 'direct' || mentionsMe(ev.text))) row.classList.add('mention');
    const text = el('span', 'text');
    if (ev.kind === 'action') {
      text.append(el('span', 'star', '* '), nameSpan(ev.from), document.createTextNode(' '));
      row.append(timeEl(ev.ts), el('span', 'gutter'), text);
    } else {
      row.append(timeEl(ev.ts), nameSpan(ev.from, 'from'), text);
    }
    appendLinkified(text, ev.text);
    return row;
  }

  // ---------------------------------------------------------------------------------------
  // Members

  /** Renders the member list of the conversation shown. */
  function renderMembers() {
    const c = state.convs.get(state.current);
    const list = $('member-list');
    list.replaceChildren();
    if (!c) { $('subtitle').textContent = ''; return; }
    if (c.kind === 'dm') {
      $('members-title').textContent = 'Direct conversation';
      $('subtitle').textContent = 'only you and ' + c.name + ' see this';
      list.append(memberItem(c.name, null), memberItem(state.me, null));
      return;
    }
    const names = [...c.members.keys()]
      .sort((a, b) => a.localeCompare(b, undefined, { sensitivity: 'base' }));
    const away = names.filter((n) => c.members.get(n) !== null).length;
    $('members-title').textContent = 'Members — ' + names.length;
    $('subtitle').textContent = names.length + (names.length === 1 ? ' member' : ' members') +
      (away ? ', ' + away + ' away' : '');
    for (const n of names) list.append(memberItem(n, c.members.get(n)));
  }

  /** One member: presence dot, name (click for a direct conversation), away reason. */
  function memberItem(name, away) {
    const li = el('li', 'member' + (away !== null && away !== undefined ? ' away' : ''));
    const b = el('button', 'member-button');
    b.type = 'button';
    b.append(el('span', 'dot'), nameSpan(name));
    if (away !== null && away !== undefined) {
      b.append(el('span', 'away-reason', away ? 'away: ' + away : 'away'));
      b.title = name + ' is away' + (away ? ': ' + away : '');
    }
    if (same(name, state.me)) b.append(el('span', 'you', '(you)'));
    else b.addEventListener('click', () => { openDm(name); closePanels(); $('input').focus(); });
    li.append(b);
    return li;
  }

  /** Opens (and shows) the direct conversation with `name`. */
  function openDm(name) {
    ensureConv(dmKey(name), name);
    showConv(dmKey(name));
  }

  /** The rooms `name` is in, as conversations (plus the direct one with them, if any). */
  function convsOf(name) {
    const out = [];
    for (const c of state.convs.values()) {
      if (c.kind === 'room' ? c.members.has(findMember(c, name)) : same(c.name, name)) out.push(c);
    }
    return out;
  }

  /** The spelling of `name` in a room's member map, or undefined. */
  function findMember(c, name) {
    for (const n of c.members.keys()) if (same(n, name)) return n;
    return undefined;
  }

  // ---------------------------------------------------------------------------------------
  // Events from the server

  const handlers = {
    welcome(ev) {
      state.me = ev.name;
      state.welcomed = true;
      state.session = true;
      state.retries = 0;
      state.serverRoom = roomKey(ev.room);
      store(STORE_NAME, ev.name);
      for (const c of state.convs.values()) c.joined = false;
      showChat();
      setConn('online', 'connected');
      $('me-name').textContent = ev.name;
      // The server put us in its default room; join the rest (the one to show last, so it
      // ends up current), and leave the default room if we had left it before.
      const rooms = state.wanted.filter((r) => roomKey(r) !== roomKey(ev.room));
      const keepDefault = state.wanted.length === 0 || rooms.length < state.wanted.length ||
        state.pendingView === roomKey(ev.room);
      if (state.pendingRoom && !rooms.some((r) => roomKey(r) === state.pendingView) &&
          state.pendingView !== roomKey(ev.room)) rooms.push(state.pendingRoom);
      const view = state.pendingView || state.current;
      rooms.sort((a, b) => (roomKey(a) === view) - (roomKey(b) === view));
      for (const r of rooms) {
        if (send({ type: 'join', room: r })) state.serverRoom = roomKey(r);
      }
      state.pendingRoom = null;
      if (!keepDefault) {
        state.dropping.add(roomKey(ev.room));
        send({ type: 'leave', room: ev.room });
      }
      const cur = state.convs.get(state.current);
      if (cur && cur.kind === 'room' && !state.pendingView) toServerRoom(cur);
    },

    message(ev) {
      let c;
      if (ev.kind === 'direct' || !ev.room) {
        const other = same(ev.from, state.me) ? ev.to : ev.from;
        if (!other) return;
        c = ensureConv(dmKey(other), other);
      } else {
        if (state.dropping.has(roomKey(ev.room))) return;
        c = ensureConv(roomKey(ev.room), ev.room);
      }
      if (!addMessage(c, ev) || ev.history || same(ev.from, state.me)) return;
      if (c.key !== state.current || document.hidden) {
        c.unread++;
        if (ev.kind === 'direct' || mentionsMe(ev.text)) c.mention = true;
        updateItem(c);
      }
    },

    history_end(ev) {
      const c = state.convs.get(roomKey(ev.room));
      if (!c) return;
      const r = c.replay;
      c.replay = null;
      if (r && !r.gapFetch && r.seenBefore > 0 && state.info.history > 0 &&
          ev.count >= state.info.history &&
          r.min > r.seenBefore) {
        // The replay is full and none of it was seen before: messages may be missing in
        // between. Ask for more, for this room, then give the server back its current room.
        const back = state.convs.get(state.serverRoom);
        toServerRoom(c);
        send({ type: 'history', n: 200 });
        c.replay = { seenBefore: r.seenBefore, min: Infinity, gapFetch: true };
        if (back && back !== c) toServerRoom(back);
        return;
      }
      if (r && r.gapFetch && r.min > r.seenBefore && ev.count >= 200) {
        notice(c, 'some messages sent while you were away are not shown (use /history)', 'error');
      }
      if (c.batch > 0 && c.batchAtEnd) {
        const last = c.log.lastElementChild;
        if (last && !last.classList.contains('divider')) place(c, divider('live', 'live-divider'));
      }
      c.batch = 0;
    },

    joined(ev) {
      const key = roomKey(ev.room);
      if (same(ev.name, state.me)) {
        if (state.dropping.has(key)) return;
        const fresh = !state.convs.has(key);
        const c = ensureConv(key, ev.room);
        c.name = ev.room;
        c.joined = true;
        c.members.set(ev.name, null);
        c.replay = { seenBefore: c.lastId, min: Infinity, gapFetch: false };
        c.batch = 0;
        updateItem(c);
        want(ev.room, true);
        if (fresh) notice(c, 'you joined #' + ev.room, 'join', ev.ts);
        if (state.pendingView === key) state.pendingView = null;
        else if (state.current) return;
        showConv(key);
        return;
      }
      const c = state.convs.get(key);
      if (!c) return;
      c.members.set(ev.name, null);
      notice(c, ev.name + ' joined #' + c.name, 'join', ev.ts);
      if (c.key === state.current) renderMembers();
    },

    left(ev) {
      const key = roomKey(ev.room);
      const c = state.convs.get(key);
      if (same(ev.name, state.me)) {
        if (state.dropping.delete(key)) return;
        want(ev.room, false);
        if (c) dropConv(c);
        return;
      }
      if (!c) return;
      c.members.delete(findMember(c, ev.name));
      notice(c, ev.name + ' left #' + c.name + (ev.reason ? ' (' + ev.reason + ')' : ''), 'leave', ev.ts);
      if (c.key === state.current) renderMembers();
    },

    users(ev) {
      const c = state.convs.get(roomKey(ev.room));
      const away = ev.away || {};
      if (c) {
        c.members = new Map(ev.users.map((u) => [u, Object.hasOwn(away, u) ? away[u] : null]));
        if (c.key === state.current) renderMembers();
      }
      if (state.pendingWho.delete(roomKey(ev.room))) {
        const list = ev.users.map((u) => (Object.hasOwn(away, u) ? u + ' (away' +
          (away[u] ? ': ' + away[u] : '') + ')' : u));
        notice(c, ev.users.length + ' in #' + ev.room + ': ' + list.join(', '));
      }
    },

    nick(ev) {
      for (const c of convsOf(ev.old)) {
        if (c.kind === 'room') {
          const old = findMember(c, ev.old);
          const away = c.members.get(old);
          c.members.delete(old);
          c.members.set(ev.new, away === undefined ? null : away);
        } else {
          // The direct conversation follows the person to the new name.
          state.convs.delete(c.key);
          c.key = dmKey(ev.new);
          c.name = ev.new;
          state.convs.set(c.key, c);
          c.item.querySelector('.conv-button').dataset.key = c.key;
          if (state.current === dmKey(ev.old)) state.current = c.key;
          updateItem(c);
        }
        notice(c, ev.old + ' is now known as ' + ev.new, 'nick', ev.ts);
      }
      if (same(ev.old, state.me)) {
        state.me = ev.new;
        state.name = ev.new;
        $('me-name').textContent = ev.new;
        store(STORE_NAME, ev.new);
      }
      renderMembers();
    },

    presence(ev) {
      const away = ev.away === undefined ? null : ev.away;
      for (const c of convsOf(ev.name)) {
        if (c.kind === 'room') c.members.set(findMember(c, ev.name), away);
        notice(c, ev.name + (away === null ? ' is back' : ' is away' + (away ? ': ' + away : '')),
          'presence', ev.ts);
      }
      if (same(ev.name, state.me)) {
        state.away = away;
        $('me-dot').classList.toggle('away', away !== null);
        $('away-button').textContent = away === null ? 'Set away' : 'Set back';
      }
      renderMembers();
    },

    whois(ev) {
      const since = new Date(ev.connected).toLocaleString();
      notice(null, ev.name + ': in ' + (ev.rooms.map((r) => '#' + r).join(', ') || 'no room') +
        '; connected since ' + since + (ev.away !== undefined ? '; away: "' + ev.away + '"' : ''));
    },

    help(ev) {
      const c = state.convs.get(state.current);
      const lines = ev.commands.map((h) => h.usage + ' — ' + h.description);
      lines.push('Enter sends; Shift+Enter starts a new line; Tab completes a name; ' +
        'Up recalls what you sent; //text sends a line starting with /.');
      for (const line of lines) notice(c, line, 'help');
    },

    rooms(ev) {
      const list = ev.rooms.map((r) => '#' + r.name + ' (' + r.members + ')');
      notice(null, ev.rooms.length + ' rooms: ' + list.join(', ') +
        (ev.more ? ' and ' + ev.more + ' more' : ''));
    },

    switched(ev) { state.serverRoom = roomKey(ev.room); },

    system(ev) { notice(null, ev.text, 'system', ev.ts); },

    error(ev) {
      if (!state.welcomed) { loginRefused(ev); return; }
      let text = ev.message || ev.code;
      if (ev.code === 'rate_limited' && ev.retry_after_ms) {
        text += ' (try again in ' + Math.ceil(ev.retry_after_ms / 1000) + ' s)';
      }
      if (ev.code === 'room_invalid' || ev.code === 'too_many_rooms') state.pendingView = null;
      notice(null, text, 'error');
    },

    ping(ev) { send({ type: 'pong', id: ev.id }); },

    bye(ev) {
      state.bye = ev.reason;
      notice(null, 'disconnected: ' + ev.reason, 'error', ev.ts);
      // Reconnect after the server going down; not after a kick, a ban, or a login elsewhere.
      if (!/shutting down|restart|no answer to a ping|idle/.test(ev.reason)) state.session = false;
    },
  };

  // ---------------------------------------------------------------------------------------
  // The connection

  /** Sends one request; false (and a notice) when not connected. */
  function send(req) {
    const ws = state.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    ws.send(JSON.stringify(req));
    return true;
  }

  /** Opens the WebSocket and says hello once it is open. */
  function connect() {
    clearTimeout(state.retryTimer);
    if (state.ws) { state.ws.onclose = null; state.ws.close(); }
    const url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws';
    const ws = new WebSocket(url);
    state.ws = ws;
    state.welcomed = false;
    state.bye = null;
    setConn('connecting', state.session ? 'reconnecting…' : 'connecting…');
    ws.onopen = () => sendHello();
    ws.onmessage = (e) => {
      let ev;
      try { ev = JSON.parse(e.data); } catch (_) { return; }
      if (!ev || typeof ev !== 'object' || !Object.hasOwn(handlers, ev.type)) return;
      handlers[ev.type](ev);
    };
    ws.onclose = (e) => {
      if (state.ws !== ws) return;
      state.ws = null;
      state.welcomed = false;
      closed(e);
    };
  }

  function sendHello() {
    const hello = { type: 'hello', name: state.name };
    if (state.password) hello.password = state.password;
    send(hello);
  }

  /** The socket closed: reconnect with backoff, or tell why not. */
  function closed(e) {
    let why = state.bye || (e.reason ? e.reason : 'the connection was lost');
    if (e.code === 1009) why = 'a message was too long: ' + (e.reason || 'closed');
    if (!state.session) {
      if ($('chat').hidden) {
        setLoginBusy(false);
        if (!$('login-error').textContent) $('login-error').textContent = 'Cannot connect: ' + why;
      } else {
        setConn('offline', 'disconnected');
        showBanner(why, 'Reconnect');
      }
      return;
    }
    const base = Math.min(15000, 500 * 2 ** state.retries);
    const delay = Math.round(base * (0.75 + Math.random() * 0.5));
    state.retries++;
    setConn('offline', 'reconnecting in ' + Math.ceil(delay / 1000) + ' s');
    showBanner(why + '; reconnecting in ' + Math.ceil(delay / 1000) + ' s', 'Reconnect now');
    state.retryTimer = setTimeout(connect, delay);
  }

  /** A refused hello: on the start view, say why; while reconnecting, retry or give up. */
  function loginRefused(ev) {
    if (state.session) {
      // Our previous connection may still hold the name for a moment: try again later.
      if (['name_taken', 'login_busy'].includes(ev.code)) { state.ws.close(); return; }
      state.session = false;
      state.ws.close();
      showStart();
    }
    setLoginBusy(false);
    // The server's words for this one are meant for programs writing JSON.
    $('login-error').textContent = ev.code === 'password_required'
      ? state.name + ' has an account here: enter its password.' : ev.message || ev.code;
    if (ev.code === 'password_required' || ev.code === 'login_failed') $('password').focus();
    else $('name').focus();
  }

  /** The connection indicator in the header. */
  function setConn(kind, text) {
    $('conn').dataset.state = kind;
    $('conn').textContent = text;
    $('send').disabled = kind !== 'online';
    if (kind === 'online') $('banner').hidden = true;
  }

  function showBanner(text, button) {
    $('banner-text').textContent = text;
    $('banner-button').textContent = button;
    $('banner').hidden = false;
  }

  // ---------------------------------------------------------------------------------------
  // The input: messages and commands

  /** What a line typed in the conversation `c` asks for: a request, or an error string. */
  function parseInput(line, c) {
    if (!line.startsWith('/') || line.startsWith('//')) {
      const text = line.startsWith('//') ? line.slice(1) : line;
      if (c.kind === 'dm') return { type: 'msg', to: c.name, text };
      return { type: 'say', room: c.name, text };
    }
    const m = /^\/(\S+)\s*([\s\S]*)$/.exec(line);
    const cmd = m[1].toLowerCase();
    const arg = m[2].trim();
    const word = arg.split(/\s+/)[0];
    const rest = arg.slice(word.length).trim();
    const inRoom = c.kind === 'room';
    switch (cmd) {
      case 'me':
        if (!inRoom) return '/me works in rooms only';
        if (!arg) return 'usage: /me ACTION';
        toServerRoom(c);
        return { type: 'me', text: m[2] };
      case 'msg': case 'tell': case 'dm':
        if (!word) return 'usage: /msg NAME TEXT';
        openDm(word);
        return rest ? { type: 'msg', to: word, text: rest } : null;
      case 'join': case 'j':
        if (!word) return 'usage: /join ROOM';
        if (state.convs.get(roomKey(word))?.joined) { showConv(roomKey(word)); return null; }
        state.pendingView = roomKey(word);
        return { type: 'join', room: word.replace(/^#/, '') };
      case 'leave': case 'part': case 'close':
        if (!word && !inRoom) { dropConv(c); return null; }
        return { type: 'leave', room: (word || c.name).replace(/^#/, '') };
      case 'switch': case 'go':
        if (!state.convs.has(roomKey(word))) return 'you are not in #' + word;
        showConv(roomKey(word));
        return null;
      case 'nick': return word ? { type: 'nick', name: word } : 'usage: /nick NAME';
      case 'away': return arg ? { type: 'away', reason: arg } : { type: 'away' };
      case 'back': return { type: 'back' };
      case 'who': case 'names': case 'users': {
        const room = (word || (inRoom ? c.name : '')).replace(/^#/, '');
        if (!room) return 'usage: /who ROOM';
        state.pendingWho.add(roomKey(room));
        return { type: 'who', room };
      }
      case 'whois': return word ? { type: 'whois', name: word } : 'usage: /whois NAME';
      case 'help': case '?': return { type: 'help' };
      case 'rooms': case 'list': return { type: 'rooms' };
      case 'history': {
        if (!inRoom) return '/history works in rooms only';
        toServerRoom(c);
        const n = parseInt(word, 10);
        return Number.isFinite(n) ? { type: 'history', n: Math.min(n, 200) } : { type: 'history' };
      }
      case 'quit': case 'exit': case 'bye':
        logout(arg);
        return null;
      default:
        if (inRoom) toServerRoom(c);
        return { type: 'command', line };
    }
  }

  /** Sends what is in the input box, after checking the server's limits. */
  function submitInput() {
    const input = $('input');
    const line = input.value.replace(/\s+$/, '');
    const err = $('composer-error');
    err.textContent = '';
    if (!line.trim()) return;
    const c = state.convs.get(state.current);
    if (!c) { err.textContent = 'join a room first: /join ROOM'; return; }
    const req = parseInput(line, c);
    if (typeof req === 'string') { err.textContent = req; return; }
    if (req) {
      const lines = (req.text || '').split('\n').length;
      const bytes = utf8Length(JSON.stringify(req));
      if (lines > state.info.max_lines) {
        err.textContent = 'Too many lines: ' + lines + ' (at most ' + state.info.max_lines + ').';
        return;
      }
      if (bytes > state.info.max_line) {
        err.textContent = 'Too long: ' + bytes + ' bytes (at most ' + state.info.max_line +
          ' with the request around it). Nothing was sent.';
        return;
      }
      if (!send(req)) { err.textContent = 'Not connected: nothing was sent.'; return; }
    }
    state.sent.push(line);
    if (state.sent.length > 100) state.sent.shift();
    state.sentPos = state.sent.length;
    input.value = '';
    autosize();
  }

  /** Grows the input with its lines, up to a limit (CSSOM, allowed by the page's CSP). */
  function autosize() {
    const input = $('input');
    input.style.height = 'auto';
    input.style.height = Math.min(input.scrollHeight + 2, 200) + 'px';
  }

  /** Tab: completes the member name before the cursor. True if it did. */
  function complete(input) {
    const c = state.convs.get(state.current);
    const upto = input.value.slice(0, input.selectionStart);
    const m = /(\S+)$/.exec(upto);
    if (!c || !m) return false;
    const prefix = m[1].toLowerCase();
    const names = c.kind === 'room' ? [...c.members.keys()] : [c.name];
    const hit = names.find((n) => n.toLowerCase().startsWith(prefix) && !same(n, state.me));
    if (!hit) return false;
    const start = upto.length - m[1].length;
    const suffix = start === 0 ? ': ' : ' ';
    input.value = upto.slice(0, start) + hit + suffix + input.value.slice(upto.length);
    input.selectionStart = input.selectionEnd = start + hit.length + suffix.length;
    return true;
  }

  function onInputKey(e) {
    const input = e.target;
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      submitInput();
    } else if (e.key === 'Tab' && !e.shiftKey && complete(input)) {
      e.preventDefault();
    } else if (e.key === 'ArrowUp' && (input.value === '' || state.sentPos < state.sent.length) &&
               state.sentPos > 0 && !input.value.slice(0, input.selectionStart).includes('\n')) {
      e.preventDefault();
      input.value = state.sent[--state.sentPos];
      autosize();
    } else if (e.key === 'ArrowDown' && state.sentPos < state.sent.length &&
               !input.value.slice(input.selectionEnd).includes('\n')) {
      e.preventDefault();
      state.sentPos++;
      input.value = state.sent[state.sentPos] || '';
      autosize();
    }
  }

  /** Warns before sending when the text is over the server's limits. */
  function onInputChange() {
    autosize();
    const text = $('input').value;
    const lines = text.split('\n').length;
    const bytes = utf8Length(text);
    const room = state.info.max_line - 64; // what the request around the text takes, about
    const err = $('composer-error');
    if (lines > state.info.max_lines) {
      err.textContent = lines + ' lines: at most ' + state.info.max_lines + '.';
    } else if (bytes > room) {
      err.textContent = bytes + ' bytes: at most about ' + room + '.';
    } else if (/^(Too|\d+ (lines|bytes))/.test(err.textContent)) err.textContent = '';
  }

  // ---------------------------------------------------------------------------------------
  // Views

  /** Loads /api/info and shows the start form. */
  async function start() {
    wireUp();
    $('name').value = stored(STORE_NAME) || '';
    try {
      state.wanted = JSON.parse(stored(STORE_ROOMS) || '[]').filter((r) => typeof r === 'string');
    } catch (_) { state.wanted = []; }
    $('room').value = stored(STORE_VIEW) || state.wanted[state.wanted.length - 1] || '';
    showStart();
    try {
      const res = await fetch('/api/info', { cache: 'no-store' });
      if (!res.ok) throw new Error('HTTP ' + res.status);
      Object.assign(state.info, await res.json());
    } catch (err) {
      $('login-error').textContent = 'Cannot reach the server (' + err.message + ').';
    }
    renderStart();
  }

  /** Fills the start form from the server's info: password field, room list. */
  function renderStart() {
    const info = state.info;
    $('server-line').textContent = info.server ? info.server : '';
    const pw = info.login === 'optional' || info.login === 'required';
    $('password-field').hidden = !pw;
    $('password').required = info.login === 'required';
    $('password-hint').textContent = info.login === 'required'
      ? 'This server is private: every name needs its password.'
      : 'Leave empty to join as a guest.';
    const picker = $('room-picker');
    picker.replaceChildren();
    const rooms = info.rooms || [];
    if (!rooms.length) {
      picker.append(el('span', 'hint', info.login === 'required'
        ? 'The rooms are listed once you have logged in.'
        : 'No room in use yet: name one, or stay in lobby.'));
    }
    for (const r of rooms) {
      const b = el('button', 'room-chip');
      b.type = 'button';
      b.dataset.room = r.name;
      b.append(el('span', null, '#' + r.name), el('span', 'count', String(r.members)));
      b.setAttribute('aria-label', '#' + r.name + ', ' + r.members +
        (r.members === 1 ? ' member' : ' members'));
      b.addEventListener('click', () => {
        $('room').value = r.name;
        markPicked();
        $('login-button').focus();
      });
      picker.append(b);
    }
    if (info.more) picker.append(el('span', 'hint', 'and ' + info.more + ' more'));
    markPicked();
    ($('name').value ? (pw ? $('password') : $('login-button')) : $('name')).focus();
  }

  /** Marks the room chip matching the room field. */
  function markPicked() {
    for (const b of $('room-picker').querySelectorAll('.room-chip')) {
      b.setAttribute('aria-pressed', String(roomKey(b.dataset.room) === roomKey($('room').value || 'lobby')));
    }
  }

  function setLoginBusy(busy) {
    $('login-button').disabled = busy;
    $('login-button').textContent = busy ? 'Joining…' : 'Join';
  }

  /** The start form was submitted: connect (or say hello again on the open socket). */
  function login(e) {
    e.preventDefault();
    const name = $('name').value.trim();
    const room = ($('room').value.trim() || 'lobby').replace(/^#/, '');
    $('login-error').textContent = '';
    if (!name) { $('login-error').textContent = 'Choose a name.'; $('name').focus(); return; }
    if (state.info.login === 'required' && !$('password').value) {
      $('login-error').textContent = 'This server needs your password.';
      $('password').focus();
      return;
    }
    state.name = name;
    state.password = $('password').value; // in memory only, for reconnecting
    state.pendingView = roomKey(room);
    state.pendingRoom = room;
    setLoginBusy(true);
    if (state.ws && state.ws.readyState === WebSocket.OPEN && !state.welcomed) sendHello();
    else connect();
  }

  /** Leaves the chat (the server tells the rooms) and goes back to the start view. */
  function logout(reason) {
    state.session = false;
    const ws = state.ws;
    if (ws) {
      if (state.welcomed) send(reason ? { type: 'quit', reason } : { type: 'quit' });
      ws.onclose = null;
      ws.onmessage = null;
      ws.close(1000);
    }
    state.ws = null;
    state.welcomed = false;
    clearTimeout(state.retryTimer);
    for (const c of [...state.convs.values()]) { c.log.remove(); c.item.remove(); }
    Object.assign(state, { password: '', me: '', convs: new Map(), current: null,
      serverRoom: null, dropping: new Set(), pendingView: null, away: null });
    $('dm-empty').hidden = false;
    $('login-error').textContent = '';
    start();
  }

  function showStart() {
    $('chat').hidden = true;
    $('start').hidden = false;
    setLoginBusy(false);
  }

  function showChat() {
    $('password').value = '';
    $('start').hidden = true;
    $('chat').hidden = false;
    setLoginBusy(false);
    $('input').focus();
  }

  /** Narrow screens: the side panels slide over the messages. */
  function togglePanel(which) {
    const chat = $('chat');
    const cls = 'show-' + which;
    const on = !chat.classList.contains(cls);
    closePanels();
    chat.classList.toggle(cls, on);
    $(which + '-toggle').setAttribute('aria-expanded', String(on));
    $('scrim').hidden = !on;
  }

  function closePanels() {
    $('chat').classList.remove('show-rooms', 'show-members');
    $('rooms-toggle').setAttribute('aria-expanded', 'false');
    $('members-toggle').setAttribute('aria-expanded', 'false');
    $('scrim').hidden = true;
  }

  /** Attaches the page's event listeners (the CSP forbids on* attributes). */
  let wired = false;
  function wireUp() {
    if (wired) return;
    wired = true;
    $('login').addEventListener('submit', login);
    $('room').addEventListener('input', markPicked);
    $('composer').addEventListener('submit', (e) => { e.preventDefault(); submitInput(); });
    $('input').addEventListener('keydown', onInputKey);
    $('input').addEventListener('input', onInputChange);
    $('join-form').addEventListener('submit', (e) => {
      e.preventDefault();
      const room = $('join-input').value.trim();
      if (!room) return;
      $('join-input').value = '';
      const req = parseInput('/join ' + room, { kind: 'room', name: '' });
      if (typeof req === 'string') $('composer-error').textContent = req;
      else if (req) send(req);
      closePanels();
    });
    // Stay at the newest message when the log or the window changes size (a phone's keyboard).
    let stuck = true;
    $('logs').addEventListener('scroll', () => {
      stuck = atBottom();
      if (stuck) $('jump').hidden = true;
    });
    new ResizeObserver(() => { if (stuck) $('logs').scrollTop = $('logs').scrollHeight; }).observe($('logs'));
    $('jump').addEventListener('click', () => {
      $('logs').scrollTop = $('logs').scrollHeight;
      $('jump').hidden = true;
    });
    $('rooms-toggle').addEventListener('click', () => togglePanel('rooms'));
    $('members-toggle').addEventListener('click', () => togglePanel('members'));
    $('scrim').addEventListener('click', closePanels);
    $('banner-button').addEventListener('click', () => {
      state.session = true;
      state.retries = 0;
      connect();
    });
    $('away-button').addEventListener('click',
      () => send(state.away === null ? { type: 'away' } : { type: 'back' }));
    $('logout-button').addEventListener('click', () => logout());
    document.addEventListener('keydown', (e) => { if (e.key === 'Escape') closePanels(); });
    // Back online (a laptop waking up, a train leaving a tunnel): reconnect now.
    window.addEventListener('online', () => { if (state.session && !state.ws) connect(); });
    document.addEventListener('visibilitychange', () => {
      const c = state.convs.get(state.current);
      if (!document.hidden && c) { c.unread = 0; c.mention = false; updateItem(c); }
    });
  }

  start();
})();
