// Browser end-to-end test of the chatroom web page, driven by tests/it/browser.rs.
//
//   node tests/web/e2e.mjs URL ROOM        (or E2E_URL, E2E_ROOM)
//
// Opens the page in headless Chromium (Debian's /usr/bin/chromium, through playwright-core),
// logs in as `webuser`, joins ROOM, sends two messages (one of two lines), prints READY, and
// then waits for what the Rust test sends from a TCP client: a plain message and an XSS
// attempt, which must show literally. With E2E_EXPECT_PING=1 (a server started with
// `--ping-interval 1`) it also waits for the server's ping and checks that the page answers
// it and keeps its connection. Takes a screenshot (E2E_SCREENSHOT) and prints
// `SCREENSHOT <path>` and `OK`. Any failure prints `FAIL: why` and exits 1; every wait is
// bounded and the whole script stops itself after 60 s.

import { chromium } from 'playwright-core';

const url = process.argv[2] || process.env.E2E_URL;
const room = process.argv[3] || process.env.E2E_ROOM || 'lobby';
const shot = process.env.E2E_SCREENSHOT || 'artifacts/web-room.png';
const name = process.env.E2E_NAME || 'webuser';
const WAIT = 15_000;
const XSS = '<img src=x onerror=window.__xss=1>';
const expectPing = process.env.E2E_EXPECT_PING === '1';
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const problems = []; // page errors, CSP violations, failed requests
let browser;
let page;
let failed = false;

/** Prints why, and throws to the handler at the end (which saves a screenshot and exits 1). */
function fail(why) {
  failed = true;
  console.log('FAIL: ' + why);
  for (const p of problems) console.log('  page: ' + p);
  throw new Error(why);
}

/** Runs `what`, failing with `label` if it throws or takes longer than WAIT. */
async function step(label, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error('timed out after ' + WAIT / 1000 + ' s')), WAIT);
  });
  try {
    return await Promise.race([what(), timeout]);
  } catch (e) {
    fail(label + ': ' + (e && e.message ? e.message.split('\n')[0] : e));
  } finally {
    clearTimeout(timer);
  }
}

// The whole run is bounded, whatever happens.
setTimeout(() => {
  console.log('FAIL: the e2e script did not finish within 60 s');
  process.exit(1);
}, 60_000).unref();

if (!url) {
  console.log('FAIL: usage: node e2e.mjs URL ROOM');
  process.exit(2);
}

