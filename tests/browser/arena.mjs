// The arena page in a real Chromium (tests/test_web.py runs this against a server it started):
// two pages join the arena (two tabs: two players); the first steers with the keyboard; the
// second must see that player move, through its own subscription.  Prints one JSON line with
// what it saw; exits non-zero with the reason when something does not hold.
//
//   node arena.mjs --url http://127.0.0.1:PORT/ [--shots DIR] [--chromium PATH]

import puppeteer from 'puppeteer-core';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const args = Object.fromEntries(process.argv.slice(2).reduce((acc, a, i, all) => {
  if (a.startsWith('--')) acc.push([a.slice(2), all[i + 1]]);
  return acc;
}, []));
const url = args.url;
const chromium = args.chromium ?? '/usr/bin/chromium';
const timeoutMs = Number(args.timeout ?? 20000);
if (!url) throw new Error('--url is required');

function fail(why, extra = {}) {
  console.log(JSON.stringify({ ok: false, why, ...extra }));
  process.exitCode = 1;
}

async function waitFor(page, fn, arg, what) {
  try {
    return await page.waitForFunction(fn, { timeout: timeoutMs, polling: 50 }, arg);
  } catch (e) {
    throw new Error(`${what}: not within ${timeoutMs} ms (${e.message.split('\n')[0]})`);
  }
}

const browser = await puppeteer.launch({
  executablePath: chromium, headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--window-size=1200,800'],
  defaultViewport: { width: 1200, height: 800 },
});
const errors = [];
try {
  const pages = [];
  for (let i = 0; i < 2; i++) {
    const page = await browser.newPage();          // a tab each: its own sessionStorage token
    page.on('pageerror', (e) => errors.push(`page ${i}: ${e.message}`));
    page.on('console', (m) => { if (m.type() === 'error') errors.push(`page ${i} console: ${m.text()}`); });
    // the second page views the whole world, so that it sees the first wherever it spawned
    await page.goto(i === 0 ? url : `${url}?view=4000`, { waitUntil: 'load' });
    pages.push(page);
  }
  for (const [i, page] of pages.entries()) await waitFor(page, () => window.arena?.ready, null, `page ${i} joined`);
  const ids = await Promise.all(pages.map((p) => p.evaluate(() => window.arena.id())));
  if (ids[0] === ids[1]) throw new Error(`both tabs are the same identity ${ids[0]}`);
  // the first player as the second page sees it (its subscription, its cache)
  const seen = (id) => {
    const p = window.arena.player(id);
    return p ? { x: p.x, y: p.y } : null;
  };
  await waitFor(pages[1], (id) => window.arena.player(id) !== null, ids[0], 'page 1 sees the first player');
  const start = await pages[1].evaluate(seen, ids[0]);
  // steer toward the middle, so that the wall does not stop it
  const key = start.x < 2000 ? 'ArrowRight' : 'ArrowLeft';
  await pages[0].bringToFront();
  await pages[0].click('canvas');
  const t0 = Date.now();
  await pages[0].keyboard.press(key);
  await waitFor(pages[1], ([id, x0]) => {
    const p = window.arena.player(id);
    return p && Math.abs(p.x - x0) >= 60;        // three ticks' worth at size 20
  }, [ids[0], start.x], `page 1 sees the first player move (${key})`);
  const movedMs = Date.now() - t0;
  const end = await pages[1].evaluate(seen, ids[0]);
  const counts = await Promise.all(pages.map((p) => p.evaluate(() => ({
    food: window.arena.conn.table('food').count(), players: window.arena.conn.table('player').count(),
    regions: window.arena.regions ?? 0,
  }))));
  if (args.shots) {
    mkdirSync(args.shots, { recursive: true });
    await new Promise((r) => setTimeout(r, 300));
    for (const [i, page] of pages.entries()) {
      await page.bringToFront();
      await page.screenshot({ path: join(args.shots, `arena-${i + 1}.png`) });
    }
  }
  if (errors.length) throw new Error(`errors in the pages: ${errors.join('; ')}`);
  console.log(JSON.stringify({ ok: true, ids, key, start, end, movedMs, counts }));
} catch (e) {
  fail(e.message, { errors });
} finally {
  await browser.close();
}
