// pvgate demo page: the reference for how a browser frontend calls pvgate.
//
// Flow: phone form -> POST /pvgate/send-token -> code form -> POST /pvgate/verify-token-answer
// (with the `reference` the send answered) -> verified -> the answer's `verification_token` to
// the shop's own backend (POST /shop/verified-phone), which checks it and records the phone.
//
// The shop (data-shop on #app, scripts/demo_shop.py behind the demo nginx): on load the page
// "logs in" (POST /shop/login), and the shop answers with the user id it keeps in an HttpOnly
// session cookie; the page sends that id as pvgate's user_id. The page never decides that a
// phone is verified: the shop's server does, from the signed token, for the user of its own
// session. Without a shop (its /shop/login missing) the page keeps its editable demo user id.
//
// How to call pvgate from a page (everything below follows these rules):
//
//  * Same origin. Serve the page from the site whose nginx has the /pvgate/ location, and list
//    that origin in the merchant's `allowed_origins` (pvgate.yaml). The browser then sends an
//    Origin header with every POST; pvgate answers 403 to any origin not listed, so another
//    site cannot make its visitors' browsers send SMS on your account.
//  * fetch() with method POST, `Content-Type: application/json` and a JSON object body holding
//    only the customer's fields: user_id, contact_no_country_dialing_code (digits, no '+'),
//    contact_no (digits), and for verify also reference and answer. Take the number as people
//    write it and strip only the separators and a leading '+' (digitsOf below): pvgate reads
//    every spelling of a number (a trunk 0, an 00 prefix, the code typed twice) with
//    libphonenumber and forwards one canonical form. Never api_key, api_secret,
//    signature, timestamp or action: pvgate refuses them (the secret never reaches a browser).
//    `credentials: 'same-origin'` sends the site's cookies (for nginx's auth_request when the
//    user id comes from the session, PVGATE_USER_ID) and nothing cross-site.
//  * A challenge before any SMS, where the merchant sets one (pvgate.yaml: `challenge:`, here
//    `kind: altcha`). The page embeds the ALTCHA widget (npm `altcha`, pinned by package.json in
//    this folder and served by the same nginx under /vendor/altcha/, never from a CDN). Its
//    CSP-friendly build bundles no worker, so this file registers the SHA-256 one. The widget
//    fetches GET /pvgate/challenge and solves it in a Web Worker, from the moment the phone
//    form gets focus; on Send the page takes its payload (waiting for it, or starting it, when
//    it is not verified yet: solvedChallenge below) and sends it as the body field `altcha`.
//    pvgate accepts a solution once, so after every send attempt, whatever the answer, the
//    page resets the widget and the next send (a resend too) solves a new challenge.
//    verify-token-answer needs none.
//  * Every answer, success or not, is JSON: {status, message[, reference][, seconds_till_resend]};
//    a verify's 200 also carries `verification_token` when pvgate signs tokens (verification:).
//    Branch on the HTTP status first, then on the body's `status`:
//      200          done (send: keep `reference` for the verify call)
//      400          the user's input: status 9001 is pvgate's own check and its message names
//                   the field ("invalid contact_no: 1-32 digits", "missing field 'answer'"), so
//                   show it next to that input; 5001 on a send is the number itself (not a
//                   valid number for its country, or a premium-rate, toll-free, ... number
//                   that cannot receive the code: the message says which), shown under the
//                   number; other statuses are Pipwave's verdict
//                   (5052 wrong code, 5051 reference expired or unknown, ...), message passed on
//      403          with a `challenge` member (body status 403): the send carried no valid
//                   solution of the challenge it names ("altcha": none, expired, already used,
//                   forged, or too easy now that pvgate sees pressure; the message says which).
//                   Nothing was sent or counted. Solve a new one and send again: this page
//                   does so by itself once, saying so, when the refused send carried a
//                   solution; a second refusal is shown. Without `challenge`: status 5001 is
//                   the country (dialing code) not accepted; otherwise this page's origin is
//                   not in allowed_origins (a site misconfiguration)
//      413, 415     body too large / not JSON: a bug in the frontend, not the user's fault
//      429          too frequent: wait `seconds_till_resend` seconds (also in Retry-After)
//                   before offering the action again; the server refused it, nothing was sent
//      5xx          pvgate or Pipwave unavailable (generic message; details are in the
//                   server's log only): let the user try again later
//      no answer    network error: the same
//  * Show pvgate's messages with textContent, never as HTML.
//  * A 200 send answer normally carries no seconds_till_resend, so the page starts its resend
//    countdown from its own default (data-resend-seconds on #app, 60 s like the phone-cooldown
//    rule of conf/pvgate.yaml; `?resend_after=N` in the page URL overrides it, as the
//    end-to-end test does to show a too-early resend being refused). pvgate's throttle stays the
//    authority: when it refuses a resend, its 429 restarts the countdown with the real wait.
//
// No framework and no build step: this file is served as is.
'use strict';