try {
  browser = await step('launching /usr/bin/chromium', () => chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    timeout: WAIT,
  }));
  page = await browser.newPage({ viewport: { width: 1200, height: 760 } });
  page.setDefaultTimeout(WAIT);
  page.on('pageerror', (e) => problems.push('error: ' + e.message));
  page.on('console', (m) => { if (m.type() === 'error') problems.push('console: ' + m.text()); });
  page.on('requestfailed', (r) => problems.push('request failed: ' + r.url()));
  // Every WebSocket the page opens: there must be one, never closed (no reconnect).
  const sockets = [];
  page.on('websocket', (ws) => {
    const s = { url: ws.url(), closed: false, pongs: 0 };
    sockets.push(s);
    ws.on('close', () => { s.closed = true; });
    ws.on('framesent', (f) => { if (/"type":"pong"/.test(String(f.payload))) s.pongs++; });
  });
  // Only loopback: anything else would be a bug of the page (or a CDN creeping in).
  await page.route('**/*', (route) => {
    const u = new URL(route.request().url());
    if (u.hostname === '127.0.0.1' || u.hostname === 'localhost' || u.protocol === 'data:') return route.continue();
    problems.push('external request: ' + u.href);
    return route.abort();
  });

  const res = await step('opening ' + url, () => page.goto(url));
  if (!res.ok()) fail('GET ' + url + ' answered ' + res.status());
  const csp = res.headers()['content-security-policy'] || '';
  if (!csp.includes("script-src 'self'")) fail('no Content-Security-Policy on the page: ' + csp);

  // Start view: the room list comes from /api/info; pick the room by clicking it.
  await step('start form', () => page.locator('#login').waitFor());
  await step('the room ' + room + ' in the room list',
    () => page.locator(`.room-chip[data-room="${room}"]`).click());
  const picked = await page.inputValue('#room');
  if (picked !== room) fail('clicking the room filled in ' + JSON.stringify(picked));
  await page.fill('#name', name);
  await page.click('#login-button');

  // Room view: welcome received, the room joined and shown, the TCP user listed.
  await step('the welcome', () => page.locator('#conn[data-state="online"]').waitFor());
  await step('the room view of #' + room, () => page.waitForFunction(
    (r) => document.getElementById('title').textContent === '#' + r, room));
  await step('tcpuser in the member list',
    () => page.locator('#member-list', { hasText: 'tcpuser' }).waitFor());
  const live = await page.locator('.log:not([hidden])').getAttribute('aria-live');
  if (live !== 'polite') fail('the message list has aria-live=' + live);

  // Send a message, then a two-line one (Shift+Enter), and wait for the server's echoes.
  const log = page.locator('.log:not([hidden])');
  await page.fill('#input', 'hello from the browser');
  await page.press('#input', 'Enter');
  await step('the echo of our message',
    () => log.locator('.msg.self[data-id] .text', { hasText: 'hello from the browser' }).waitFor());
  await page.type('#input', 'first line');
  await page.press('#input', 'Shift+Enter');
  await page.type('#input', 'second line');
  await page.press('#input', 'Enter');
  await step('the echo of the two-line message',
    () => log.locator('.msg.self .text', { hasText: 'second line' }).waitFor());
  const twoLines = await log.locator('.msg.self .text', { hasText: 'second line' }).textContent();
  if (twoLines !== 'first line\nsecond line') fail('the two-line message shows as ' + JSON.stringify(twoLines));
  if ((await page.inputValue('#input')) !== '') fail('the input was not cleared after sending');

  console.log('READY');

  // What the TCP client sends after READY.
  await step('the message from tcpuser',
    () => log.locator('.msg:not(.self) .text', { hasText: 'hello from tcp' }).waitFor());
  await step('the XSS attempt, shown as text',
    () => log.locator('.msg:not(.self) .text', { hasText: XSS }).waitFor());
  const xssText = await log.locator('.msg:not(.self) .text', { hasText: XSS }).textContent();
  if (!xssText.includes(XSS)) fail('the XSS text shows as ' + JSON.stringify(xssText));
  const imgs = await page.evaluate(() => document.querySelectorAll('#logs img').length);
  if (imgs !== 0) fail(imgs + ' img element(s) in the message list: the XSS string became HTML');
  if (await page.evaluate(() => window.__xss !== undefined)) fail('window.__xss was set: the XSS ran');
  await step('the /me action from tcpuser',
    () => log.locator('.msg.action:not(.self) .text', { hasText: 'waves at the browser' }).waitFor());

  if (expectPing) {
    // Quiet now: the server pings the page, which answers and stays connected; a message
    // still goes out and comes back on the same socket.
    await step('the server\'s ping, answered with a pong', async () => {
      while (!sockets.some((s) => s.pongs > 0)) await sleep(50);
    });
    await page.fill('#input', 'still here after a ping');
    await page.press('#input', 'Enter');
    const echo = log.locator('.msg.self .text', { hasText: 'still here after a ping' });
    await step('the echo of a message sent after the ping', async () => {
      while (!(await echo.count())) {
        if (sockets.some((s) => s.closed)) {
          throw new Error('the WebSocket was closed after the server\'s ping was answered');
        }
        await sleep(50);
      }
    });
  }
  if (sockets.length !== 1 || sockets[0].closed) {
    fail('the page opened ' + sockets.length + ' WebSocket(s)' +
      (sockets.some((s) => s.closed) ? ' and one was closed' : '') +
      ': the connection dropped and the page reconnected');
  }
  const wsUrl = new URL(url.replace(/^http/, 'ws'));
  if (sockets[0].url !== wsUrl.origin + '/ws') fail('the WebSocket went to ' + sockets[0].url);

  // Ids are unique and in order in the log.
  const ids = await log.locator('.msg[data-id]').evaluateAll((rows) => rows.map((r) => Number(r.dataset.id)));
  for (let i = 1; i < ids.length; i++) {
    if (!(ids[i] > ids[i - 1])) fail('message ids out of order or repeated: ' + ids.join(','));
  }

  const csps = problems.filter((p) => /Content Security Policy|Refused to/i.test(p));
  if (csps.length) fail('the page broke its Content-Security-Policy: ' + csps.join('; '));
  const errors = problems.filter((p) => p.startsWith('error:') || p.startsWith('external'));
  if (errors.length) fail('the page had errors: ' + errors.join('; '));

  await page.screenshot({ path: shot });
  console.log('SCREENSHOT ' + shot);
  await browser.close();
  console.log('OK');
  process.exit(0);
} catch (e) {
  if (!failed) {
    console.log('FAIL: ' + (e && e.message ? e.message.split('\n')[0] : e));
    for (const p of problems) console.log('  page: ' + p);
  }
  // What the page showed when it failed, next to where the screenshot would have gone.
  if (page) {
    const where = shot.replace(/\.png$/, '') + '-failed.png';
    const saved = await Promise.race([
      page.screenshot({ path: where }).then(() => true, () => false),
      new Promise((resolve) => setTimeout(() => resolve(false), 5000)),
    ]);
    if (saved) console.log('  failure screenshot: ' + where);
  }
  if (browser) await Promise.race([browser.close().catch(() => {}), new Promise((r) => setTimeout(r, 5000))]);
  process.exit(1);
}
