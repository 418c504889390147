// Compiled by `tsc --noEmit` (never run): the package used by its name, as
// an application would, so the declarations are checked for what users
// write, and misuse is checked to be a type error (@ts-expect-error fails
// the build if the line below it compiles).
import {
  Client,
  RookeryError,
  ServerApi,
  connect,
  directRoom,
  login,
  type Changed,
  type Delete,
  type Edit,
  type GroupOutcome,
  type Message,
  type Room,
  type Sent,
  type StaleInfo,
} from "@rookery/client";

export async function browserLike(): Promise<void> {
  const client = new Client({ url: "wss://chat.example.com/ws" });
  await client.connect();
  const room: Room = await client.join("general");
  const off = room.on("message", (m: Message) => console.log(m.seq, m.from, m.text));
  const sent: Sent = await room.send("hello");
  const seq: number = sent.seq;
  const id: string = sent.id;
  console.log(seq, id);
  const nothing: void = await room.send("fast one", { delivery: "fast" });
  console.log(nothing);
  room.on("stale", async (info: StaleInfo) => {
    console.log(info.missed);
    const fresh: Message[] = await room.reload();
    console.log(fresh.length);
  });
  // Edits and deletes: events of their own, and calls resolving with the change's seq.
  room.on("edit", (e: Edit) => console.log(e.seq, e.id, e.from, e.text, e.ts));
  room.on("delete", ({ id, from, seq }: Delete) => console.log(id, from, seq));
  client.on("edit", (e) => console.log(e.room, e.id));
  const edited: Changed = await room.edit(sent.id, "hello, fixed");
  const removed: Changed = await room.delete(sent.id, { ref: "delete-1" });
  console.log(edited.seq, removed.seq, removed.ref);
  room.on("message", (m) => {
    // A message read back may be edited or deleted; a deleted one has no text.
    const shown: string = m.deleted ? "(deleted)" : (m.text ?? "");
    const when: string | undefined = m.edited;
    console.log(shown, when);
    // @ts-expect-error: text is absent on a deleted message
    console.log(m.text.length);
  });
  try {
    await room.edit("no-such-id", "x");
  } catch (error) {
    if (error instanceof RookeryError && (error.code === "not_found" || error.code === "forbidden")) console.log(error.code);
  }
  // @ts-expect-error: an edit needs its new text
  await room.edit(sent.id);
  // @ts-expect-error: an edit event carries no avatar
  room.on("edit", (e) => console.log(e.avatar));
  // @ts-expect-error: a delete event carries no text
  room.on("delete", (d) => console.log(d.text));
  room.on("typing", ({ user, active }) => console.log(user, active));
  room.on("presence", ({ online }) => console.log(online.join(", ")));
  room.typing();
  room.read(sent.seq);
  for await (const page of room.history({ limit: 50 })) {
    const first: number = page[0].seq; // stored messages always have a seq
    console.log(first);
  }
  try {
    await room.send("");
  } catch (error) {
    if (error instanceof RookeryError && error.code === "empty_text") console.log(error.message);
  }
  client.on("state", (state) => {
    // @ts-expect-error: not a state
    if (state === "connected") console.log(state);
  });
  off();
  // @ts-expect-error: text must be a string
  await room.send(42);
  // @ts-expect-error: no such event
  room.on("messages", () => {});
  // @ts-expect-error: a message event carries a Message, not a string
  room.on("message", (m: string) => console.log(m));
  // @ts-expect-error: only reliable and fast deliveries exist
  await room.send("x", { delivery: "slow" });
  client.close();
}

export async function nodeLike(): Promise<void> {
  const { cookie, user } = await login({ url: "http://127.0.0.1:8080", name: "bot", password: "secret-pass" });
  const client = new Client({ url: "ws://127.0.0.1:8080/ws", cookie: cookie ?? undefined, user, WebSocket: globalThis.WebSocket });
  await client.connect();
  const dm = await client.direct("alice", "hi", { confirm: true });
  console.log(dm.room === directRoom(user, "alice"));
  client.on("delivered", (receipt) => console.log(receipt.to, receipt.seq));
  const outcomes: GroupOutcome[] = await client.group(["alice", "bob"], "hi both");
  for (const outcome of outcomes) {
    if (outcome.ok) console.log(outcome.sent.seq);
    else console.log(outcome.to, outcome.error.code);
  }
  const other = await connect({ url: "http://127.0.0.1:8080", credentials: { name: "bot2", password: "secret-pass" } });
  other.close();
  client.close();
}

export async function backend(): Promise<void> {
  const api = new ServerApi({ url: "http://127.0.0.1:8080", apiKey: "0123456789abcdef" });
  const published = await api.publish("general", { system: "deploys", text: "4.2 is live" }, { idempotencyKey: "deploy-42" });
  console.log(published.seq);
  const page = await api.history("general", { before: 100, limit: 50 });
  console.log(page.more, page.messages.map((m) => m.seq));
  await api.disconnect("mallory", { reason: "revoked", refuse_seconds: 600 });
  // @ts-expect-error: exactly one of `from` and `system`
  await api.publish("general", { from: "alice", system: "x", text: "both" });
  // @ts-expect-error: not a reason the API knows
  await api.disconnect("mallory", { reason: "banned" });
}
