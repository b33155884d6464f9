import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { getBmcAddresses, parseIpmiLan6Print, parseIpmiLanPrint } from '../../src/hardware/index.ts';
import { createFakeRunner, notInstalled } from '../helpers/fake-runner.ts';

const LAN_PRINT = `Set in Progress         : Set Complete
Auth Type Support       : NONE MD5 PASSWORD
IP Address Source       : Static Address
IP Address              : 10.20.30.40
Subnet Mask             : 255.255.255.0
MAC Address             : 3c:ec:ef:12:34:56
SNMP Community String   : public
Default Gateway IP      : 10.20.30.1
802.1q VLAN ID          : Disabled
Cipher Suite Priv Max   : XaaaXXaaaXaaaXa
`;

const LAN6_PRINT = `IPv6/IPv4 Support:        IPv6 and IPv4 simultaneously
IPv6/IPv4 Addressing Enables: IPv6/IPv4 both enabled
IPv6 Static Address 0:
    Enabled:        yes
    Address:        ::/0
    Status:         disabled
IPv6 Static Address 1:
    Enabled:        yes
    Address:        2001:db8:10::40/64
    Status:         active
IPv6 Dynamic Address 0:
    Source/Type:    SLAAC
    Address:        2001:db8:10::3eec:efff:fe12:3456/64
    Status:         active
`;

describe('ipmitool output parsers', () => {
  test('lan print: the IP Address line, not IP Address Source', () => {
    assert.equal(parseIpmiLanPrint(LAN_PRINT), '10.20.30.40');
  });
  test('lan print: 0.0.0.0 means unconfigured', () => {
    assert.equal(parseIpmiLanPrint(LAN_PRINT.replace('10.20.30.40', '0.0.0.0')), null);
    assert.equal(parseIpmiLanPrint(''), null);
  });
  test('lan6 print: the first active address', () => {
    assert.equal(parseIpmiLan6Print(LAN6_PRINT), '2001:db8:10::40');
    assert.equal(parseIpmiLan6Print(LAN6_PRINT.replaceAll('active', 'disabled')), null);
  });
});

describe('getBmcAddresses', () => {
  test('both addresses from ipmitool', async () => {
    const runner = createFakeRunner([
      { argv: ['ipmitool', 'lan', 'print'], stdout: LAN_PRINT },
      { argv: ['ipmitool', 'lan6', 'print'], stdout: LAN6_PRINT },
    ]);
    assert.deepEqual(await getBmcAddresses({ runner }), { v4: '10.20.30.40', v6: '2001:db8:10::40' });
    runner.assertDone();
  });

  test('no ipmitool: nulls, no error, asked once', async () => {
    const runner = createFakeRunner([{ argv: ['ipmitool', 'lan', 'print'], error: notInstalled('ipmitool') }]);
    assert.deepEqual(await getBmcAddresses({ runner }), { v4: null, v6: null });
    assert.equal(runner.calls.length, 1);
  });

  test('no BMC device: nulls, lan6 not tried', async () => {
    const runner = createFakeRunner([
      { argv: ['ipmitool', 'lan', 'print'], exitCode: 1, stderr: 'Could not open device at /dev/ipmi0 or /dev/ipmi/0 or /dev/ipmidev/0: No such file or directory' },
    ]);
    assert.deepEqual(await getBmcAddresses({ runner }), { v4: null, v6: null });
    assert.equal(runner.calls.length, 1);
  });

  test('a BMC without IPv6 support', async () => {
    const runner = createFakeRunner([
      { argv: ['ipmitool', 'lan', 'print'], stdout: LAN_PRINT },
      { argv: ['ipmitool', 'lan6', 'print'], exitCode: 1, stderr: 'Invalid channel' },
    ]);
    assert.deepEqual(await getBmcAddresses({ runner }), { v4: '10.20.30.40', v6: null });
  });
});
