// End-to-end test of the demo page (nginx/demo-site) in Debian's headless Chromium, driven by
// playwright-core (no browser download: executablePath is /usr/bin/chromium).
//
//   node tests/e2e/demo.e2e.mjs http://127.0.0.1:PORT/
//
// The URL is a running stack serving the page at / and pvgate at /pvgate/ (run_e2e.py starts
// one) with the shipped throttle rules (a 60 s resend cooldown per phone), the mock Pipwave,
// whose code is 123456, verification tokens (issuer ORIGIN/pvgate, merchant shop-a) and the
// demo shop's backend at /shop/ (scripts/demo_shop.py), which the page logs in to and hands
// the token to, and the merchant's ALTCHA challenge before any SMS (difficulty
// $PVGATE_E2E_DIFFICULTY, default pvgate's 50000), which the page's widget solves in Chromium.
// Every check asserts on what the page shows (text, visible, enabled/disabled), polling until it
// holds or a deadline passes; none sleeps for a fixed time.
//
// It reports how long the widget took to solve (`widget solve: N ms at difficulty D (median of
// K)`, also written to widget-solve.txt in the artifacts): a report, never a pass/fail bound.
//
// Screenshots go to $PVGATE_E2E_ARTIFACTS (default build/e2e-artifacts in the repository).
// Env CHROMIUM overrides the browser binary. The last line printed is `N passed, M failed`
// (`, K skipped` when a failed step left later steps without the state they need); the exit
// code is 0 only when nothing failed.
import { chromium } from 'playwright-core';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const BASE = process.argv[2];
if (!BASE) {
  console.error('usage: node demo.e2e.mjs http://127.0.0.1:PORT/');
  process.exit(2);
}
const ORIGIN = new URL(BASE).origin;
const ARTIFACTS = resolve(process.env.PVGATE_E2E_ARTIFACTS || join(REPO, 'build', 'e2e-artifacts'));
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const WAIT_MS = 15000;   // deadline for a condition; a healthy run meets each in well under 1 s
// The page's own guess of the resend cooldown after a 200 (pvgate's 200 carries none); short,
// so that the resend button is offered while pvgate's 60 s phone-cooldown still refuses it.
const PAGE_RESEND_S = 2;
const PHONE = { dial: '60', number: '123456789' };
const E164 = `+${PHONE.dial}${PHONE.number}`;
const AUDIENCE = 'shop-a';   // the stack's merchant, whose audience defaults to its name
// The stack's ALTCHA difficulty: pvgate's secret counter lies in [D/2, D] (src/altcha.h).
const DIFFICULTY = Number(process.env.PVGATE_E2E_DIFFICULTY || 50000);
const SOLVES = 5;            // widget solves timed for the report (their median)
// A number for the step that replays a used solution (fresh: no cooldown, no earlier send).
const REPLAY_NUMBER = '198765431';

// -- a tiny runner ---------------------------------------------------------------------------

const results = [];
let blocked = null;   // the name of the failed step later steps depend on

async function step(name, fn) {
  if (blocked) {
    results.push({ name, outcome: 'skipped' });
    console.log(`SKIP ${name} (after: ${blocked})`);
    return;
  }
  const t0 = Date.now();
  try {
    await fn();
    results.push({ name, outcome: 'passed' });
    console.log(`PASS ${name} (${Date.now() - t0} ms)`);
  } catch (e) {
    results.push({ name, outcome: 'failed' });
    console.log(`FAIL ${name}: ${e && e.stack ? e.stack : e}`);
    blocked = name;
    await shot(`failed-${name.replace(/[^a-z0-9]+/gi, '-').toLowerCase()}`).catch(() => {});
  }
}

function assert(cond, message) {
  if (!cond) throw new Error(message);
}

// Polls `probe` (returns a value) until `ok(value)` holds; throws with the last value seen.
async function until(what, probe, ok = (v) => Boolean(v), timeout = WAIT_MS) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await probe();
      if (ok(last)) return last;
    } catch (e) {
      last = `error: ${e.message}`;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}; last seen: ${JSON.stringify(last)}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

// -- the page --------------------------------------------------------------------------------

let page;
let browser;
let context;
const consoleErrors = [];
const foreignRequests = [];

