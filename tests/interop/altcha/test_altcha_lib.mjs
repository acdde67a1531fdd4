// pvgate's ALTCHA module (src/altcha.h, through pvgate_altcha_tool) against the reference
// server library altcha-lib (pinned in package-lock.json), both ways:
//   - altcha-lib's solver solves what pvgate issues, the payload built as the widget builds it
//     (btoa(JSON.stringify({challenge: {parameters, signature}, solution}))), and both pvgate
//     and altcha-lib's verifySolution accept it;
//   - pvgate accepts what altcha-lib's createChallenge makes with pvgate's secrets;
//   - both refuse the same tampered, foreign, expired and wrong payloads.
// Replays are not this module's concern (the store claims each challenge once).
//
//   node test_altcha_lib.mjs --tool build/tests/pvgate_altcha_tool
//
// One line per case, then `N passed, M failed`; exit 1 on any failure.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { createChallenge, randomInt, solveChallenge, verifySolution } from 'altcha-lib';
import { deriveKey } from 'altcha-lib/algorithms/sha';

const toolIndex = process.argv.indexOf('--tool');
if (toolIndex < 0 || !process.argv[toolIndex + 1]) {
  console.error('usage: node test_altcha_lib.mjs --tool PVGATE_ALTCHA_TOOL');
  process.exit(2);
}
const TOOL = process.argv[toolIndex + 1];
const MERCHANT = 'shop-a';
const DIFFICULTY = 5000;
const MIN_COUNTER = Math.ceil(DIFFICULTY / 2);

const dir = mkdtempSync(join(tmpdir(), 'pvgate-altcha-interop-'));
const KEYFILE = join(dir, 'altcha.key');
writeFileSync(KEYFILE, 'interop test key: 9d1f5c0b7e2a4c8f\n', { mode: 0o600 });

function tool(...args) {
  const r = spawnSync(TOOL, args, { encoding: 'utf8' });
  if (r.error) throw r.error;
  if (r.status === 2) throw new Error(`pvgate_altcha_tool usage: ${r.stderr.trim()}`);
  return { status: r.status, out: r.stdout.trim(), err: r.stderr.trim() };
}

function secretsOf(merchant) {
  const r = tool('secrets', KEYFILE, merchant);
  const [signature, keySignature] = r.out.split('\n');
  if (r.status !== 0 || !/^[0-9a-f]{64}$/.test(signature) || !/^[0-9a-f]{64}$/.test(keySignature)) {
    throw new Error(`secrets: ${r.out} ${r.err}`);
  }
  return { signature, keySignature };
}

function pvgateIssue(difficulty, ttlSeconds) {
  const r = tool('issue', KEYFILE, MERCHANT, String(difficulty), String(ttlSeconds));
  if (r.status !== 0) throw new Error(`issue: ${r.err}`);
  return JSON.parse(r.out);
}

function pvgateVerify(payload, minCounter = MIN_COUNTER) {
  return tool('verify', KEYFILE, MERCHANT, String(minCounter), payload).out;
}

// What the widget submits in its `altcha` field.
function widgetPayload(challenge, solution) {
  return btoa(JSON.stringify({
    challenge: { parameters: challenge.parameters, signature: challenge.signature },
    solution,
  }));
}

async function solve(challenge) {
  const solution = await solveChallenge({ challenge, deriveKey, timeout: 60_000 });
  if (!solution) throw new Error('altcha-lib found no solution');
  return solution;
}

// altcha-lib's own check, with the key signature (its fast path) or without (re-deriving).
function libVerify(challenge, solution, secrets, { keySignature = true } = {}) {
  return verifySolution({
    challenge,
    solution,
    deriveKey,
    hmacSignatureSecret: secrets.signature,
    ...(keySignature ? { hmacKeySignatureSecret: secrets.keySignature } : {}),
  });
}

function libChallenge(secrets, { counter, expiresAt, ...rest } = {}) {
  return createChallenge({
    algorithm: 'SHA-256',
    cost: 1,
    keyLength: 32,
    counter: counter ?? randomInt(DIFFICULTY, MIN_COUNTER),
    deriveKey,
    expiresAt: expiresAt ?? Math.floor(Date.now() / 1000) + 300,
    hmacSignatureSecret: secrets.signature,
    hmacKeySignatureSecret: secrets.keySignature,
    ...rest,
  });
}

function expect(what, actual, wanted) {
  if (actual !== wanted) throw new Error(`${what}: ${JSON.stringify(actual)}, wanted ${JSON.stringify(wanted)}`);
}

const SECRETS = secretsOf(MERCHANT);
const OTHER = secretsOf('shop-b');

