// Browser test: real headless Chromium (Debian's) driven by playwright-core
// against a real Rookery binary on a free loopback port.
//   node tests/browser/run.mjs <path to rookery binary>
// Over 400 lines: one browser session walked through every feature in
// order, each step building on the last (login, rooms, DMs, photos...).
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";

const binary = resolve(process.argv[2] ?? "target/debug/rookery");
// Where the desktop and phone screenshots go (scripts/screenshots.sh: docs/screenshots).
const shots = process.env.SCREENSHOT_DIR ?? "target";
const dataDir = mkdtempSync(join(tmpdir(), "rookery-browser-"));
const XSS = "<img src=x onerror=alert(1)>";
const PASSWORD = "browser-pass-1";

// A 2x2 red PNG, enough to be a real image.
const PNG = Buffer.from(
  "iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAFklEQVR4nGP8z8DAwMDAxMDAwMDAAAANHQEDasKb6QAAAABJRU5ErkJggg==",
  "base64",
);

function startServer() {
  return new Promise((resolveStart, reject) => {
    const server = spawn(binary, [], {
      // No rate limit: one step below sends hundreds of messages at once.
      env: { ...process.env, PORT: "0", HOST: "127.0.0.1", DATA_DIR: dataDir, RUST_LOG: "warn", RATE_LIMIT: "0", USER_RATE_LIMIT: "0", REGISTRATIONS_PER_HOUR: "0" },
      stdio: ["ignore", "pipe", "inherit"],
    });
    const timer = setTimeout(() => reject(new Error("server did not start in 30 s")), 30000);
    server.stdout.on("data", (chunk) => {
      const match = /listening on http:\/\/([\d.]+:\d+)/.exec(chunk.toString());
      if (match) {
        clearTimeout(timer);
        resolveStart({ server, base: `http://${match[1]}` });
      }
    });
    server.on("exit", (code) => reject(new Error(`server exited early with ${code}`)));
  });
}

/** Every uncaught error and console error of every page: the test fails
 * on any. The only ones expected are the browser's own reports of a
 * WebSocket that could not connect, in the steps that cut the network or
 * stop the server on purpose. */
const pageErrors = [];
const EXPECTED_CONSOLE = /^WebSocket connection to '.*' failed/;
function watch(page, name, expected = EXPECTED_CONSOLE) {
  page.on("pageerror", (error) => pageErrors.push(`${name}: ${error.stack ?? error}`));
  page.on("console", (message) => {
    if (message.type() === "error" && !expected.test(message.text())) {
      pageErrors.push(`${name} console: ${message.text()}`);
    }
  });
}

/** Sends `text` from `page` with Enter: the box clears at once, and the
 * message is shown exactly once, acked (no longer pending). */
async function say(page, text) {
  await page.fill("#text", text);
  await page.press("#text", "Enter");
  assert.equal(await page.inputValue("#text"), "", `the box is cleared after sending ${text}`);
  const acked = page.locator("#messages li.msg[data-seq] .text", { hasText: text });
  await acked.first().waitFor();
  await page.waitForFunction(
    (sent) => ![...document.querySelectorAll("#messages li.pending .text")].some((node) => node.textContent === sent),
    text,
  );
  assert.equal(
    await page.locator("#messages li.msg .text").filter({ hasText: new RegExp(`^${text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}$`) }).count(),
    1,
    `${text} is shown once`,
  );
}
/** Who has an account already. */
const registered = new Set();

async function login(browser, base, name, beforeNavigation = async () => {}, contextOptions = {}) {
  const context = await browser.newContext(contextOptions);
  const page = await context.newPage();
  watch(page, name);
  await beforeNavigation(page);
  page.on("dialog", (dialog) => {
    // The one dialog the page shows: deleting a message asks first.
    if (dialog.type() === "confirm" && dialog.message() === "Delete this message for everyone?") {
      return dialog.accept();
    }
    throw new Error(`a script from a chat message ran (${dialog.type()} dialog)`);
  });
  await page.goto(`${base}/login`);
  await page.fill("input[name=name]", name);
  await page.fill("input[name=password]", PASSWORD);
  // Logging in and creating an account are two buttons: a mistyped name
  // must not become a new account.
  await page.click(registered.has(name) ? "button[value=login]" : "button[value=register]");
  registered.add(name);
  await page.waitForURL(`${base}/`);
  await page.waitForSelector("#status:text-is('connected')");
  return page;
}

