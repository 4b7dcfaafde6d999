// Takes docs/web-room.png, the README's picture of the web client. Run by hand:
//
//   cargo build --bin chat-server && node tests/web/screenshot.mjs [OUT.png] [--dark] [--narrow]
//
// Starts target/debug/chat-server (or $CHAT_SERVER) on 127.0.0.1 in a temp directory, fills
// two rooms from TCP clients (some history before the browser arrives, some live after), logs
// in as alice in headless Chromium and takes the screenshot. Stops by itself within 60 s.

import { chromium } from 'playwright-core';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const args = process.argv.slice(2);
const out = path.resolve(args.find((a) => !a.startsWith('--')) || path.join(root, 'docs/web-room.png'));
const dark = args.includes('--dark');
const narrow = args.includes('--narrow');
const bin = process.env.CHAT_SERVER || path.join(root, 'target/debug/chat-server');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

setTimeout(() => { console.error('screenshot.mjs: took more than 60 s'); process.exit(1); }, 60_000).unref();

// The server, on ports the kernel picks; its first two lines say where.
const dir = mkdtempSync(path.join(os.tmpdir(), 'chatroom-shot-'));
const server = spawn(bin, ['--bind', '127.0.0.1:0', '--web', '127.0.0.1:0', '--msg-rate', '0',
  '--data-dir', dir], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, RUST_LOG: 'warn' } });
const lines = readline.createInterface({ input: server.stdout });
const [chat, web] = await new Promise((resolve, reject) => {
  const got = [];
  lines.on('line', (l) => { got.push(l); if (got.length === 2) resolve(got); });
  server.on('exit', (code) => reject(new Error('chat-server exited with ' + code)));
});
const chatPort = Number(chat.split(':').pop());
const url = web.replace(/^web on /, '');

/** A JSON client on the chat port: `send` a request, `wait` for an event. */
function client(name) {
  const sock = net.connect(chatPort, '127.0.0.1');
  const events = [];
  const waiters = [];
  readline.createInterface({ input: sock }).on('line', (l) => {
    let ev;
    try { ev = JSON.parse(l); } catch (_) { return; }
    events.push(ev);
    for (const w of [...waiters]) if (w.test(ev)) { waiters.splice(waiters.indexOf(w), 1); w.resolve(ev); }
  });
  const c = {
    send: (req) => sock.write(JSON.stringify(req) + '\n'),
    wait: (test) => new Promise((resolve) => {
      const hit = events.find(test);
      if (hit) { events.splice(events.indexOf(hit), 1); resolve(hit); } else waiters.push({ test, resolve });
    }),
    close: () => sock.destroy(),
  };
  c.send({ type: 'hello', name });
  return c;
}

/** Says something and waits for the server's echo, so the order is the log's. */
async function say(c, room, text, kind = 'say') {
  if (kind === 'me') {
    c.send({ type: 'switch', room });
    c.send({ type: 'me', text });
  } else {
    c.send({ type: 'say', room, text });
  }
  await c.wait((e) => e.type === 'message' && e.text === text);
}

let browser;
try {
  const bob = client('bob');
  const carol = client('carol');
  const dave = client('dave');
  for (const c of [bob, carol, dave]) {
    await c.wait((e) => e.type === 'welcome');
    c.send({ type: 'join', room: 'ops' });
    await c.wait((e) => e.type === 'history_end' && e.room === 'ops');
  }
  // History: said before alice arrives.
  await say(carol, 'ops', 'morning! the deploy of 0.4 is at 11');
  await say(bob, 'ops', 'I will watch the dashboards');
  await say(dave, 'ops', 'runbook: https://wiki.example.org/ops/deploy-0.4');
  await say(bob, 'lobby', 'coffee machine on floor 2 is fixed ☕');

  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const page = await browser.newPage({
    viewport: narrow ? { width: 390, height: 740 } : { width: 1200, height: 620 },
    deviceScaleFactor: narrow ? 2 : 1,
    colorScheme: dark ? 'dark' : 'light',
    timezoneId: 'Europe/Paris',
    locale: 'en-GB',
  });
  page.setDefaultTimeout(15_000);
  await page.goto(url);
  await page.fill('#name', 'alice');
  await page.click('.room-chip[data-room="ops"]');
  await page.click('#login-button');
  await page.waitForFunction(() => document.getElementById('title').textContent === '#ops');
  await bob.wait((e) => e.type === 'joined' && e.room === 'ops' && e.name === 'alice');

  // Live.
  await say(bob, 'ops', 'alice: can you check the 502s on the API?');
  await page.fill('#input', 'on it, looking at the load balancer');
  await page.press('#input', 'Enter');
  await bob.wait((e) => e.type === 'message' && e.from === 'alice');
  await say(carol, 'ops', 'is rolling back the canary', 'me');
  await say(dave, 'ops', 'error rate is back to normal:\n  api-1  0.02%\n  api-2  0.01%');
  await say(carol, 'lobby', 'lunch at 12:30?');
  dave.send({ type: 'away', reason: 'in a meeting' });
  await dave.wait((e) => e.type === 'presence' && e.name === 'dave');
  bob.send({ type: 'msg', to: 'alice', text: 'thanks for jumping on this' });
  await page.locator('.conv[class*="unread"] .conv-button[data-key="@bob"]').waitFor();
  await page.locator('#member-list .away').waitFor();
  await page.evaluate(() => document.activeElement.blur());
  if (narrow) await page.click('#members-toggle');
  await sleep(300); // the panel's slide
  await page.screenshot({ path: out });
  console.log('wrote ' + out);
  for (const c of [bob, carol, dave]) c.close();
} finally {
  if (browser) await browser.close();
  server.kill('SIGTERM');
  await new Promise((r) => server.on('exit', r));
  rmSync(dir, { recursive: true, force: true });
}