const cases = [
  ['pvgate issues, altcha-lib solves, both verify', async () => {
    const challenge = pvgateIssue(DIFFICULTY, 300);
    expect('parameter keys', Object.keys(challenge.parameters).join(','),
           'algorithm,cost,expiresAt,keyLength,keyPrefix,keySignature,nonce,salt');
    const solution = await solve(challenge);
    if (solution.counter < MIN_COUNTER || solution.counter > DIFFICULTY) {
      throw new Error(`counter ${solution.counter} outside [${MIN_COUNTER}, ${DIFFICULTY}]`);
    }
    expect('pvgate', pvgateVerify(widgetPayload(challenge, solution)), 'ok');
    expect('altcha-lib (key signature)', (await libVerify(challenge, solution, SECRETS)).verified, true);
    expect('altcha-lib (re-derived)',
           (await libVerify(challenge, solution, SECRETS, { keySignature: false })).verified, true);
    return `counter ${solution.counter}`;
  }],
  ['altcha-lib creates with pvgate\'s secrets, pvgate verifies', async () => {
    const counter = randomInt(DIFFICULTY, MIN_COUNTER);
    const challenge = await libChallenge(SECRETS, { counter });
    const solution = await solve(challenge);
    expect('solved counter', solution.counter, counter);
    expect('pvgate', pvgateVerify(widgetPayload(challenge, solution)), 'ok');
    return `counter ${counter}`;
  }],
  ['a counter below the minimum is too_easy', async () => {
    const challenge = await libChallenge(SECRETS, { counter: MIN_COUNTER - 1 });
    const solution = await solve(challenge);
    expect('altcha-lib', (await libVerify(challenge, solution, SECRETS)).verified, true);
    expect('pvgate', pvgateVerify(widgetPayload(challenge, solution)), 'too_easy');
    expect('pvgate, minimum lowered', pvgateVerify(widgetPayload(challenge, solution), MIN_COUNTER - 1), 'ok');
  }],
  ['another merchant\'s secrets: forged', async () => {
    const challenge = await libChallenge(OTHER);
    const solution = await solve(challenge);
    expect('pvgate', pvgateVerify(widgetPayload(challenge, solution)), 'forged');
    const mine = pvgateIssue(DIFFICULTY, 300);
    const mySolution = await solve(mine);
    expect('altcha-lib with the other secrets',
           (await libVerify(mine, mySolution, OTHER)).invalidSignature, true);
  }],
  ['a tampered keyPrefix: forged', async () => {
    const challenge = pvgateIssue(DIFFICULTY, 300);
    const solution = await solve(challenge);
    // A shorter prefix the same key still starts with: easier, and refused.
    const tampered = { ...challenge, parameters: { ...challenge.parameters,
                                                   keyPrefix: challenge.parameters.keyPrefix.slice(0, 4) } };
    expect('pvgate', pvgateVerify(widgetPayload(tampered, solution)), 'forged');
    expect('altcha-lib', (await libVerify(tampered, solution, SECRETS)).invalidSignature, true);
  }],
  ['past expiresAt: expired', async () => {
    const challenge = await libChallenge(SECRETS, { expiresAt: Math.floor(Date.now() / 1000) - 60 });
    const solution = await solve(challenge);
    expect('pvgate', pvgateVerify(widgetPayload(challenge, solution)), 'expired');
    expect('altcha-lib', (await libVerify(challenge, solution, SECRETS)).expired, true);
    const issued = pvgateIssue(DIFFICULTY, -60);
    const issuedSolution = await solve(issued);
    expect('pvgate, its own', pvgateVerify(widgetPayload(issued, issuedSolution)), 'expired');
    expect('altcha-lib, pvgate\'s', (await libVerify(issued, issuedSolution, SECRETS)).expired, true);
  }],
  ['a wrong counter: wrong', async () => {
    const challenge = pvgateIssue(DIFFICULTY, 300);
    const solution = await solve(challenge);
    const wrong = { ...solution, counter: solution.counter + 1 };
    expect('pvgate', pvgateVerify(widgetPayload(challenge, wrong)), 'wrong');
    expect('altcha-lib (re-derived)',
           (await libVerify(challenge, wrong, SECRETS, { keySignature: false })).invalidSolution, true);
  }],
  ['altcha-lib\'s optional `data` parameter: malformed (pvgate never issues it)', async () => {
    const challenge = await libChallenge(SECRETS, { data: { shop: 'a' } });
    const solution = await solve(challenge);
    expect('altcha-lib', (await libVerify(challenge, solution, SECRETS)).verified, true);
    expect('pvgate', pvgateVerify(widgetPayload(challenge, solution)), 'malformed');
  }],
];

let passed = 0;
let failed = 0;
try {
  for (const [name, run] of cases) {
    try {
      const note = await run();
      passed += 1;
      console.log(`PASS ${name}${note ? ` (${note})` : ''}`);
    } catch (e) {
      failed += 1;
      console.log(`FAIL ${name}: ${e.message}`);
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
