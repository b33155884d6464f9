import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { createExecaRunner } from '../../src/exec/index.ts';
import { createSilentLogger } from '../../src/log/index.ts';
import { collectSystemLogs } from '../../src/system/index.ts';

describe('collectSystemLogs', () => {
  it('builds a gzipped tar (base64) with the agent log, command outputs and an index, secrets masked', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'logs-test-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const secret = 'S3CRET-token-0123456789abcdefghijklmnop';
    const agentLog = join(dir, 'agent.log');
    writeFileSync(agentLog, `{"msg":"hello"}\n{"msg":"token ${secret} leaked by mistake"}\n`);
    const fakeCmdline = join(dir, 'cmdline');
    writeFileSync(fakeCmdline, `ipa-api-url=http://x ipa-agent-token=${secret}\n`);

    const started = performance.now();
    const { system_logs: b64 } = await collectSystemLogs({
      runner: createExecaRunner(),
      log: createSilentLogger(),
      signal: AbortSignal.timeout(60_000),
      agentLogFile: agentLog,
      sources: [
        { name: 'uname.txt', argv: ['uname', '-a'] },
        { name: 'missing.txt', argv: ['definitely-not-installed-xyz'] },
        { name: 'cmdline.txt', file: fakeCmdline },
      ],
      secrets: () => [secret],
    });
    assert.ok(performance.now() - started < 60_000);

    const archive = join(dir, 'out.tar.gz');
    writeFileSync(archive, Buffer.from(b64, 'base64'));
    const listing = execFileSync('tar', ['-tzf', archive], { encoding: 'utf8' }).split('\n').map((l) => l.replace(/^\.\//, '')).filter(Boolean);
    for (const name of ['agent.log', 'uname.txt', 'cmdline.txt', 'index.txt']) assert.ok(listing.includes(name), `${name} in ${listing.join(',')}`);
    const out = join(dir, 'x');
    execFileSync('mkdir', ['-p', out]);
    execFileSync('tar', ['-xzf', archive, '-C', out]);
    const index = readFileSync(join(out, 'index.txt'), 'utf8');
    assert.match(index, /missing\.txt: unavailable \(not installed\)/);
    assert.match(index, /uname\.txt: ok/);
    for (const name of ['agent.log', 'cmdline.txt']) {
      const text = readFileSync(join(out, name), 'utf8');
      assert.ok(!text.includes(secret), `${name} must not contain the secret`);
      assert.ok(text.includes('***'));
    }
  });
});