const { server, base } = await startServer();
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
try {
  const alice = await login(browser, base, "alice");
  const bob = await login(browser, base, "bob");
  await alice.waitForSelector("#online li:has-text('bob')");
  // The online list starts a conversation.
  await alice.click("#online button:text-is('bob')");
  await alice.waitForSelector("#room-title:text-is('@bob')");
  await alice.click("#room-list button:text('#general')");

  // Logging in with a mistyped name says so instead of making an account;
  // after a wrong password the cursor is in the password field; the rules
  // are on the page before any mistake.
  {
    const context = await browser.newContext();
    const page = await context.newPage();
    // Refused logins answer 401 and 409, which the browser reports.
    watch(page, "login page", /status of (401|409)/);
    await page.goto(`${base}/login`);
    assert.match(await page.textContent("#password-rules"), /at least 8 characters/);
    await page.fill("input[name=name]", "alcie");
    await page.fill("input[name=password]", PASSWORD);
    await page.click("button[value=login]");
    await page.waitForSelector(".error:text('No account is called')");
    await page.fill("input[name=name]", "alice");
    await page.fill("input[name=password]", "not her password");
    await page.click("button[value=login]");
    await page.waitForSelector(".error:text('Wrong password')");
    assert.equal(await page.evaluate(() => document.activeElement.name), "password");
    await page.fill("input[name=password]", PASSWORD);
    await page.click("button[value=register]");
    await page.waitForSelector(".error:text('is taken')");
    await context.close();
  }

  // A message from alice appears on bob's page, once.
  await say(alice, "hello from alice");
  await bob.waitForSelector("#messages li.msg .text:text('hello from alice')");
  assert.equal(await bob.locator("#messages li.msg .text", { hasText: "hello from alice" }).count(), 1);
  assert.equal(await alice.inputValue("#text"), "", "the box is cleared once sent");
  await alice.waitForSelector("#messages li.msg[data-seq] .text:text('hello from alice')");
  assert.equal(await alice.locator("#messages li.pending").count(), 0, "the ack settles it");

  // Typing indicator.
  await bob.type("#text", "typing…");
  await alice.waitForSelector("#typing:text('bob is typing')");
  await bob.fill("#text", "");

  // Avatar upload renders next to alice's next message on bob's page.
  const upload = mkdtempSync(join(tmpdir(), "rookery-png-"));
  writeFileSync(join(upload, "me.png"), PNG);
  await alice.setInputFiles("#avatar-input", join(upload, "me.png"));
  await alice.waitForSelector("#my-avatar:not(.hidden)");
  const avatarUrl = await alice.getAttribute("#my-avatar", "src");
  assert.match(avatarUrl, /^\/avatars\/[0-9a-f]+\.png$/);
  await say(alice, "new photo");
  const img = bob.locator("#messages li.msg", { hasText: "new photo" }).locator("img.avatar");
  await img.waitFor();
  assert.equal(await img.getAttribute("src"), avatarUrl);
  assert.ok(await img.evaluate((el) => el.complete && el.naturalWidth === 2), "the photo loads");
  rmSync(upload, { recursive: true });

  // Markup in a message is shown as text and never runs.
  await say(bob, XSS);
  const shown = alice.locator("#messages li.msg .text", { hasText: "onerror" });
  await shown.waitFor();
  assert.equal(await shown.textContent(), XSS);
  assert.equal(await alice.locator("#messages img[src=x]").count(), 0, "no element was injected");

  // Links open apart and only for http(s); @mentions of the reader are
  // marked; a day line heads the day; a second message in a row from the
  // same author shows without their name again.
  await say(alice, "see https://example.org/a?b=1, not javascript:alert(1) @bob");
  const linked = bob.locator("#messages li.msg", { hasText: "example.org" });
  await linked.waitFor();
  const link = linked.locator("a");
  assert.equal(await link.count(), 1, "one link, not the javascript: one");
  assert.equal(await link.getAttribute("href"), "https://example.org/a?b=1");
  assert.match(await link.getAttribute("rel"), /noopener/);
  assert.equal(await linked.locator("mark.mention.me").textContent(), "@bob");
  assert.ok(await linked.evaluate((li) => li.classList.contains("mention")));
  assert.equal(await bob.locator("#messages li.day").first().textContent(), "Today");
  await say(alice, "and another thing");
  await bob.waitForSelector("#messages li.msg.grouped .text:text-is('and another thing')");

  // Edit and delete: on hover for the author only; edited in place (and
  // with Up in an empty box), deleted after a confirmation; both reach
  // the other page live and stay after a reload.
  await say(alice, "a typo hree");
  // Found by seq: once editing, its text is in a box, not in the item.
  const typoSeq = await alice.locator("#messages li.msg", { hasText: "a typo hree" }).getAttribute("data-seq");
  const typo = alice.locator(`#messages li.msg[data-seq="${typoSeq}"]`);
  assert.equal(await typo.locator("button.edit").isVisible(), false, "actions wait for a hover");
  await typo.hover();
  await typo.locator("button.edit").click();
  await typo.locator("textarea.editing").fill("a typo, three");
  await typo.locator("textarea.editing").press("Enter");
  const fixed = bob.locator("#messages li.msg", { hasText: "a typo, three" });
  await fixed.locator(".edited").waitFor();
  assert.equal(await bob.locator("#messages li.msg .text", { hasText: "typo hree" }).count(), 0);
  assert.equal(await fixed.locator(".actions").count(), 0, "no actions on someone else's message");
  await say(alice, "frist");
  await alice.press("#text", "ArrowUp");
  await alice.locator("#messages textarea.editing").fill("first");
  await alice.locator("#messages textarea.editing").press("Enter");
  await bob.locator("#messages li.msg .text", { hasText: /^first \(edited\)$/ }).waitFor();
  const first = alice.locator("#messages li.msg", { hasText: "first (edited)" }).last();
  await first.hover();
  await first.locator("button.delete").click();
  await bob.waitForSelector("#messages li.msg.deleted .text:text-is('This message was deleted.')");
  assert.equal(await bob.locator("#messages li.msg .text", { hasText: /^first/ }).count(), 0, "its text is gone");
  await alice.waitForSelector("#messages li.msg.deleted");
  await alice.locator("#messages li.msg", { hasText: "a typo, three" }).hover();
  await alice.screenshot({ path: join(shots, "edits.png") });
  await bob.reload();
  await bob.waitForSelector("#messages li.msg.deleted");
  await bob.locator("#messages li.msg", { hasText: "a typo, three" }).locator(".edited").waitFor();
  await bob.waitForSelector("#status:text-is('connected')");

  // A direct message while bob looks at #general: counted on its button
  // and in the tab title; opening it joins it (history, no error), and
  // the count goes.
  await alice.fill("#dm-name", "bob");
  await alice.press("#dm-name", "Enter");
  await alice.waitForSelector("#room-title:text('@bob')");
  await say(alice, "psst, bob");
  await bob.waitForSelector("#dm-list button.unread .count:text-is('1')");
  assert.equal(await bob.title(), "(1) Rookery");
  await bob.click("#dm-list button:text('@alice')");
  await bob.waitForSelector("#messages li.msg .text:text-is('psst, bob')");
  await bob.waitForFunction(() => document.title === "Rookery");
  await bob.waitForTimeout(300);
  assert.equal(await bob.isVisible("#notice"), false, "no 'join first' error");
  await alice.waitForSelector("#seen:text('Seen by bob')");
  await bob.click("#room-list button:text('#general')");
  await alice.click("#room-list button:text('#general')");

  // Reloading keeps the conversation (history from the server).
  await bob.reload();
  await bob.waitForSelector("#messages li.msg .text:text('hello from alice')");

  // Read receipts: bob's page has shown everything, so alice's says so.
  await alice.waitForSelector("#seen:text('Seen by bob')");

  // Offline messages: dave registers and leaves; alice writes to him. He
  // gets it at his next login, and alice's page shows it was delivered.
  const daveFirst = await login(browser, base, "dave");
  await daveFirst.context().close();
  await alice.fill("#dm-name", "dave");
  await alice.press("#dm-name", "Enter");
  await alice.waitForSelector("#room-title:text('@dave')");
  await say(alice, "see you later");
  const sent = alice.locator("#messages li.msg[data-seq]", { hasText: "see you later" });
  await sent.waitFor();
  assert.equal(await sent.locator(".delivered").count(), 0, "not delivered while dave is away");
  const dave = await login(browser, base, "dave");
  await dave.waitForSelector("#notice:text('1 message arrived while you were away from alice')");
  await dave.waitForSelector("#dm-list button.unread .count:text-is('1')");
  await dave.click("#dm-list button:text('@alice')");
  await dave.waitForSelector("#messages li.msg .text:text('see you later')");
  await sent.locator(".delivered").waitFor();
  await dave.context().close();
  // The tick comes back with the history after a reload.
  await alice.reload();
  await alice.click("#dm-list button:text('@dave')");
  await alice.locator("#messages li.msg[data-seq]", { hasText: "see you later" }).locator(".delivered").waitFor();

  // A dropped connection resumes by itself: everything said while carol was
  // away appears once and in order, even past the server's 500-message
  // replay window (the page fetches the rest of the gap through history).
  const carolSockets = [];
  let networkDown = false;
  let loseAcks = false;
  const carol = await login(browser, base, "carol", (page) =>
    page.routeWebSocket(/\/ws$/, (ws) => {
      if (networkDown) return ws.close({ code: 1012, reason: "test: network down" });
      const server = ws.connectToServer();
      const entry = { page: ws, server, silent: false };
      // The connection breaks right after the server stored a message and
      // before its ack reaches the page.
      server.onMessage((message) => {
        if (entry.silent) return;
        if (loseAcks && JSON.parse(message).type === "ack") {
          loseAcks = false;
          ws.close({ code: 1012, reason: "test: lost on the way" });
          server.close();
          return;
        }
        ws.send(message);
      });
      carolSockets.push(entry);
    }),
  );
  await carol.waitForSelector("#messages li.msg .text:text('hello from alice')");

  // A send whose ack was lost with the connection is sent again after the
  // reconnect and shows once, for carol and for bob.
  loseAcks = true;
  await carol.fill("#text", "said once");
  await carol.press("#text", "Enter");
  await carol.waitForSelector("#status:text('reconnecting')");
  await carol.waitForSelector("#status:text-is('connected')", { timeout: 30000 });
  await carol.waitForSelector("#messages li.msg[data-seq] .text:text('said once')");
  await carol.waitForFunction(() => document.querySelectorAll("#messages li.pending").length === 0);
  await bob.waitForSelector("#messages li.msg .text:text('said once')");
  await new Promise((resolve) => setTimeout(resolve, 500));
  assert.equal(await carol.locator("#messages li.msg .text", { hasText: "said once" }).count(), 1);
  assert.equal(await bob.locator("#messages li.msg .text", { hasText: "said once" }).count(), 1);

  // A replica that stops answering (frozen, its socket still open) is given
  // up: the page pings it, hears nothing, connects anew and shows what was
  // said meanwhile, once.
  for (const socket of carolSockets) socket.silent = true;
  const connections = carolSockets.length;
  await bob.fill("#text", "said into the silence");
  await bob.press("#text", "Enter");
  for (let waited = 0; carolSockets.length === connections; waited += 100) {
    assert.ok(waited < 30000, "carol's page never gave up the silent connection");
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  await carol.waitForSelector("#status:text-is('connected')", { timeout: 30000 });
  await carol.waitForSelector("#messages li.msg .text:text('said into the silence')");
  assert.equal(await carol.locator("#messages li.msg .text", { hasText: "said into the silence" }).count(), 1);
  carolSockets.splice(0, carolSockets.length - 1); // only the live one stays
  networkDown = true;
  for (const socket of carolSockets.splice(0)) {
    await socket.server.close();
    await socket.page.close({ code: 1012, reason: "test: network down" });
  }
  await carol.waitForSelector("#status:text('reconnecting')");
  const AWAY = 520;
  const acks = await bob.evaluate(async (count) => {
    const ws = new WebSocket(`ws://${location.host}/ws`);
    const frames = [];
    let wake = () => {};
    ws.addEventListener("message", (event) => {
      frames.push(JSON.parse(event.data));
      wake();
    });
    const next = async (type) => {
      for (;;) {
        const index = frames.findIndex((frame) => frame.type === type || frame.type === "error");
        if (index >= 0) {
          const [frame] = frames.splice(index, 1);
          if (frame.type === "error") throw new Error(JSON.stringify(frame));
          return frame;
        }
        await new Promise((resolve) => (wake = resolve));
      }
    };
    await new Promise((resolve) => ws.addEventListener("open", resolve));
    ws.send(JSON.stringify({ type: "join", room: "general" }));
    await next("joined");
    for (let i = 0; i < count; i++) {
      ws.send(JSON.stringify({ type: "send", room: "general", text: `away ${i}`, ref: i }));
    }
    let acked = 0;
    while (acked < count) (await next("ack"), acked++);
    ws.close();
    return acked;
  }, AWAY);
  assert.equal(acks, AWAY);
  networkDown = false;
  const awayTexts = () =>
    carol.$$eval("#messages li.msg .text", (nodes) =>
      nodes.map((node) => node.textContent).filter((text) => text.startsWith("away ")),
    );
  await carol.waitForSelector("#status:text-is('connected')", { timeout: 30000 });
  await carol.waitForFunction(
    (count) =>
      [...document.querySelectorAll("#messages li.msg .text")].filter((node) =>
        node.textContent.startsWith("away "),
      ).length >= count,
    AWAY,
    { timeout: 20000 },
  );
  assert.deepEqual(await awayTexts(), Array.from({ length: AWAY }, (_, i) => `away ${i}`));
  await carol.close();

  // Notifications (allowed): a direct message, and a mention in a room
  // frank is not looking at, notify; what he is looking at does not.
  const frank = await login(browser, base, "frank", (page) =>
    page.addInitScript(() => {
      window.notified = [];
      window.Notification = class {
        static permission = "granted";
        static requestPermission() {
          return Promise.resolve("granted");
        }
        constructor(title, options) {
          window.notified.push({ title, body: options.body });
        }
      };
    }),
  );
  await alice.click("#room-list button:text('#general')");
  await say(alice, "hello everyone");
  await frank.waitForSelector("#messages li.msg .text:text-is('hello everyone')");
  await alice.fill("#dm-name", "frank");
  await alice.press("#dm-name", "Enter");
  await say(alice, "a word, frank?");
  await frank.waitForFunction(() => window.notified.some((n) => n.title === "alice" && n.body === "a word, frank?"));
  await frank.click("#dm-list button:text('@alice')");
  await alice.click("#room-list button:text('#general')");
  await say(alice, "@frank see this");
  await frank.waitForFunction(() => window.notified.some((n) => n.title === "alice in #general"));
  assert.equal(
    await frank.evaluate(() => window.notified.filter((n) => n.body === "hello everyone").length),
    0,
    "a plain message in the room he was looking at does not notify",
  );

  // Logging out in one tab ends the others: they go to the login page.
  const frankTab = await frank.context().newPage();
  watch(frankTab, "frank's second tab");
  await frankTab.goto(`${base}/`);
  await frankTab.waitForSelector("#status:text-is('connected')");
  await frank.click("#logout");
  await frank.waitForURL(`${base}/login`);
  await frankTab.waitForURL(`${base}/login`, { timeout: 10000 });
  await frank.context().close();

  // A phone (390×844): nothing is wider than the screen, Send and Log out
  // are on it, the room list opens as a panel and closes on a choice, and
  // a long banner does not push the message box off the screen.
  const phone = await login(browser, base, "erin", async () => {}, {
    viewport: { width: 390, height: 844 }, hasTouch: true, isMobile: true,
  });
  const onScreen = async (selector) => {
    const box = await phone.locator(selector).boundingBox();
    assert.ok(box, `${selector} is shown`);
    assert.ok(
      box.x >= 0 && box.y >= 0 && box.x + box.width <= 390 && box.y + box.height <= 844,
      `${selector} is on the screen: ${JSON.stringify(box)}`,
    );
  };
  assert.ok((await phone.evaluate(() => document.documentElement.scrollWidth)) <= 390);
  await onScreen("#send-form button[type=submit]");
  await onScreen("#logout");
  assert.equal(await phone.isVisible("#rooms-panel"), false, "the room list waits behind its button");
  await phone.click("#show-rooms");
  await onScreen("#rooms-panel");
  await phone.click("#room-list button:text('#general')");
  assert.equal(await phone.isVisible("#rooms-panel"), false, "choosing a room closes the panel");
  await phone.evaluate(() => {
    const banner = document.getElementById("notice");
    banner.textContent = "a long notice ".repeat(30);
    banner.classList.remove("hidden");
  });
  await onScreen("#send-form button[type=submit]");
  await say(phone, "from a phone");
  // On a touch screen the actions are behind "⋯".
  const mineSeq = await phone.locator("#messages li.msg", { hasText: "from a phone" }).getAttribute("data-seq");
  const mine = phone.locator(`#messages li.msg[data-seq="${mineSeq}"]`);
  await mine.locator("button.more").tap();
  await mine.locator("button.edit").tap();
  await mine.locator("textarea.editing").fill("from a phone, edited");
  await mine.locator("textarea.editing").press("Enter");
  await alice.locator("#messages li.msg .text", { hasText: /^from a phone, edited \(edited\)$/ }).waitFor();
  await phone.screenshot({ path: join(shots, "phone.png") });
  await phone.close();

  await alice.setViewportSize({ width: 1100, height: 640 });
  await alice.screenshot({ path: join(shots, "desktop.png") });
  assert.deepEqual(pageErrors, [], "no page threw");
  console.log("browser test passed");
} finally {
  await browser.close();
  server.kill();
  rmSync(dataDir, { recursive: true, force: true });
}
