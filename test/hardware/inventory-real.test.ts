/**
 * The inventory of the machine running the tests, with the real runner and systeminformation.
 * Read-only: lsblk, sysfs, procfs and (if installed) ipmitool.
 */
import assert from 'node:assert/strict';
import { readdirSync, existsSync } from 'node:fs';
import { hostname } from 'node:os';
import { describe, test } from 'node:test';
import { createExecaRunner } from '../../src/exec/index.ts';
import { collectInventory, Inventory } from '../../src/hardware/index.ts';

// Interfaces backed by a device (what IPA and this agent report), as seen directly in sysfs.
function physicalInterfaces(): string[] {
  if (!existsSync('/sys/class/net')) return [];
  return readdirSync('/sys/class/net').filter((name) => name !== 'lo' && existsSync(`/sys/class/net/${name}/device`));
}

describe('collectInventory on this machine', () => {
  test('matches the schema and reports this machine', async (t) => {
    if (process.platform !== 'linux') return t.skip('needs Linux (sysfs, lsblk)');
    const started = performance.now();
    const inventory = await collectInventory({ runner: createExecaRunner(), bootif: '01-52-54-00-12-34-56' });
    t.diagnostic(`collected in ${Math.round(performance.now() - started)} ms`);
    assert.ok(Inventory.safeParse(inventory).success);
    assert.equal(inventory.hostname, hostname());
    assert.ok(inventory.memory.total > 0);
    assert.ok((inventory.memory.physical_mb ?? 0) * 2 ** 20 >= inventory.memory.total * 0.9);
    assert.ok(inventory.cpu.count >= 1);
    assert.equal(inventory.boot.pxe_interface, '01-52-54-00-12-34-56');
    assert.equal(inventory.boot.current_boot_mode, existsSync('/sys/firmware/efi') ? 'uefi' : 'bios');
    assert.ok(!inventory.interfaces.some((i) => i.name === 'lo'));
    assert.ok(!inventory.disks.some((d) => /\/(loop|ram|zram)\d/.test(d.name)), 'no loop, RAM or zram devices');

    const expected = physicalInterfaces().sort();
    assert.deepEqual(inventory.interfaces.map((i) => i.name).filter((n) => !n.includes('.')), expected);
    if (expected.length === 0) return t.diagnostic('no device-backed network interface here');
    assert.ok(inventory.interfaces.some((i) => /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/.test(i.mac_address) && i.mac_address !== '00:00:00:00:00:00'));
  });
});
