// The socket.io peer: the same chat semantics as Rookery, minimal but fair.
//   PORT=3000 [REDIS_URL=redis://127.0.0.1:6379] node server.js
// - a connection names its user in the handshake query (`?user=`); Rookery's
//   HTTP login happens before any measurement, so it is left out here;
// - `join {room}` → `joined {room}`;
// - `send {room,text,ref}` → `message` to every member of the room,
//   the sender included (as Rookery does), then `ack {ref,room}` if ref;
// - `direct {to,text,ref}` → `message` to every connection of both users;
// - with REDIS_URL, @socket.io/redis-adapter spreads rooms over replicas.
// It keeps no history: messages live in memory only, where Rookery stores
// each one before it acks or delivers it. BENCHMARKS.md says so.
import { createServer } from "node:http";
import { Server } from "socket.io";

const port = Number(process.env.PORT ?? 3000);
const httpServer = createServer();
const io = new Server(httpServer, {
  transports: ["websocket"],
  serveClient: false,
  maxHttpBufferSize: 64 * 1024,
});

if (process.env.REDIS_URL) {
  const { createAdapter } = await import("@socket.io/redis-adapter");
  const { createClient } = await import("redis");
  const pub = createClient({ url: process.env.REDIS_URL });
  const sub = pub.duplicate();
  await Promise.all([pub.connect(), sub.connect()]);
  io.adapter(createAdapter(pub, sub));
}

const directRoom = (a, b) => `@${[a, b].sort().join(":")}`;

io.on("connection", (socket) => {
  const user = String(socket.handshake.query.user ?? "");
  if (!/^[A-Za-z0-9_.-]{1,32}$/.test(user)) return socket.disconnect(true);
  socket.join(`user:${user}`);

  socket.on("join", ({ room } = {}) => {
    if (typeof room !== "string") return;
    socket.join(room);
    socket.emit("joined", { room });
  });

  socket.on("send", ({ room, text, ref } = {}) => {
    if (typeof room !== "string" || typeof text !== "string" || !socket.rooms.has(room)) return;
    io.to(room).emit("message", { room, from: user, text, ts: new Date().toISOString() });
    if (ref != null) socket.emit("ack", { ref, room });
  });

  socket.on("direct", ({ to, text, ref } = {}) => {
    if (typeof to !== "string" || typeof text !== "string") return;
    const room = directRoom(user, to);
    io.to(`user:${user}`).to(`user:${to}`).emit("message", {
      room, from: user, text, ts: new Date().toISOString(),
    });
    if (ref != null) socket.emit("ack", { ref, room });
  });
});

httpServer.listen(port, "127.0.0.1", () => {
  console.log(`listening on http://127.0.0.1:${port}`);
});
