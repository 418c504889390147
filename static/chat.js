// Rookery browser client. Speaks the protocol in docs/PROTOCOL.md.
// All user-supplied text is inserted with textContent, never as HTML.
//
// One file of ~850 lines on purpose: the client has no build step and no
// dependencies, is compiled into the binary and loaded in one request, and
// one closure keeps its state private. Its three sections (rendering,
// protocol, user actions) are marked "// ----".
"use strict";

(() => {
  const app = document.getElementById("app");
  const me = app.dataset.user;
  /** An operator may delete anyone's message (the server decides; the page offers). */
  const operator = "operator" in app.dataset;
  const $ = (id) => document.getElementById(id);

  const TYPING_IDLE_MS = 3000; // stop announcing typing after this much quiet
  const TYPING_SHOWN_MS = 6000; // hide someone's indicator if no update comes
  const MAX_BACKOFF_MS = 10000;
  /** After a `reconnect` frame: how long to wait for acks, then how soon to reconnect. */
  const MOVE_WAIT_MS = 2000;
  const MOVE_BACKOFF_MS = 100;
  /** A browser cannot see WebSocket pings: after this much quiet the page
   * asks (`ping`), and a replica that answers nothing within PONG_WAIT_MS
   * more is given up for another. */
  const QUIET_MS = 10000;
  const PONG_WAIT_MS = 5000;
  const STORAGE_KEY = `rookery:${me}:rooms`;

  /**
   * name -> { messages: Map(key -> message), online: [], typing: Map(user -> timer),
   *           unread, hasOlder, reads: Map(user -> seq), readSent, delivered: Set(seq) }
   * A message's key is its seq, or `id:<id>` for a fast message seen before it
   * was stored (replaced by the stored copy, same id, when that arrives).
   */
  const rooms = new Map();
  /** ref -> { room, li, frame } for messages not yet acknowledged: sent
   * again with `retry` after a reconnect, so none is lost or doubled. */
  const pending = new Map();
  let current = null;
  let socket = null;
  let backoff = 500;
  let nextRef = 1;
  let lastFrameAt = 0;
  let pingedAt = 0;
  let typingSent = false;
  let typingTimer = null;
  /** While offline mail is fetched: how much there was, and from whom. */
  let fetching = false;
  let missedCount = 0;
  const fetchedFrom = new Set();

  const isDirect = (room) => room.startsWith("@");
  const directRoom = (a, b) => (a <= b ? `@${a}:${b}` : `@${b}:${a}`);
  const peerOf = (room) => room.slice(1).split(":").find((u) => u !== me) || me;
  const label = (room) => (isDirect(room) ? `@${peerOf(room)}` : `#${room}`);

  function remembered() {
    try {
      const saved = JSON.parse(localStorage.getItem(STORAGE_KEY) || "[]");
      return Array.isArray(saved) && saved.length ? saved : ["general"];
    } catch {
      return ["general"];
    }
  }

  function remember() {
    localStorage.setItem(STORAGE_KEY, JSON.stringify([...rooms.keys()]));
  }

  function roomState(name) {
    let room = rooms.get(name);
    if (!room) {
      room = {
        messages: new Map(), online: [], typing: new Map(), unread: 0, hasOlder: true,
        reads: new Map(), readSent: 0, delivered: new Set(),
      };
      rooms.set(name, room);
      remember();
      renderRoomLists();
    }
    return room;
  }

  /** The newest seq of the room's stream this page has: a message's, or
   * an edit's or delete's (`changedUpTo`), so a resume replays neither again. */
  function newestSeq(room) {
    let newest = room.changedUpTo || 0;
    for (const message of room.messages.values()) if (message.seq != null) newest = Math.max(newest, message.seq);
    return newest;
  }

  /** The newest message's seq: what "seen by" and read positions are about. */
  function newestMessageSeq(room) {
    let newest = 0;
    for (const message of room.messages.values()) if (message.seq != null) newest = Math.max(newest, message.seq);
    return newest;
  }

  /** The stored message with `id` in `room`, if the page has it. */
  function messageById(room, id) {
    for (const message of room.messages.values()) if (message.id === id) return message;
    return null;
  }

  /** Stored messages by seq; a fast one sits where it arrived, after the newest stored then. */
  const order = (message) => (message.seq != null ? message.seq : message.after + 0.5);

  function send(frame) {
    if (socket && socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify(frame));
      return true;
    }
    return false;
  }

  const OFFLINE_NOTICE = "Not connected: your message will be sent when the connection is back.";

  function notice(text) {
    const el = $("notice");
    el.textContent = text;
    el.classList.toggle("hidden", !text);
  }

  // ---- rendering -------------------------------------------------------

  function avatarNode(url, user) {
    if (url) {
      const img = document.createElement("img");
      img.className = "avatar";
      img.src = url;
      img.alt = "";
      return img;
    }
    const span = document.createElement("span");
    span.className = "initial";
    span.textContent = user.slice(0, 1).toUpperCase();
    return span;
  }

  function messageNode(message) {
    const li = document.createElement("li");
    li.className = "msg";
    if (message.seq != null) li.dataset.seq = message.seq;
    const meta = document.createElement("div");
    meta.className = "meta";
    const author = document.createElement("strong");
    // A backend's system sender ("system:NAME", see the server API): no
    // user can have a ':' in their name, so the badge cannot be faked.
    const system = message.from.startsWith("system:");
    author.textContent = system ? message.from.slice("system:".length) : message.from;
    if (system) {
      li.classList.add("system");
      const badge = document.createElement("span");
      badge.className = "badge";
      badge.textContent = "system";
      author.append(" ", badge);
    }
    const time = document.createElement("time");
    time.dateTime = message.ts;
    time.textContent = new Date(message.ts).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    time.title = new Date(message.ts).toLocaleString();
    meta.append(author, time);
    const room = rooms.get(message.room);
    if (message.from === me && isDirect(message.room) && room && room.delivered.has(message.seq)) {
      const tick = document.createElement("span");
      tick.className = "delivered";
      tick.textContent = "✓ delivered";
      meta.append(tick);
    }
    const text = document.createElement("div");
    text.className = "text";
    if (message.deleted) {
      li.classList.add("deleted");
      text.textContent = "This message was deleted.";
    } else {
      text.append(...richText(message.text));
      if (mentions(message.text, me) && message.from !== me) li.classList.add("mention");
    }
    // With the text, not the name line, which a grouped message hides.
    if (message.edited && !message.deleted) {
      const edited = document.createElement("span");
      edited.className = "edited";
      edited.textContent = " (edited)";
      edited.title = `edited ${new Date(message.edited).toLocaleString()}`;
      text.append(edited);
    }
    li.append(avatarNode(message.avatar, message.from), meta, text);
    if ((message.from === me || operator) && message.seq && message.id && !message.deleted) {
      const actions = actionsNode(message);
      li.append(actions);
      // A long press on a phone opens the actions instead of the text menu.
      li.addEventListener("contextmenu", (event) => {
        if (!matchMedia("(hover: none)").matches) return;
        event.preventDefault();
        actions.classList.add("open");
      });
    }
    return li;
  }

  /** Edit and delete, for the author's own stored messages: shown on hover,
   * and on a phone by a long press (or a tap on "⋯"). */
  function actionsNode(message) {
    const actions = document.createElement("div");
    actions.className = "actions";
    const more = document.createElement("button");
    more.type = "button";
    more.className = "more";
    more.textContent = "⋯";
    more.setAttribute("aria-label", "Message actions");
    more.addEventListener("click", () => actions.classList.toggle("open"));
    const edit = document.createElement("button");
    edit.type = "button";
    edit.className = "edit";
    edit.textContent = "Edit";
    edit.addEventListener("click", () => startEdit(message));
    if (message.from !== me) edit.hidden = true; // an operator deletes, never edits, others' messages
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "delete";
    remove.textContent = "Delete";
    remove.addEventListener("click", () => {
      if (confirm("Delete this message for everyone?")) {
        const frame = { type: "delete", room: message.room, id: message.id, ref: `${me}-${Date.now()}-${nextRef++}` };
        if (!send(frame)) notice("Not connected: the message was not deleted; try again when the connection is back.");
      }
    });
    actions.append(more, edit, remove);
    return actions;
  }

  /** Edits `message` in place: Enter saves, Escape gives up. `draft` is
   * what the box held before the list was drawn again. */
  function startEdit(message, draft = message.text, focus = true) {
    const li = $("messages").querySelector(`li.msg[data-seq="${message.seq}"]`);
    if (!li || li.querySelector("textarea.editing")) return;
    const text = li.querySelector(".text");
    const box = document.createElement("textarea");
    box.className = "editing";
    box.dataset.seq = message.seq;
    box.value = draft;
    box.setAttribute("aria-label", "Edit message");
    const done = () => {
      box.replaceWith(text);
      $("text").focus();
    };
    box.addEventListener("keydown", (event) => {
      if (event.key === "Escape") return done();
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        const changed = box.value;
        if (changed.trim() && changed !== message.text) {
          const frame = { type: "edit", room: message.room, id: message.id, text: changed, ref: `${me}-${Date.now()}-${nextRef++}` };
          if (!send(frame)) notice("Not connected: the message was not changed; try again when the connection is back.");
        }
        done();
      }
    });
    text.replaceWith(box);
    if (focus) box.focus();
  }

  const LINK = /\bhttps?:\/\/[^\s<>"']+[^\s<>"'.,;:!?)\]]/g;
  // A name may contain dots, but not end a sentence with one.
  const MENTION = /(^|[^A-Za-z0-9_.-])@([A-Za-z0-9_.-]{0,31}[A-Za-z0-9_-])/g;

  const mentions = (text, user) =>
    [...text.matchAll(MENTION)].some((match) => match[2].toLowerCase() === user.toLowerCase());

  /** Text as nodes: http(s) links as links that open apart (no other
   * scheme ever becomes one), @names marked; everything else as text. */
  function richText(text) {
    const nodes = [];
    let at = 0;
    for (const match of text.matchAll(LINK)) {
      nodes.push(...withMentions(text.slice(at, match.index)));
      const a = document.createElement("a");
      a.href = match[0];
      a.textContent = match[0];
      a.rel = "noopener noreferrer nofollow";
      a.target = "_blank";
      nodes.push(a);
      at = match.index + match[0].length;
    }
    nodes.push(...withMentions(text.slice(at)));
    return nodes;
  }

  function withMentions(text) {
    const nodes = [];
    let at = 0;
    for (const match of text.matchAll(MENTION)) {
      const start = match.index + match[1].length;
      nodes.push(document.createTextNode(text.slice(at, start)));
      const mark = document.createElement("mark");
      mark.className = match[2].toLowerCase() === me.toLowerCase() ? "mention me" : "mention";
      mark.textContent = `@${match[2]}`;
      nodes.push(mark);
      at = start + match[2].length + 1;
    }
    nodes.push(document.createTextNode(text.slice(at)));
    return nodes;
  }

  /** A desktop notification for a direct message or a mention the user
   * is not looking at, once they allowed notifications. */
  function notify(message) {
    if (!("Notification" in window) || Notification.permission !== "granted") return;
    if (document.visibilityState === "visible" && message.room === current) return;
    if (message.deleted) return;
    if (!isDirect(message.room) && !mentions(message.text, me)) return;
    const where = isDirect(message.room) ? "" : ` in ${label(message.room)}`;
    try {
      const shown = new Notification(`${message.from}${where}`, { body: message.text.slice(0, 200), tag: message.room });
      shown.onclick = () => {
        window.focus();
        select(message.room);
      };
    } catch {
      // Some mobile browsers allow notifications only from a service worker.
    }
  }

  /** "Today", "Yesterday" or the date, for the line between days. */
  function dayLabel(ts) {
    const day = new Date(ts);
    const today = new Date();
    const yesterday = new Date(today.getFullYear(), today.getMonth(), today.getDate() - 1);
    if (day.toDateString() === today.toDateString()) return "Today";
    if (day.toDateString() === yesterday.toDateString()) return "Yesterday";
    return day.toLocaleDateString([], { weekday: "long", year: "numeric", month: "long", day: "numeric" });
  }

  function dayNode(ts) {
    const li = document.createElement("li");
    li.className = "day";
    li.textContent = dayLabel(ts);
    return li;
  }

  /** A message right after another of the same author (same photo),
   * within minutes, shows without their name and photo again. */
  const GROUP_MS = 5 * 60 * 1000;
  function follows(previous, message) {
    return previous && previous.from === message.from && previous.avatar === message.avatar &&
      new Date(message.ts) - new Date(previous.ts) < GROUP_MS &&
      new Date(previous.ts).toDateString() === new Date(message.ts).toDateString();
  }

  /** Appends `message` after `previous` (or nothing) to `list`, with a day
   * line when the day changes. */
  function appendMessage(list, previous, message, before = null) {
    if (!previous || new Date(previous.ts).toDateString() !== new Date(message.ts).toDateString()) {
      list.insertBefore(dayNode(message.ts), before);
    }
    const li = messageNode(message);
    if (follows(previous, message)) li.classList.add("grouped");
    list.insertBefore(li, before);
    return li;
  }

  function renderMessages() {
    const list = $("messages");
    // An edit in progress survives the list being drawn again.
    const open = list.querySelector("textarea.editing");
    const editing = open && { seq: Number(open.dataset.seq), draft: open.value, focused: document.activeElement === open };
    list.replaceChildren();
    if (!current) return;
    const room = rooms.get(current);
    const ordered = [...room.messages.values()].sort((a, b) => order(a) - order(b));
    let previous = null;
    for (const message of ordered) {
      appendMessage(list, previous, message);
      previous = message;
    }
    for (const entry of pending.values()) if (entry.room === current) list.append(entry.li);
    $("load-older").classList.toggle("hidden", !room.hasOlder || ordered.length === 0 || order(ordered[0]) <= 1);
    list.scrollTop = list.scrollHeight;
    const edited = editing && room.messages.get(editing.seq);
    if (edited && !edited.deleted) startEdit(edited, editing.draft, editing.focused);
    renderSeen();
    markRead();
  }

  /** "Seen by" under the conversation: who has read up to its newest message. */
  function renderSeen() {
    const room = current && rooms.get(current);
    const newest = room ? newestMessageSeq(room) : 0;
    const author = room && newest > 0 ? room.messages.get(newest)?.from : null;
    const who = room && newest > 0
      ? [...room.reads].filter(([user, seq]) => user !== me && user !== author && seq >= newest).map(([user]) => user)
      : [];
    $("seen").textContent = who.length ? `Seen by ${who.sort().join(", ")}` : "";
  }

  /** Tells the room how far this user has read, when the page is being looked at. */
  function markRead() {
    const room = current && rooms.get(current);
    if (!room || document.visibilityState !== "visible") return;
    const newest = newestSeq(room);
    if (newest > room.readSent && send({ type: "read", room: current, seq: newest })) room.readSent = newest;
  }

  function renderOnline() {
    const list = $("online");
    list.replaceChildren();
    const room = current && rooms.get(current);
    for (const user of room ? room.online : []) {
      const li = document.createElement("li");
      if (user === me) {
        li.textContent = `${user} (you)`;
      } else {
        // Anyone online is a click away from a direct conversation.
        const open = document.createElement("button");
        open.type = "button";
        open.className = "link";
        open.textContent = user;
        open.title = `Message ${user}`;
        open.addEventListener("click", () => joinRoom(directRoom(me, user)));
        li.append(open);
      }
      list.append(li);
    }
  }

  function renderTyping() {
    const room = current && rooms.get(current);
    const who = room ? [...room.typing.keys()] : [];
    $("typing").textContent =
      who.length === 0 ? "" : who.length === 1 ? `${who[0]} is typing…` : `${who.join(", ")} are typing…`;
  }

  function roomButton(name) {
    const li = document.createElement("li");
    li.classList.toggle("current", name === current);
    const button = document.createElement("button");
    button.type = "button";
    button.className = "link";
    const unread = rooms.get(name).unread;
    button.textContent = label(name);
    button.classList.toggle("unread", unread > 0);
    if (unread > 0) {
      const count = document.createElement("span");
      count.className = "count";
      count.textContent = unread > 99 ? "99+" : String(unread);
      count.setAttribute("aria-label", `${unread} unread`);
      button.append(count);
    }
    button.addEventListener("click", () => select(name));
    li.append(button);
    if (name !== "general") {
      const leave = document.createElement("button");
      leave.type = "button";
      leave.className = "link leave";
      const what = isDirect(name) ? `Close the conversation with ${peerOf(name)}` : `Leave ${label(name)}`;
      leave.title = what;
      leave.setAttribute("aria-label", what);
      leave.textContent = "✕";
      leave.addEventListener("click", () => leaveRoom(name));
      li.append(leave);
    }
    return li;
  }

  /** The tab's title counts what is unread, so a background tab shows it. */
  function renderTitle() {
    const total = [...rooms.values()].reduce((sum, room) => sum + room.unread, 0);
    document.title = total > 0 ? `(${total}) Rookery` : "Rookery";
  }

  function renderRoomLists() {
    renderTitle();
    const names = [...rooms.keys()];
    $("room-list").replaceChildren(...names.filter((n) => !isDirect(n)).map(roomButton));
    $("dm-list").replaceChildren(...names.filter(isDirect).map(roomButton));
  }

  // Phones show the room list and the people as panels over the chat.
  function panel(button, id) {
    const open = $(id).classList.toggle("open");
    $(button).setAttribute("aria-expanded", String(open));
  }
  function closePanels() {
    for (const [button, id] of [["show-rooms", "rooms-panel"], ["show-people", "people-panel"]]) {
      $(id).classList.remove("open");
      $(button).setAttribute("aria-expanded", "false");
    }
  }
  $("show-rooms").addEventListener("click", () => panel("show-rooms", "rooms-panel"));
  $("show-people").addEventListener("click", () => panel("show-people", "people-panel"));

  function select(name) {
    closePanels();
    current = name;
    const chosen = roomState(name);
    chosen.unread = 0;
    // A direct conversation that started with a live message was never
    // joined: join it now for its history, presence and read receipts.
    if (!chosen.joined && !chosen.joining && socket && socket.readyState === WebSocket.OPEN) {
      chosen.joining = true;
      send({ type: "join", room: name });
    }
    $("room-title").textContent = label(name);
    renderRoomLists();
    renderMessages();
    renderOnline();
    renderTyping();
  }

  // ---- protocol --------------------------------------------------------

  function addMessage(message) {
    const room = roomState(message.room);
    if (message.seq == null) {
      // A fast message, live before it is stored.
      message.after = newestSeq(room);
      if (room.messages.has(`id:${message.id}`)) return;
      room.messages.set(`id:${message.id}`, message);
    } else {
      if (room.messages.has(message.seq)) return; // already shown
      room.messages.set(message.seq, message);
      if (message.delivered) room.delivered.add(message.seq);
      if (room.messages.delete(`id:${message.id}`)) {
        if (message.room === current) renderMessages();
        return; // the stored copy of a fast message already on screen
      }
    }
    if (message.from !== me) {
      if (fetching) fetchedFrom.add(message.from);
      notify(message);
    }
    const away = document.visibilityState !== "visible";
    if (message.room !== current || away) {
      if (message.from !== me) room.unread += 1;
      renderRoomLists();
      if (message.room !== current) return;
    }
    const list = $("messages");
    const last = list.querySelector("li.msg:not(.pending):last-of-type");
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    const newest = [...list.querySelectorAll("li.msg[data-seq]")].pop();
    if (!newest || Number(newest.dataset.seq) < message.seq) {
      const shown = [...room.messages.values()].filter((m) => m !== message && order(m) < order(message));
      const previous = shown.sort((a, b) => order(a) - order(b)).pop() || null;
      appendMessage(list, previous, message, list.querySelector("li.pending"));
    } else {
      renderMessages();
    }
    if (atBottom || last === null || message.from === me) list.scrollTop = list.scrollHeight;
    else $("new-below").classList.remove("hidden");
    // Screen readers hear what arrives, not the list rebuilt on a switch.
    if (message.from !== me && !message.deleted) $("announce").textContent = `${message.from}: ${message.text.slice(0, 300)}`;
    renderSeen();
    markRead();
  }

  /** Stored messages (history, resume): keyed by seq, replacing fast copies. */
  function storeMessages(room, messages) {
    for (const message of messages) {
      room.messages.delete(`id:${message.id}`);
      room.messages.set(message.seq, message);
      if (message.delivered) room.delivered.add(message.seq);
    }
  }

  /** An edit or a delete of a message, live or replayed: the message shows
   * as it is now (if the page has it; history brings it so otherwise). */
  function change(frame, render = true) {
    const room = roomState(frame.room);
    room.changedUpTo = Math.max(room.changedUpTo || 0, frame.seq);
    const message = messageById(room, frame.id);
    if (!message) return;
    if (frame.type === "edit") {
      message.text = frame.text;
      message.edited = frame.ts;
    } else {
      message.deleted = true;
      delete message.text;
    }
    if (render && frame.room === current) {
      const list = $("messages");
      const fromBottom = list.scrollHeight - list.scrollTop;
      renderMessages();
      list.scrollTop = list.scrollHeight - fromBottom;
    }
  }

  /** What an error means to a person; the server's text where it is one. */
  function friendly(frame) {
    switch (frame.code) {
      case "rate_limited": return "you are sending too fast; wait a moment and try again";
      case "unknown_user": return "there is no user by that name";
      case "text_too_long": return "the message is too long (at most 4000 characters)";
      case "empty_text": return "the message is empty";
      case "forbidden": return "you are not allowed to do that here";
      case "not_found": return "that message is no longer there";
      case "store_unavailable": return "the server could not save it; try again";
      default: return frame.message;
    }
  }

  const handlers = {
    joined(frame) {
      const room = roomState(frame.room);
      room.joined = true;
      room.joining = false;
      room.online = frame.online;
      storeMessages(room, frame.history);
      // Drawn once below, with the rest of the replay.
      for (const changed of frame.changes || []) change(changed, false);
      for (const { user, seq } of frame.read) room.reads.set(user, Math.max(seq, room.reads.get(user) || 0));
      // A resume replays at most the newest 500 messages: fetch the rest of
      // the gap, page by page, through history (its answers fill in below).
      const since = room.resumedFrom;
      delete room.resumedFrom;
      const replayed = [...frame.history, ...(frame.changes || [])].map((event) => event.seq);
      const oldestReplayed = replayed.length > 0 ? Math.min(...replayed) : null;
      if (since != null && oldestReplayed != null && oldestReplayed > since + 1) {
        room.fillGapAfter = since;
        send({ type: "history", room: frame.room, before: oldestReplayed, limit: 100 });
      }
      if (frame.room === current) select(current);
    },
    message(frame) {
      addMessage(frame);
    },
    edit: change,
    delete: change,
    pong() {},
    ack(frame) {
      const entry = pending.get(frame.ref);
      if (entry) {
        entry.li.remove();
        pending.delete(frame.ref);
      }
    },
    delivered(frame) {
      const room = roomState(frame.room);
      room.delivered.add(frame.seq);
      if (frame.room === current) renderMessages();
    },
    read(frame) {
      const room = roomState(frame.room);
      room.reads.set(frame.user, Math.max(frame.seq, room.reads.get(frame.user) || 0));
      if (frame.room === current) renderSeen();
    },
    pending(frame) {
      // Direct messages that reached none of our connections while away:
      // fetch them (they arrive as `message` frames into their rooms).
      missedCount = frame.count;
      fetchedFrom.clear();
      fetching = true;
      send({ type: "fetch_missed", limit: 100 });
    },
    fetch_missed_complete(frame) {
      if (frame.left > 0) return send({ type: "fetch_missed", limit: 100 });
      fetching = false;
      const who = [...fetchedFrom].sort();
      const from = who.length ? ` from ${who.join(", ")}` : "";
      notice(`${missedCount} message${missedCount === 1 ? "" : "s"} arrived while you were away${from}`);
      setTimeout(() => notice(""), 8000);
    },
    user_connected() {},
    user_disconnected() {},
    presence(frame) {
      const room = roomState(frame.room);
      room.online = frame.online;
      if (frame.room === current) renderOnline();
    },
    typing(frame) {
      const room = roomState(frame.room);
      clearTimeout(room.typing.get(frame.user));
      if (frame.active) {
        room.typing.set(
          frame.user,
          setTimeout(() => {
            room.typing.delete(frame.user);
            renderTyping();
          }, TYPING_SHOWN_MS),
        );
      } else {
        room.typing.delete(frame.user);
      }
      if (frame.room === current) renderTyping();
    },
    history(frame) {
      const room = roomState(frame.room);
      if (frame.messages.length === 0) room.hasOlder = false;
      storeMessages(room, frame.messages);
      const oldest = frame.messages.length > 0 ? frame.messages[0].seq : null;
      if (room.fillGapAfter != null) {
        if (oldest != null && oldest > room.fillGapAfter + 1) {
          send({ type: "history", room: frame.room, before: oldest, limit: 100 });
        } else {
          delete room.fillGapAfter;
        }
      }
      if (frame.room === current) {
        const list = $("messages");
        const fromBottom = list.scrollHeight - list.scrollTop;
        renderMessages();
        list.scrollTop = list.scrollHeight - fromBottom; // keep the reader's place
      }
    },
    reconnect() {
      // This replica is shutting down. Let what is in flight get its ack,
      // then reconnect (the proxy picks a live replica) and resume there.
      $("status").textContent = "the server is restarting; reconnecting…";
      const asked = Date.now();
      const leave = () => {
        if (pending.size > 0 && Date.now() - asked < MOVE_WAIT_MS) return setTimeout(leave, 50);
        backoff = MOVE_BACKOFF_MS;
        socket.close(1000, "moving to another server");
      };
      leave();
    },
    error(frame) {
      const entry = frame.ref != null && pending.get(frame.ref);
      if (entry && (frame.code === "store_uncertain" || frame.code === "overloaded")) {
        // Maybe stored (or refused for now): ask again in a moment; a
        // stored one is acked under its seq, not stored twice.
        entry.li.querySelector(".meta").textContent = "sending…";
        entry.attempts = (entry.attempts || 0) + 1;
        const pause = Math.min(1000 * 2 ** (entry.attempts - 1), MAX_BACKOFF_MS);
        setTimeout(() => pending.has(frame.ref) && send({ ...entry.frame, retry: true }), pause);
      } else if (entry) {
        entry.li.classList.add("failed");
        entry.li.querySelector(".meta").textContent = `not sent: ${friendly(frame)}`;
        pending.delete(frame.ref);
      } else {
        notice(friendly(frame));
        setTimeout(() => notice(""), 5000);
      }
    },
  };

  setInterval(() => {
    if (!socket || socket.readyState !== WebSocket.OPEN) return;
    const quiet = Date.now() - lastFrameAt;
    // Only an unanswered ping counts: a background tab's timers may run a
    // minute late, which says nothing about the connection.
    if (pingedAt >= lastFrameAt && Date.now() - pingedAt > PONG_WAIT_MS) {
      // A stopped replica never finishes a closing handshake: drop this
      // socket without waiting and connect anew.
      const stale = socket;
      socket = null;
      stale.close(4000, "no answer");
      $("status").textContent = "disconnected, reconnecting…";
      setTimeout(connect, MOVE_BACKOFF_MS);
    } else if (quiet > QUIET_MS && pingedAt < lastFrameAt) {
      pingedAt = Date.now();
      send({ type: "ping" });
    }
  }, 1000);

  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${scheme}://${location.host}/ws`);
    socket = ws;
    $("status").textContent = "connecting…";
    let opened = false;
    ws.addEventListener("open", () => {
      opened = true;
      if (ws !== socket) return ws.close();
      lastFrameAt = Date.now();
      backoff = 500;
      $("status").textContent = "connected";
      if ($("notice").textContent === OFFLINE_NOTICE) notice("");
      // Rooms already on screen resume after their newest message, so what
      // was said while we were away (on this replica or another) is replayed
      // exactly once; rooms with nothing shown yet join afresh.
      const resume = {};
      for (const [name, room] of rooms) {
        // A new connection is a member of nothing until these answer.
        room.joined = false;
        room.joining = true;
        const newest = newestSeq(room);
        if (newest > 0) {
          resume[name] = newest;
          room.resumedFrom = newest;
        } else {
          send({ type: "join", room: name });
        }
      }
      if (Object.keys(resume).length > 0) send({ type: "resume", rooms: resume });
      // Sends the last connection never answered: if the server stored one,
      // the retry is acked under its seq instead of being stored again.
      for (const entry of pending.values()) send({ ...entry.frame, retry: true });
    });
    ws.addEventListener("message", (event) => {
      if (ws !== socket) return;
      lastFrameAt = Date.now();
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      const handler = handlers[frame.type];
      if (handler) handler(frame);
    });
    ws.addEventListener("close", (event) => {
      // A socket given up for silence was replaced already.
      if (ws !== socket) return;
      $("status").textContent = "disconnected, reconnecting…";
      if (event.code === 1008) {
        for (const entry of pending.values()) {
          entry.li.classList.add("failed");
          entry.li.querySelector(".meta").textContent = "not sent: disconnected";
        }
        pending.clear();
        // Closed by the application's backend: coming back is allowed,
        // after a pause (it may refuse reconnects for a while).
        if (event.reason === "disconnected") {
          $("status").textContent = "disconnected by the server, reconnecting…";
          backoff = Math.max(backoff, 5000);
          setTimeout(connect, backoff);
          backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
          return;
        }
        // Refused: reconnecting would be refused again (or take the session
        // back from the newer tab).
        $("status").textContent =
          event.reason === "replaced" ? "opened in another window" :
          event.reason === "revoked" ? "signed out by the server" : "disconnected";
        // Logged out in another tab: this one's session is gone too.
        if (event.reason === "logged_out") location.assign("/login");
        return;
      }
      // Refused before it opened: perhaps the login ended (expired, or
      // logged out elsewhere). The page itself then redirects to the login.
      if (!opened) {
        fetch("/", { redirect: "manual" })
          .then((response) => {
            if (response.type === "opaqueredirect") location.assign("/login");
          })
          .catch(() => {});
      }
      setTimeout(connect, backoff);
      backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
    });
  }

  function joinRoom(name) {
    const room = roomState(name);
    if (!room.joined && !room.joining && send({ type: "join", room: name })) room.joining = true;
    select(name);
  }

  function leaveRoom(name) {
    // A direct conversation stays on the server; it only leaves the list.
    if (!isDirect(name)) send({ type: "leave", room: name });
    rooms.delete(name);
    remember();
    if (current === name) select("general");
    else renderRoomLists();
  }

  function stopTyping() {
    clearTimeout(typingTimer);
    if (typingSent && current) send({ type: "typing", room: current, active: false });
    typingSent = false;
  }

  // ---- user actions ----------------------------------------------------

  $("send-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = $("text");
    const text = input.value;
    if (!text.trim() || !current) return;
    const ref = `${me}-${Date.now()}-${nextRef++}`;
    const frame = isDirect(current)
      ? { type: "direct", to: peerOf(current), text, ref, confirm: true }
      : { type: "send", room: current, text, ref };
    // Offline, the message waits with the others the connection owes: the
    // reconnect sends it (as a retry, so it is stored once either way).
    if (!send(frame)) notice(OFFLINE_NOTICE);
    const li = messageNode({ room: current, seq: 0, from: me, text, ts: new Date().toISOString(), avatar: $("my-avatar").getAttribute("src") });
    li.classList.add("pending");
    delete li.dataset.seq;
    $("messages").append(li);
    $("messages").scrollTop = $("messages").scrollHeight;
    pending.set(ref, { room: current, li, frame });
    input.value = "";
    stopTyping();
  });

  $("text").addEventListener("keydown", (event) => {
    // Up in an empty box edits your last message, as in most chats.
    if (event.key === "ArrowUp" && !$("text").value && current) {
      const own = [...rooms.get(current).messages.values()]
        .filter((message) => message.from === me && message.seq && !message.deleted)
        .sort((a, b) => a.seq - b.seq)
        .pop();
      if (own) {
        event.preventDefault();
        startEdit(own);
        return;
      }
    }
    // Enter that ends an input-method composition picks a word, not a send.
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing && event.keyCode !== 229) {
      event.preventDefault();
      $("send-form").requestSubmit();
    }
  });

  $("text").addEventListener("input", () => {
    if (!current) return;
    if (!typingSent) {
      send({ type: "typing", room: current, active: true });
      typingSent = true;
    }
    clearTimeout(typingTimer);
    typingTimer = setTimeout(stopTyping, TYPING_IDLE_MS);
  });

  $("load-older").addEventListener("click", () => {
    const room = rooms.get(current);
    const oldest = Math.min(...room.messages.keys());
    send({ type: "history", room: current, before: oldest, limit: 50 });
  });

  $("join-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const name = $("join-name").value.trim();
    if (name) joinRoom(name);
    $("join-name").value = "";
  });

  for (const button of document.querySelectorAll("#suggested button[data-room]")) {
    button.addEventListener("click", () => joinRoom(button.dataset.room));
  }

  $("dm-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const peer = $("dm-name").value.trim();
    if (peer) joinRoom(directRoom(me, peer));
    $("dm-name").value = "";
  });

  $("photo-button").addEventListener("click", () => $("avatar-input").click());

  $("avatar-input").addEventListener("change", async () => {
    const file = $("avatar-input").files[0];
    if (!file) return;
    const body = new FormData();
    body.append("avatar", file);
    try {
      const response = await fetch("/avatar", { method: "POST", body });
      const reply = await response.json();
      if (!response.ok) throw new Error(reply.error || response.statusText);
      const img = $("my-avatar");
      img.src = reply.avatar;
      img.classList.remove("hidden");
      notice("");
    } catch (err) {
      notice(`Photo not changed: ${err.message}`);
    }
    $("avatar-input").value = "";
  });

  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible" && current) {
      rooms.get(current).unread = 0;
      renderRoomLists();
    }
    markRead();
  });

  $("messages").addEventListener("scroll", () => {
    const list = $("messages");
    if (list.scrollHeight - list.scrollTop - list.clientHeight < 40) $("new-below").classList.add("hidden");
  });
  $("new-below").addEventListener("click", () => {
    const list = $("messages");
    list.scrollTop = list.scrollHeight;
    $("new-below").classList.add("hidden");
  });

  const askNotify = $("enable-notify");
  if ("Notification" in window && Notification.permission === "default") {
    askNotify.classList.remove("hidden");
    askNotify.addEventListener("click", async () => {
      await Notification.requestPermission();
      askNotify.classList.add("hidden");
    });
  }

  for (const name of remembered()) roomState(name);
  select(remembered()[0]);
  connect();
})();