(() => {
  const app = document.getElementById('app');
  const API = app.dataset.api || '/pvgate/';
  const SHOP = app.dataset.shop || '';

  // The resend countdown the page assumes after a successful send (see above).
  const resendParam = Number.parseInt(new URLSearchParams(window.location.search)
    .get('resend_after') || '', 10);
  const DEFAULT_RESEND_S = resendParam > 0 ? resendParam
    : Number.parseInt(app.dataset.resendSeconds || '60', 10);

  // The fields pvgate's 400 messages can name, longest first (contact_no is a prefix of
  // contact_no_country_dialing_code; the \b in fieldIn() needs no more than that).
  const FIELDS = ['contact_no_country_dialing_code', 'contact_no', 'user_id', 'answer',
    'reference'];

  const $ = (id) => document.getElementById(id);
  const el = {
    notice: $('notice'),
    phoneForm: $('phone-form'), send: $('send'),
    userId: $('user_id'), dial: $('contact_no_country_dialing_code'), number: $('contact_no'),
    codeForm: $('code-form'), sentTo: $('sent-to'), change: $('change'),
    answer: $('answer'), verify: $('verify'), resend: $('resend'),
    resendStatus: $('resend-status'),
    done: $('done'), verifiedNumber: $('verified-number'), again: $('again'),
    shopLogin: $('shop-login'), shopResult: $('shop-result'),
    widget: $('altcha'),
  };
  const inputs = { user_id: el.userId, contact_no_country_dialing_code: el.dial,
    contact_no: el.number, answer: el.answer };

  // What the page holds between the two calls: the fields the token was sent for (verify must
  // repeat them exactly) and the reference Pipwave gave it.
  let session = null;           // {fields: {...}, reference}
  let cooldown = null;          // {phone: 'dial|number', until: ms since epoch}
  let busy = false;
  let timer = null;
  let shopUser = false;         // logged in at the shop: tell it about the token

  // -- calling the shop's backend ---------------------------------------------------------------

  // One JSON call to the shop (same origin, its session cookie). Never throws:
  // {http, body} where http is 0 for a network error.
  async function callShop(method, route, fields) {
    try {
      const response = await fetch(SHOP + route, {
        method,
        headers: fields ? { 'Content-Type': 'application/json', Accept: 'application/json' }
          : { Accept: 'application/json' },
        credentials: 'same-origin',
        cache: 'no-store',
        body: fields ? JSON.stringify(fields) : undefined,
      });
      let body = null;
      try {
        body = await response.json();
      } catch (e) {
        body = null;
      }
      return { http: response.status, body: body && typeof body === 'object' ? body : {} };
    } catch (e) {
      return { http: 0, body: { message: 'No connection to the shop.' } };
    }
  }

  // Logs in at the shop and takes its user id; the id is the shop's, so the input is read-only.
  async function shopLogin() {
    if (!SHOP) return false;
    const r = await callShop('POST', 'login');
    if (r.http !== 200 || typeof r.body.user_id !== 'string') return false;
    el.userId.value = r.body.user_id;
    el.userId.readOnly = true;
    el.shopLogin.textContent = 'Logged in at the demo shop as this user (its session cookie); '
      + 'the shop checks the verification token against it.';
    el.shopLogin.hidden = false;
    return true;
  }

  // Hands pvgate's token to the shop and shows the shop's verdict.
  async function tellShop(token) {
    const out = el.shopResult;
    out.hidden = false;
    if (!token) {
      out.className = 'shop-result error';
      out.textContent = 'pvgate sent no verification token, so the shop cannot trust this result.';
      return;
    }
    out.className = 'shop-result';
    out.textContent = 'Checking with the shop…';
    const r = await callShop('POST', 'verified-phone', { token });
    if (r.http === 200) {
      out.className = 'shop-result ok';
      out.textContent = r.body.message || 'The shop verified the number.';
    } else {
      out.className = 'shop-result error';
      out.textContent = `The shop did not accept the token (HTTP ${r.http || 'none'}): `
        + `${r.body.message || 'no answer'}`;
    }
  }

  // -- the challenge before any SMS (the ALTCHA widget) ---------------------------------------

  // The widget's methods (verify, reset, getState) exist once /vendor/altcha/altcha.js, a module
  // that runs before this file, has defined <altcha-widget>. Its external build solves nothing
  // until the page names a worker for the algorithm pvgate's challenges use.
  const WIDGET_WORKER = '/vendor/altcha/workers/sha.js';
  if (window.$altcha && window.$altcha.algorithms) {
    window.$altcha.algorithms.set('SHA-256', () => new Worker(WIDGET_WORKER));
  }
  const widgetLoaded = () => Boolean(el.widget) && typeof el.widget.verify === 'function';
  let solved = null;   // the payload of the widget's verified challenge, until it is reset

  // The widget reports each state (unverified, verifying, verified, expired, error) in a
  // statechange event, after the state changed.
  if (el.widget) {
    el.widget.addEventListener('statechange', (e) => {
      solved = e.detail.state === 'verified' ? e.detail.payload : null;
      app.dataset.challengeState = e.detail.state;   // for tests
    });
  }

  // The widget's next settled state: its payload when verified, else null.
  function widgetSettles() {
    return new Promise((resolve) => {
      const on = (e) => {
        if (e.detail.state === 'verifying') return;
        el.widget.removeEventListener('statechange', on);
        resolve(e.detail.state === 'verified' ? e.detail.payload : null);
      };
      el.widget.addEventListener('statechange', on);
    });
  }

  // A solved challenge for one send: the widget's payload (the base64 the `altcha` field
  // takes). Waits for a solve under way (started by focus, or by a click on its checkbox), or
  // starts one. null when the widget did not load or failed (it then shows why); the page then
  // sends without a solution and pvgate's answer decides.
  async function solvedChallenge() {
    if (!widgetLoaded()) return null;
    if (solved) return solved;
    const state = el.widget.getState();
    if (state === 'verifying' || state === 'verified') {   // verified: its event is on its way
      const payload = await widgetSettles();
      if (payload) return payload;
    }
    const result = await el.widget.verify();
    return result && result.payload ? result.payload : null;
  }

  // After a send attempt: the solution was used (or refused), so the next send needs a new one.
  // A solve that focus started meanwhile is let finish first: the widget ignores a reset that
  // lands while a solve waits out its minDuration, and would show "verified" after it.
  async function resetChallenge() {
    solved = null;
    if (!widgetLoaded()) return;
    if (el.widget.getState() === 'verifying') await widgetSettles();
    solved = null;
    el.widget.reset();
  }

  // -- calling pvgate -------------------------------------------------------------------------

  // POSTs `fields` as JSON to API + route. Always resolves, never throws:
  // {http, body: {status, message, ...}, retryAfter} where http is 0 for a network error.
  async function callPvgate(route, fields) {
    let response;
    try {
      response = await fetch(API + route, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
        credentials: 'same-origin',
        cache: 'no-store',
        body: JSON.stringify(fields),
      });
    } catch (e) {
      return { http: 0, body: { status: 0, message: 'No connection to the server. Check your network and try again.' } };
    }
    let body = null;
    try {
      body = await response.json();
    } catch (e) {
      body = null;   // e.g. an HTML error page from a proxy in between
    }
    if (!body || typeof body !== 'object') {
      body = { status: response.status, message: '' };
    }
    const retryAfter = Number.parseInt(response.headers.get('Retry-After') || '', 10);
    return { http: response.status, body, retryAfter: Number.isFinite(retryAfter) ? retryAfter : null };
  }

  // Seconds to wait after a 429: the body's seconds_till_resend, else Retry-After, else 60.
  function waitOf(r) {
    const s = Number(r.body.seconds_till_resend);
    if (Number.isFinite(s) && s >= 0) return Math.ceil(s);
    return r.retryAfter != null ? r.retryAfter : 60;
  }

  // The field a 400 message names ("invalid contact_no: 1-32 digits"), or null.
  function fieldIn(message) {
    for (const name of FIELDS) {
      if (new RegExp(`\\b${name}\\b`).test(message || '')) return name;
    }
    return null;
  }

  // Turns any answer that is not a 200 into what the user sees: a message under the input it
  // concerns, or a notice for the whole form. `step` is 'send' or 'verify'; `fields` what was
  // sent.
  function showFailure(r, step, fields) {
    const status = Number(r.body.status);
    const msg = (r.body.message || '').trim();
    switch (r.http) {
      case 400: {
        if (status === 9001) {
          const field = fieldIn(msg);
          if (field && inputs[field] && !inputs[field].closest('[hidden]')) {
            return fieldError(field, humanize(field, msg));
          }
          if (field === 'reference') {
            return notice('error', 'This code request is no longer valid. Send a new code.');
          }
          return notice('error', msg || 'The request was not accepted.');
        }
        if (status === 5052) return fieldError('answer', msg || 'Incorrect code.');
        if (status === 5051) {
          return notice('error', `${msg || 'The code has expired.'} Send a new code.`);
        }
        if (step === 'send' && (status === 5001 || status === 5003)) {
          return fieldError('contact_no', msg || 'This phone number cannot be verified.');
        }
        return notice('error', msg || 'The request was not accepted.');
      }
      case 403:
        if (r.body.challenge) {
          // Refused again after a new solution (see sendToken), or sent without one because
          // the widget could not solve it (it shows why).
          return notice('error', `${msg || 'The anti-robot check was not accepted.'} `
            + 'Please try again.');
        }
        if (status === 5001) {
          return fieldError('contact_no_country_dialing_code',
            msg || 'Phone numbers from this country are not accepted.');
        }
        return notice('error', msg || 'This site is not allowed to use phone verification.');
      case 413:
      case 415:
        // The page sent something pvgate cannot take: a frontend bug, not the user's doing.
        return notice('error', `The page sent a request the server cannot read (${r.http}). ${msg}`);
      case 429: {
        const wait = waitOf(r);
        if (step === 'send') {
          startCooldown(phoneKey(fields), wait);
          return notice('error', `Too many code requests. You can ask for a new code in ${wait} s.`);
        }
        return notice('error', `Too many attempts. Try again in ${wait} s.`);
      }
      case 0:
        return notice('error', r.body.message);
      default:
        if (r.http >= 500) {
          return notice('error', msg || 'Phone verification is temporarily unavailable; try again shortly.');
        }
        return notice('error', msg || `Unexpected answer (HTTP ${r.http}).`);
    }
  }

  // pvgate names fields by their API names; say it the way the label does.
  function humanize(field, msg) {
    const label = document.querySelector(`label[for="${field}"]`);
    const name = label ? label.textContent.trim() : field;
    return msg.replace(/^invalid [a-z_]+: /, `${name}: `)
      .replace(/^missing field '[a-z_]+'$/, `${name} is required.`);
  }

  // -- what the page shows --------------------------------------------------------------------

  function notice(kind, text) {
    el.notice.textContent = text;
    el.notice.className = `notice ${kind}`;
    el.notice.hidden = !text;
  }

  function fieldError(name, text) {
    const input = inputs[name];
    const out = $(`${name}-error`);
    input.setAttribute('aria-invalid', 'true');
    out.textContent = text;
    out.hidden = false;
    input.focus();
  }

  function clearErrors() {
    notice('', '');
    for (const [name, input] of Object.entries(inputs)) {
      input.removeAttribute('aria-invalid');
      const out = $(`${name}-error`);
      out.textContent = '';
      out.hidden = true;
    }
  }

  function setBusy(on) {
    busy = on;
    app.setAttribute('aria-busy', on ? 'true' : 'false');
    el.verify.disabled = on;
    render();
  }

  // What people put between digits: spaces, dashes (also the typographic ones phones insert),
  // dots, parentheses, slashes.
  const SEPARATORS = /[\s\-\u2010-\u2015\u2212.()\/]/g;
  // A number as typed ("+60", "019-876 5432", "(019) 876.5432") without its separators and a
  // leading '+'. Nothing else is changed: a trunk 0, a "00" prefix, the country code typed again
  // in the number are all for pvgate to read (it knows every country's rules); letters and
  // other characters are left for pvgate to refuse by field.
  const digitsOf = (typed) => typed.replace(SEPARATORS, '').replace(/^\+/, '');

  function phoneFields() {
    return {
      user_id: el.userId.value.trim(),
      contact_no_country_dialing_code: digitsOf(el.dial.value),
      contact_no: digitsOf(el.number.value),
    };
  }

  const phoneKey = (f) => `${f.contact_no_country_dialing_code}|${f.contact_no}`;
  const shown = (f) => `+${f.contact_no_country_dialing_code} ${f.contact_no}`;

  function startCooldown(phone, seconds) {
    const until = Date.now() + seconds * 1000;
    // A later, longer answer wins; a shorter one never shortens what the server said.
    if (!cooldown || cooldown.phone !== phone || until > cooldown.until) {
      cooldown = { phone, until };
    }
    if (!timer) timer = window.setInterval(render, 250);
    render();
  }

  function secondsLeft(phone) {
    if (!cooldown || cooldown.phone !== phone) return 0;
    return Math.max(0, Math.ceil((cooldown.until - Date.now()) / 1000));
  }

  // Buttons and the countdown, from the state (called by every change and by the timer).
  function render() {
    const left = secondsLeft(session ? phoneKey(session.fields) : phoneKey(phoneFields()));
    if (left === 0 && timer && (!cooldown || Date.now() >= cooldown.until)) {
      window.clearInterval(timer);
      timer = null;
    }
    // Step 1: the same number cannot be sent again while its cooldown runs.
    const sendLeft = secondsLeft(phoneKey(phoneFields()));
    el.send.disabled = busy || sendLeft > 0;
    el.send.textContent = sendLeft > 0 ? `Send code (wait ${sendLeft} s)` : 'Send code';
    // Step 2: resend is offered once the countdown is over.
    el.resend.disabled = busy || left > 0;
    el.resend.textContent = left > 0 ? `Resend code in ${left} s` : 'Resend code';
    el.resendStatus.textContent = left > 0
      ? `You can ask for a new code in ${left} s.` : 'Did not get it? You can ask for a new code.';
  }

  function showStep(step) {
    el.phoneForm.hidden = step !== 'phone';
    el.codeForm.hidden = step !== 'code';
    el.done.hidden = step !== 'done';
    render();
  }

  // -- the three actions ----------------------------------------------------------------------

  async function sendToken(fields, isResend) {
    clearErrors();
    setBusy(true);
    let r;
    for (let attempt = 1; ; attempt += 1) {
      if (!solved && attempt === 1) {
        notice('info', 'Checking this browser before we send the code…');
      }
      const altcha = await solvedChallenge();
      r = await callPvgate('send-token', altcha ? { ...fields, altcha } : fields);
      await resetChallenge();   // used once, whatever the answer
      // A refused solution (expired, used, too easy now): one more send with a new one.
      if (!(r.http === 403 && r.body.challenge && altcha && attempt === 1)) break;
      notice('info', `${(r.body.message || 'The check was not accepted.').trim()} `
        + 'Solving a new check and sending again…');
    }
    setBusy(false);
    notice('', '');
    if (r.http !== 200) {
      showFailure(r, 'send', fields);
      return;
    }
    session = { fields, reference: r.body.reference };
    startCooldown(phoneKey(fields), r.body.seconds_till_resend > 0
      ? Math.ceil(r.body.seconds_till_resend) : DEFAULT_RESEND_S);
    el.sentTo.textContent = shown(fields);
    el.answer.value = '';
    showStep('code');
    notice('info', isResend ? 'A new code is on its way.' : (r.body.message || 'Code sent.'));
    el.answer.focus();
  }

  async function verify() {
    clearErrors();
    const answer = el.answer.value.trim();
    setBusy(true);
    // The same fields as the send, plus its reference (a JSON number) and the code.
    const r = await callPvgate('verify-token-answer',
      { ...session.fields, reference: session.reference, answer });
    setBusy(false);
    if (r.http !== 200) {
      showFailure(r, 'verify', session.fields);
      return;
    }
    el.verifiedNumber.textContent = shown(session.fields);
    el.shopResult.hidden = true;
    showStep('done');
    notice('success', r.body.message || 'Verified.');
    el.done.focus();
    if (shopUser) await tellShop(r.body.verification_token);
  }

  el.phoneForm.addEventListener('submit', (e) => {
    e.preventDefault();
    if (busy) return;
    const fields = phoneFields();
    // pvgate refuses a send without contact_no (unless the merchant allows Pipwave's stored
    // number); this form is about a number the user types, so it asks for one. Everything else
    // is checked by pvgate, whose messages the page shows by field.
    if (!fields.contact_no) {
      clearErrors();
      fieldError('contact_no', 'Phone number is required.');
      return;
    }
    sendToken(fields, false);
  });
  el.codeForm.addEventListener('submit', (e) => {
    e.preventDefault();
    if (!busy && session) verify();
  });
  el.resend.addEventListener('click', () => {
    if (!busy && session) sendToken(session.fields, true);
  });
  el.change.addEventListener('click', () => {
    clearErrors();
    showStep('phone');
    el.number.focus();
  });
  el.again.addEventListener('click', () => {
    clearErrors();
    session = null;
    el.number.value = '';
    el.answer.value = '';
    showStep('phone');
    el.number.focus();
  });
  // Editing an input clears its own error; editing the number re-evaluates its cooldown.
  for (const [name, input] of Object.entries(inputs)) {
    input.addEventListener('input', () => {
      if (input.getAttribute('aria-invalid')) {
        input.removeAttribute('aria-invalid');
        $(`${name}-error`).hidden = true;
      }
      render();
    });
  }

  showStep('phone');
  app.dataset.ready = 'true';   // for tests: the script has wired the page
  shopLogin().then((ok) => {
    shopUser = ok;
    app.dataset.shopState = ok ? 'logged-in' : 'none';   // for tests: the login is settled
  });
})();