async function shot(name) {
  const file = join(ARTIFACTS, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  console.log(`     screenshot ${file}`);
}

const text = async (selector) => (await page.locator(selector).textContent()).trim();
const visible = (selector) => page.locator(selector).isVisible();
const disabled = (selector) => page.locator(selector).isDisabled();
// What the page's shop login, verify and token gave (filled by the steps that see them).
const seen = { user: null, token: null, firstAltcha: null };

// base64url JSON of a JWT part.
const jwtPart = (token, i) => JSON.parse(Buffer.from(token.split('.')[i], 'base64url').toString());

// fetch() from inside a page (its origin, its cookies): {status, body}.
const fetchIn = (p, path, init) => p.evaluate(async ([url, opts]) => {
  const r = await fetch(url, { credentials: 'same-origin', cache: 'no-store', ...opts });
  return { status: r.status, body: await r.json().catch(() => null) };
}, [path, init || {}]);
const postToken = (p, token) => fetchIn(p, '/shop/verified-phone', { method: 'POST',
  headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ token }) });

// The `altcha` payload (base64 JSON) decoded: {challenge: {parameters, signature}, solution}.
const altchaOf = (payload) => JSON.parse(Buffer.from(payload, 'base64').toString());

// Every send-token the pages sent: its body's `altcha` (null without one).
const sendsSeen = [];

// The widget's state as the page last heard it (its statechange events; app.js keeps it in
// data-challenge-state for tests).
const challengeState = () => page.locator('#app').getAttribute('data-challenge-state');
// Resets the widget once no solve is under way. The widget (3.2.2) ignores a reset that lands
// while a solve waits out its minDuration: that solve still ends "verified" afterwards, and it
// leaves the widget unable to abort the next one. Focus in the form starts a solve
// (auto="onfocus"), so a test that has just typed there waits for it to settle first.
async function resetWidget() {
  await until('the widget to settle', challengeState, (v) => v !== 'verifying');
  await page.evaluate(() => document.getElementById('altcha').reset());
  await until('the widget reset', challengeState, (v) => v === 'unverified');
}

// A page of `ctx` with this test's console and request watchers.
function watch(p) {
  p.on('console', (m) => {
    // Chromium logs every non-2xx fetch as "Failed to load resource"; pvgate's 400 and 429
    // are answers the page handles, and so are the shop's refusals this test provokes.
    const url = m.location().url || '';
    const expected = m.text().startsWith('Failed to load resource')
      && (url.startsWith(`${ORIGIN}/pvgate/`) || url === `${ORIGIN}/shop/verified-phone`);
    if (m.type() === 'error' && !expected) consoleErrors.push(`${m.text()} (${url})`);
  });
  p.on('pageerror', (e) => consoleErrors.push(`pageerror: ${e.message}`));
  p.on('request', (r) => {
    if (!r.url().startsWith(`${ORIGIN}/`)) foreignRequests.push(r.url());
    if (r.url() === `${ORIGIN}/pvgate/send-token`) {
      let body = null;
      try {
        body = JSON.parse(r.postData() || 'null');
      } catch (e) {
        body = null;
      }
      sendsSeen.push(body && typeof body.altcha === 'string' ? body.altcha : null);
    }
  });
  return p;
}

// Loads the page and waits until its script is wired and its shop login has settled.
async function openPage(p, query = '') {
  await p.goto(`${ORIGIN}/${query}`);
  await until('the script to wire the page',
    () => p.locator('#app').getAttribute('data-ready'), (v) => v === 'true');
  await until('the shop login', () => p.locator('#app').getAttribute('data-shop-state'),
    (v) => v === 'logged-in');
  return p.locator('#user_id').inputValue();
}

const secondsIn = (s) => {
  const m = /(\d+) s\b/.exec(s || '');
  return m ? Number(m[1]) : null;
};

// The state of the resend control: {text, disabled, seconds}.
async function resendState() {
  const t = await text('#resend');
  return { text: t, disabled: await disabled('#resend'), seconds: secondsIn(t) };
}

// Waits until the countdown shown on #resend is below `seconds`: it keeps going.
async function countdownBelow(seconds) {
  return until(`the resend countdown to go below ${seconds} s`, resendState,
    (s) => s.disabled && s.seconds !== null && s.seconds < seconds, 5000);
}

