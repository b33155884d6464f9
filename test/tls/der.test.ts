import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  bitString, boolean, explicit, generalizedTime, ia5String, implicit, integer, nullValue, octetString, oid,
  printableString, sequence, set, unsignedInteger, utcTime, utf8String, x509Time,
} from '../../src/tls/der.ts';

const hex = (b: Buffer) => b.toString('hex');

describe('DER encoder against known encodings (X.690)', () => {
  const integers: [bigint | number, string][] = [
    [0, '020100'], [1, '020101'], [127, '02017f'], [128, '02020080'], [255, '020200ff'], [256, '02020100'],
    [-1, '0201ff'], [-128, '020180'], [-129, '0202ff7f'], [65535, '020300ffff'],
    [2n ** 64n, '0209010000000000000000'],
  ];
  for (const [value, expected] of integers) {
    it(`INTEGER ${value} → ${expected}`, () => assert.equal(hex(integer(value)), expected));
  }

  it('INTEGER from unsigned bytes: strips leading zeros, adds one before a high bit', () => {
    assert.equal(hex(unsignedInteger(Buffer.from([0, 0, 0x80]))), '02020080');
    assert.equal(hex(unsignedInteger(Buffer.from([0x01, 0x02]))), '02020102');
    assert.equal(hex(unsignedInteger(Buffer.from([0, 0]))), '020100');
  });

  const oids: [string, string][] = [
    ['1.2.840.113549', '06062a864886f70d'], // RSA Data Security arc
    ['2.5.29.17', '0603551d11'], // subjectAltName
    ['2.5.4.3', '0603550403'], // commonName
    ['1.2.840.10045.4.3.4', '06082a8648ce3d040304'], // ecdsa-with-SHA512
    ['1.3.132.0.34', '06052b81040022'], // secp384r1
    ['2.999.3', '0603883703'], // X.690 §8.19.5 example
  ];
  for (const [dotted, expected] of oids) {
    it(`OID ${dotted} → ${expected}`, () => assert.equal(hex(oid(dotted)), expected));
  }

  it('rejects malformed object identifiers', () => {
    assert.throws(() => oid('3.1'), RangeError);
    assert.throws(() => oid('1.40'), RangeError);
    assert.throws(() => oid('1'), RangeError);
  });

  it('BOOLEAN, NULL, BIT STRING (X.690 §8.6 example), OCTET STRING', () => {
    assert.equal(hex(boolean(true)), '0101ff');
    assert.equal(hex(boolean(false)), '010100');
    assert.equal(hex(nullValue()), '0500');
    assert.equal(hex(bitString(Buffer.from('6e5dc0', 'hex'), 6)), '0304066e5dc0');
    assert.equal(hex(octetString(Buffer.from([1, 2]))), '04020102');
    assert.throws(() => bitString(Buffer.alloc(1), 8), RangeError);
  });

  it('long-form lengths', () => {
    assert.equal(hex(octetString(Buffer.alloc(127))).slice(0, 4), '047f');
    assert.equal(hex(octetString(Buffer.alloc(128))).slice(0, 6), '048180');
    assert.equal(hex(octetString(Buffer.alloc(200))).slice(0, 6), '0481c8');
    assert.equal(hex(octetString(Buffer.alloc(300))).slice(0, 8), '0482012c');
    assert.equal(octetString(Buffer.alloc(70000)).subarray(0, 5).toString('hex'), '0483011170');
  });

  it('strings', () => {
    assert.equal(hex(utf8String('é')), '0c02c3a9');
    assert.equal(hex(printableString('Test User 1')), '130b5465737420557365722031');
    assert.equal(hex(ia5String('a.b')), '1603612e62');
    assert.throws(() => printableString('a@b'), RangeError);
    assert.throws(() => ia5String('é'), RangeError);
  });

  it('SEQUENCE keeps order; SET OF sorts by encoding', () => {
    assert.equal(hex(sequence(integer(1), boolean(true))), '30060201010101ff');
    assert.equal(hex(set(integer(2), integer(1))), '3106020101020102');
    assert.equal(hex(sequence()), '3000');
  });

  it('UTCTime, GeneralizedTime and the RFC 5280 choice between them', () => {
    const d = new Date('2026-08-05T12:34:56.789Z');
    assert.equal(hex(utcTime(d)), `170d${Buffer.from('260805123456Z').toString('hex')}`);
    assert.equal(hex(generalizedTime(d)), `180f${Buffer.from('20260805123456Z').toString('hex')}`);
    assert.equal(x509Time(d)[0], 0x17);
    assert.equal(x509Time(new Date('2049-12-31T23:59:59Z'))[0], 0x17);
    assert.equal(x509Time(new Date('2050-01-01T00:00:00Z')).toString('latin1', 2), '20500101000000Z');
    assert.throws(() => utcTime(new Date('2050-01-01T00:00:00Z')), RangeError);
  });

  it('context tags: [0] EXPLICIT wraps a TLV, [7] IMPLICIT replaces the tag', () => {
    assert.equal(hex(explicit(0, integer(2))), 'a003020102');
    assert.equal(hex(explicit(3, sequence())), 'a3023000');
    assert.equal(hex(implicit(7, Buffer.from([127, 0, 0, 1]))), '87047f000001');
    assert.throws(() => implicit(31, Buffer.alloc(0)), RangeError);
  });
});
