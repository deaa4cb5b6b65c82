// A throw-away PKI made with the openssl command at test time: a test CA, server certificates
// for localhost (one per name a test needs), a self-signed one nobody trusts, and a client
// certificate for mutual TLS. Nothing here is committed; every run makes its own.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const openssl = (args, opts = {}) => execFileSync('openssl', args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts });

function keyPair(dir, name) {
  const key = path.join(dir, `${name}.key`);
  openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', key]);
  return key;
}

// Issues NAME signed by the CA (or self-signed when CA is null) with subjectAltName SAN.
function issue(dir, ca, name, { cn, san, usage = 'serverAuth', org = 'syncgate tests' }) {
  const key = keyPair(dir, name), csr = path.join(dir, `${name}.csr`), cert = path.join(dir, `${name}.pem`);
  const ext = path.join(dir, `${name}.ext`);
  fs.writeFileSync(ext, `basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=${usage}\n${san ? `subjectAltName=${san}\n` : ''}`);
  openssl(['req', '-new', '-key', key, '-subj', `/O=${org}/CN=${cn}`, '-out', csr]);
  if (ca) openssl(['x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-CAcreateserial', '-days', '2', '-extfile', ext, '-out', cert]);
  else openssl(['x509', '-req', '-in', csr, '-signkey', key, '-days', '2', '-extfile', ext, '-out', cert]);
  return { cert, key };
}

// Makes the PKI in DIR (a new temporary directory by default) and describes it.
export function makePki(dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sg-pki-'))) {
  fs.mkdirSync(dir, { recursive: true });
  const caKey = keyPair(dir, 'ca'), caCert = path.join(dir, 'ca.pem');
  openssl(['req', '-x509', '-new', '-key', caKey, '-subj', '/O=syncgate tests/CN=syncgate test CA', '-days', '2',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign', '-out', caCert]);
  const ca = { cert: caCert, key: caKey };
  const localhost = 'DNS:localhost,IP:127.0.0.1';
  const pki = {
    dir,
    ca: caCert,
    server: issue(dir, ca, 'server', { cn: 'localhost', san: localhost }),
    server2: issue(dir, ca, 'server2', { cn: 'localhost', san: localhost, org: 'syncgate tests second' }),
    wrongHost: issue(dir, ca, 'wrong', { cn: 'wrong.example', san: 'DNS:wrong.example' }),
    // the names of TalkJS's hosted origins, as tests/interop/sdk_hosted_origins.test.mjs stands them up
    hosted: issue(dir, ca, 'hosted', { cn: 'api.talkjs.test', san: 'DNS:api.talkjs.test,DNS:app.talkjs.test,DNS:realtime.talkjs.test' }),
    selfSigned: issue(dir, null, 'self', { cn: 'localhost', san: localhost }),
    client: issue(dir, ca, 'client', { cn: 'syncgate-client', usage: 'clientAuth' }),
    broken: path.join(dir, 'broken.pem'),
  };
  fs.writeFileSync(pki.broken, '-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n');
  return pki;
}

// The [tls] section serving CERT/KEY, plus extra lines.
export const tlsSection = ({ cert, key }, extra = '') => `[tls]\ncert = ${cert}\nkey = ${key}\n${extra}`;

// The PKI as loadPki() finds it: `node tests/lib/tlsca.mjs --out DIR` (a ctest fixture).
export const loadPki = (dir) => JSON.parse(fs.readFileSync(path.join(dir, 'pki.json'), 'utf8'));
if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const i = process.argv.indexOf('--out');
  if (i < 0) { console.error('usage: tlsca.mjs --out DIR'); process.exit(2); }
  const pki = makePki(path.resolve(process.argv[i + 1]));
  fs.writeFileSync(path.join(pki.dir, 'pki.json'), JSON.stringify(pki, null, 2));
  console.log(`test PKI in ${pki.dir}`);
}