async function main() {
  mkdirSync(ARTIFACTS, { recursive: true });
  for (const old of ['after-send', 'resend-refused', 'wrong-code', 'verified', 'field-errors',
    'shop-verified', 'typed-number-sent', 'challenge-solved', 'challenge-solved-again']) {
    rmSync(join(ARTIFACTS, `${old}.png`), { force: true });
  }
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    chromiumSandbox: false,   // root in a container: --no-sandbox
    args: ['--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
  });
  try {
    context = await browser.newContext({ viewport: { width: 560, height: 720 },
      deviceScaleFactor: 1, locale: 'en-US' });
    // Content-Security-Policy violations (the page's, the widget's), for the last step.
    await context.addInitScript(() => {
      window.cspViolations = [];
      document.addEventListener('securitypolicyviolation', (e) => {
        window.cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`);
      });
    });
    page = watch(await context.newPage());
    await run();
  } finally {
    await browser.close();
  }
}

async function run() {
  await step('page loads, labelled inputs, no external resource', async () => {
    seen.user = await openPage(page, `?resend_after=${PAGE_RESEND_S}`);
    assert((await page.title()).includes('Verify your phone number'), 'title');
    // Every input is reachable by its label (accessible names).
    for (const label of ['Demo user id', 'Country code', 'Phone number']) {
      assert(await page.getByLabel(label, { exact: true }).isVisible(), `input labelled ${label}`);
    }
    assert(!(await visible('#code-form')), 'code form hidden before a send');
    assert(!(await disabled('#send')), 'Send code enabled');
    const css = await page.evaluate(() => getComputedStyle(document.querySelector('#send')).backgroundColor);
    assert(css !== 'rgba(0, 0, 0, 0)', `style.css applied (send button background ${css})`);
  });

  await step('the shop logs the page in: its user id, an HttpOnly cookie', async () => {
    assert(/^demo-[0-9a-f]{12}$/.test(seen.user), `user id from the shop: ${seen.user}`);
    assert(await page.locator('#user_id').evaluate((e) => e.readOnly), 'user id read-only');
    assert(await visible('#shop-login'), 'the page says it is logged in at the shop');
    const cookies = await context.cookies(ORIGIN + '/shop/');
    const session = cookies.find((c) => c.name === 'shop_session');
    assert(session && session.httpOnly && session.sameSite === 'Strict' && session.path === '/shop/',
      `session cookie: ${JSON.stringify(session)}`);
    assert(session.value.startsWith(`${seen.user}.`), 'the cookie names the user (and its HMAC)');
    assert(!(await page.evaluate(() => document.cookie)).includes('shop_session'),
      'the page script cannot read the cookie');
    const me = await fetchIn(page, '/shop/me');
    assert(me.status === 200 && me.body.user_id === seen.user
      && me.body.verified_phones.length === 0, `/shop/me before: ${JSON.stringify(me)}`);
  });

  await step("the ALTCHA widget solves pvgate's challenge (solve time reported)", async () => {
    // The widget (from /vendor/altcha/, its own stylesheet) shows its checkbox in the form.
    const box = page.getByLabel("I'm not a robot", { exact: true });
    assert(await box.isVisible(), 'the widget shows its checkbox');
    const border = await page.locator('altcha-widget .altcha-main').evaluate(
      (e) => getComputedStyle(e).borderTopStyle);
    assert(border === 'solid', `altcha.css applied (the widget's border: ${border})`);
    const samples = [];
    for (let i = 0; i < SOLVES; i += 1) {
      await resetWidget();
      // Timed in the page: from pressing its checkbox (as people do: on its label or its
      // drawn box; the input itself lies under the drawing) to its verified event.
      await page.evaluate(() => {
        const w = document.getElementById('altcha');
        window.solveTiming = null;
        let t0 = null;
        w.addEventListener('pointerdown', () => { t0 = performance.now(); },
          { capture: true, once: true });
        w.addEventListener('verified', (e) => {
          window.solveTiming = { ms: performance.now() - t0, payload: e.detail.payload };
        }, { once: true });
      });
      await page.locator('altcha-widget label').getByText("I'm not a robot", { exact: true })
        .click();
      const timing = await until('the widget verified',
        () => page.evaluate(() => window.solveTiming));
      const { challenge, solution } = altchaOf(timing.payload);
      assert(challenge.parameters.algorithm === 'SHA-256' && challenge.signature,
        `the widget's payload carries pvgate's challenge: ${JSON.stringify(challenge)}`);
      // pvgate hides the counter in [D/2, D]: this was a challenge at difficulty D.
      assert(solution.counter >= DIFFICULTY / 2 && solution.counter <= DIFFICULTY,
        `counter ${solution.counter} outside [${DIFFICULTY / 2}, ${DIFFICULTY}]`);
      samples.push({ ms: timing.ms, work: solution.time, counter: solution.counter });
    }
    assert((await text('altcha-widget label')) === 'Verified', 'the widget says Verified');
    await shot('challenge-solved');
    const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    const workers = await page.evaluate(() => document.getElementById('altcha')
      .getConfiguration().workers);
    const line = `widget solve: ${Math.round(median(samples.map((x) => x.ms)))} ms at difficulty `
      + `${DIFFICULTY} (median of ${SOLVES})`;
    const detail = `widget solve, each: ${samples.map((x) => Math.round(x.ms)).join(', ')} ms from `
      + 'the click on its checkbox to its verified event (which the widget never fires before its '
      + `minDuration, 500 ms); its ${workers} workers' search: `
      + `${samples.map((x) => Math.round(x.work)).join(', ')} ms (median `
      + `${Math.round(median(samples.map((x) => x.work)))}) for counters `
      + `${samples.map((x) => x.counter).join(', ')}; Chromium ${browser.version()}, `
      + `${DIFFICULTY * 0.75} SHA-256s expected per solve`;
    console.log(line);
    console.log(detail);
    writeFileSync(join(ARTIFACTS, 'widget-solve.txt'), `${line}\n${detail}\n`);
  });

  await step('400 messages shown by field', async () => {
    await page.getByLabel('Phone number', { exact: true }).fill('');
    await page.getByRole('button', { name: 'Send code' }).click();
    await until('"Phone number is required." under the number', () => text('#contact_no-error'),
      (t) => t.includes('Phone number is required.'));

    // pvgate's own validation: "invalid contact_no_country_dialing_code: 1-5 digits, ..."
    await page.getByLabel('Country code', { exact: true }).fill('6a');
    await page.getByLabel('Phone number', { exact: true }).fill(PHONE.number);
    const sent = page.waitForResponse((r) => r.url().endsWith('/pvgate/send-token'));
    await page.getByRole('button', { name: 'Send code' }).click();
    assert((await sent).status() === 400, 'pvgate answered 400');
    const dialError = await until('the error under Country code',
      () => text('#contact_no_country_dialing_code-error'), (t) => t.length > 0);
    assert(/Country code: 1-5 digits/.test(dialError), `dialing code error: ${dialError}`);
    assert(await page.locator('#contact_no_country_dialing_code').getAttribute('aria-invalid') === 'true',
      'dialing code marked aria-invalid');
    assert(!(await visible('#contact_no-error')), 'no error under the number');

    await page.getByLabel('Country code', { exact: true }).fill(PHONE.dial);
    await page.getByLabel('Phone number', { exact: true }).fill('12ab');
    await page.getByRole('button', { name: 'Send code' }).click();
    const numError = await until('the error under Phone number', () => text('#contact_no-error'),
      (t) => /Phone number: 1-32 digits/.test(t));
    assert(!(await visible('#contact_no_country_dialing_code-error')), 'dialing code error cleared');
    assert(await page.locator('#contact_no').getAttribute('aria-invalid') === 'true',
      `number marked aria-invalid (${numError})`);
    await shot('field-errors');
  });

  await step('send a token: code form and resend countdown', async () => {
    await page.getByLabel('Phone number', { exact: true }).fill(PHONE.number);
    // Send pressed while the widget is not verified: the page has it solve first.
    await resetWidget();
    const sent = page.waitForRequest((r) => r.url().endsWith('/pvgate/send-token'));
    const answered = page.waitForResponse((r) => r.url().endsWith('/pvgate/send-token'));
    await page.getByRole('button', { name: 'Send code' }).click();
    seen.firstAltcha = JSON.parse((await sent).postData()).altcha;
    assert(typeof seen.firstAltcha === 'string'
      && Number.isInteger(altchaOf(seen.firstAltcha).solution.counter),
      `the send carried a solution: ${seen.firstAltcha}`);
    assert((await answered).status() === 200, 'pvgate accepted it (200)');
    await until('the code form', () => visible('#code-form'));
    // Used once: the page reset the widget after the send.
    await until('the widget reset after the send', challengeState, (v) => v === 'unverified');
    assert(!(await visible('#phone-form')), 'phone form hidden');
    assert((await text('#sent-to')) === `+${PHONE.dial} ${PHONE.number}`, 'number shown');
    assert((await text('#notice')) === 'Token sent.', `notice: ${await text('#notice')}`);
    const s = await resendState();
    assert(s.disabled && /^Resend code in \d+ s$/.test(s.text), `resend counting down: ${s.text}`);
    assert(await page.getByLabel('6-digit code').isVisible(), 'code input labelled');
    await shot('after-send');
  });

  await step('resend refused with 429: shown to the user, countdown keeps going', async () => {
    // The page's short guess runs out and offers a resend; pvgate's cooldown (60 s) refuses it.
    await until('the resend button to be offered', resendState,
      (s) => !s.disabled && s.text === 'Resend code');
    const answered = page.waitForResponse((r) => r.url().endsWith('/pvgate/send-token'));
    await page.getByRole('button', { name: 'Resend code' }).click();
    const r = await answered;
    assert(r.status() === 429, `pvgate answered ${r.status()}, not 429`);
    // The resend solved a challenge of its own (the widget sits in the hidden phone form), and
    // pvgate's throttle, not its challenge stage, refused it.
    const resent = JSON.parse(r.request().postData()).altcha;
    assert(typeof resent === 'string' && resent !== seen.firstAltcha,
      'the resend carried a new solution');
    const wait = Number(r.headers()['retry-after']);
    const msg = await until('the 429 message', () => text('#notice'), (t) => /Too many/.test(t));
    assert(/You can ask for a new code in \d+ s\./.test(msg), `429 message: ${msg}`);
    assert(secondsIn(msg) > PAGE_RESEND_S && Math.abs(secondsIn(msg) - wait) <= 1,
      `message shows the server's wait (${wait} s): ${msg}`);
    const s = await until('the countdown from seconds_till_resend', resendState,
      (x) => x.disabled && x.seconds !== null && x.seconds > PAGE_RESEND_S);
    assert(s.seconds <= wait, `countdown ${s.seconds} s <= Retry-After ${wait} s`);
    await countdownBelow(s.seconds);
    assert(await visible('#code-form'), 'still on the code form');
    assert(!(await disabled('#verify')), 'Verify still enabled');
    await shot('resend-refused');
  });

  await step('a wrong code is refused with the message shown', async () => {
    const before = (await resendState()).seconds;
    await page.getByLabel('6-digit code').fill('000000');
    await page.getByRole('button', { name: 'Verify' }).click();
    const err = await until('the error under the code', () => text('#answer-error'),
      (t) => t.length > 0);
    assert(err === 'Incorrect answer.', `code error: ${err}`);
    assert(await page.locator('#answer').getAttribute('aria-invalid') === 'true', 'code aria-invalid');
    assert(await visible('#code-form') && !(await visible('#done')), 'not verified');
    assert(!(await disabled('#verify')), 'Verify enabled again');
    await countdownBelow(before);   // the resend countdown was not reset by the verify
    await shot('wrong-code');
  });

  await step('the mock code 123456 verifies', async () => {
    await page.getByLabel('6-digit code').fill('123456');
    assert(!(await visible('#answer-error')), 'editing the code clears its error');
    const verified = page.waitForResponse((r) => r.url().endsWith('/pvgate/verify-token-answer'));
    const shopAnswer = page.waitForResponse((r) => r.url().endsWith('/shop/verified-phone'));
    await page.getByRole('button', { name: 'Verify' }).click();
    const vr = await verified;
    assert(vr.status() === 200, `verify answered ${vr.status()}`);
    seen.token = (await vr.json()).verification_token;
    assert(typeof seen.token === 'string' && seen.token.split('.').length === 3,
      `verify answer carries a compact JWS: ${seen.token}`);
    const sr = await shopAnswer;
    assert(sr.status() === 200, `the page handed the token to the shop: ${sr.status()}`);
    await until('the success state', () => visible('#done'));
    assert((await text('#done-title')) === 'Phone number verified', 'success title');
    assert((await text('#verified-number')) === `+${PHONE.dial} ${PHONE.number}`, 'verified number');
    assert((await text('#notice')) === 'Verified.', `notice: ${await text('#notice')}`);
    assert(!(await visible('#code-form')) && !(await visible('#phone-form')), 'forms hidden');
    await shot('verified');
  });

  await step('the shop backend verified the phone for the logged-in user', async () => {
    const said = await until("the shop's answer on the page", () => text('#shop-result'),
      (t) => t.startsWith('The shop'));
    assert(said === `The shop verified ${E164} for user ${seen.user}.`, `page shows: ${said}`);
    assert(await page.locator('#shop-result').getAttribute('class') === 'shop-result ok',
      'shown as a success');
    // The token is what the README says, and its key is in pvgate's published set.
    const header = jwtPart(seen.token, 0);
    const claims = jwtPart(seen.token, 1);
    assert(header.alg === 'ES256' && header.typ === 'JWT' && header.kid, `header ${JSON.stringify(header)}`);
    assert(claims.iss === `${ORIGIN}/pvgate` && claims.aud === AUDIENCE && claims.sub === seen.user
      && claims.phone_number === E164 && claims.phone_number_verified === true
      && claims.exp > claims.iat && claims.jti, `claims ${JSON.stringify(claims)}`);
    const jwks = await fetchIn(page, '/pvgate/jwks.json');
    assert(jwks.status === 200 && jwks.body.keys.some((k) => k.kid === header.kid),
      `the token's kid is in /pvgate/jwks.json: ${JSON.stringify(jwks.body)}`);
    // The shop's own record, from its session: the phone, for this user, from this token.
    const me = await fetchIn(page, '/shop/me');
    assert(me.status === 200 && me.body.user_id === seen.user, `/shop/me: ${JSON.stringify(me)}`);
    const phones = me.body.verified_phones;
    assert(phones.length === 1 && phones[0].phone_number === E164 && phones[0].jti === claims.jti,
      `/shop/me verified_phones: ${JSON.stringify(phones)}`);
    await shot('shop-verified');
  });

  await step('the shop refuses the token again (409) and for another user (401)', async () => {
    const again = await postToken(page, seen.token);
    assert(again.status === 409 && /already used/.test(again.body.message),
      `replayed token: ${JSON.stringify(again)}`);
    // Another browser (its own cookies) logs in as another user and presents the same token.
    const other = await browser.newContext({ locale: 'en-US' });
    try {
      const p2 = watch(await other.newPage());
      const user2 = await openPage(p2);
      assert(/^demo-[0-9a-f]{12}$/.test(user2) && user2 !== seen.user, `second user ${user2}`);
      const r = await postToken(p2, seen.token);
      assert(r.status === 401 && /another user/.test(r.body.message),
        `token of ${seen.user} presented by ${user2}: ${JSON.stringify(r)}`);
      const me2 = await fetchIn(p2, '/shop/me');
      assert(me2.status === 200 && me2.body.verified_phones.length === 0,
        `nothing recorded for ${user2}: ${JSON.stringify(me2)}`);
    } finally {
      await other.close();
    }
    const me = await fetchIn(page, '/shop/me');
    assert(me.body.verified_phones.length === 1, `still one record: ${JSON.stringify(me.body)}`);
  });

  await step('the cooling-down number cannot be sent again; another can', async () => {
    await page.getByRole('button', { name: 'Verify another number' }).click();
    await until('the phone form', () => visible('#phone-form'));
    await page.getByLabel('Phone number', { exact: true }).fill(PHONE.number);
    const t = await text('#send');
    assert(await disabled('#send') && /^Send code \(wait \d+ s\)$/.test(t), `send for the same number: ${t}`);
    await page.getByLabel('Phone number', { exact: true }).fill('123456780');
    await until('Send code enabled for another number', () => disabled('#send'), (d) => d === false);
  });

  await step('a number as people type it: "+60", "(019) 876-54.32" is sent and answered 200', async () => {
    // The page strips separators and the '+'; the trunk 0 is pvgate's to read (libphonenumber).
    await page.getByLabel('Country code', { exact: true }).fill('+60');
    await page.getByLabel('Phone number', { exact: true }).fill('(019) 876-54.32');
    const sent = page.waitForRequest((r) => r.url().endsWith('/pvgate/send-token'));
    const answered = page.waitForResponse((r) => r.url().endsWith('/pvgate/send-token'));
    await page.getByRole('button', { name: 'Send code' }).click();
    const body = JSON.parse((await sent).postData());
    assert(body.contact_no_country_dialing_code === '60' && body.contact_no === '0198765432',
      `the page sent ${JSON.stringify(body)}`);
    const r = await answered;
    assert(r.status() === 200, `pvgate answered ${r.status()}: ${await r.text()}`);
    await until('the code form', () => visible('#code-form'));
    assert((await text('#notice')) === 'Token sent.', `notice: ${await text('#notice')}`);
    await shot('typed-number-sent');
  });

  await step('a solution used elsewhere: 403 challenge, the page solves a new one and sends', async () => {
    await page.getByRole('button', { name: 'Change number' }).click();
    await until('the phone form', () => visible('#phone-form'));
    await page.getByLabel('Country code', { exact: true }).fill(PHONE.dial);
    await page.getByLabel('Phone number', { exact: true }).fill(REPLAY_NUMBER);
    // Focus in the form started a solve (auto="onfocus").
    await until('the widget verified', challengeState, (v) => v === 'verified');
    const used = await page.locator('altcha-widget input[name="altcha"]').inputValue();
    // Someone sends that payload first. pvgate claims it in its challenge stage; the throttle
    // then refuses the send (the number of the step before is cooling down), so nothing is sent.
    const first = await fetchIn(page, '/pvgate/send-token', { method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ user_id: seen.user, contact_no_country_dialing_code: '60',
        contact_no: '0198765432', altcha: used }) });
    assert(first.status === 429, `the payload's first use: ${JSON.stringify(first)}`);
    // What the notice says on the way, and every send-token answer.
    await page.evaluate(() => {
      const n = document.getElementById('notice');
      window.noticesSeen = [];
      new MutationObserver(() => window.noticesSeen.push(n.textContent))
        .observe(n, { childList: true, characterData: true, subtree: true });
    });
    const answers = [];
    const onResponse = (r) => {
      if (r.url() === `${ORIGIN}/pvgate/send-token`) answers.push(r);
    };
    page.on('response', onResponse);
    const before = sendsSeen.length;
    try {
      await page.getByRole('button', { name: 'Send code' }).click();
      await until('the code form', () => visible('#code-form'));
    } finally {
      page.off('response', onResponse);
    }
    const sends = sendsSeen.slice(before);
    assert(sends.length === 2 && sends[0] === used && sends[1] && sends[1] !== used,
      `the page sent the used payload, then a new one (${sends.length} sends)`);
    const refused = await answers[0].json();
    assert(answers[0].status() === 403 && refused.status === 403 && refused.challenge === 'altcha'
      && /already used/.test(refused.message), `first answer: ${JSON.stringify(refused)}`);
    assert(answers[1].status() === 200, `second answer: ${answers[1].status()}`);
    const notices = await page.evaluate(() => window.noticesSeen);
    assert(notices.some((t) => /already used.*Solving a new check and sending again/.test(t)),
      `the page told the user: ${JSON.stringify(notices)}`);
    assert((await text('#notice')) === 'Token sent.', `notice: ${await text('#notice')}`);
    assert((await text('#sent-to')) === `+${PHONE.dial} ${REPLAY_NUMBER}`, 'number shown');
    await until('the widget reset after the send', challengeState, (v) => v === 'unverified');
    await shot('challenge-solved-again');
  });

  await step('no console errors or CSP violations, no request outside the page origin', async () => {
    assert(consoleErrors.length === 0, `console errors: ${consoleErrors.join(' | ')}`);
    assert(foreignRequests.length === 0, `requests elsewhere: ${foreignRequests.join(' ')}`);
    const csp = await page.evaluate(() => window.cspViolations);
    assert(csp.length === 0, `CSP violations: ${csp.join(' | ')}`);
    assert(sendsSeen.length > 0 && sendsSeen.every((a) => a !== null),
      `every send-token carried an altcha solution (${sendsSeen.length} sends)`);
  });
}

let crashed = null;
try {
  await main();
} catch (e) {
  crashed = e;
  console.log(`FAIL browser: ${e && e.stack ? e.stack : e}`);
}
const count = (o) => results.filter((r) => r.outcome === o).length;
const failed = count('failed') + (crashed ? 1 : 0);
const skipped = count('skipped');
console.log(`${count('passed')} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exit(failed ? 1 : 0);
