/**
 * nginx as the fleet's pull-through cache: a caching reverse proxy in front of the origin, used
 * by the agents as a registry mirror exactly like distribution's proxy. What it caches is only
 * what cannot change — blobs and manifests by digest — each fetched from the origin once however
 * many nodes ask at the same moment (`proxy_cache_lock`); manifests by tag and everything else
 * pass through. It runs in the foreground under its own prefix (`-p`, `-c`, `-e`), never touching
 * the system's nginx or /etc/nginx. docs/fleet.md explains the configuration line by line.
 * @module
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { cacheHome, cacheProcess, countKeys, type PullThroughCache } from './cache.ts';

export const NGINX_BIN = '/usr/sbin/nginx';

/**
 * Blobs are fetched and cached in pieces of this size: a node waiting on another's fetch waits for
 * one piece, not the whole blob (the agent's client gives up on headers after 60 s).
 */
const SLICE = '8m';

/** A blob on a slow link can take minutes: the other nodes wait for the one fetch that long. */
const LOCK_WAIT = '1h';

export interface NginxConfig {
  /** The directory nginx keeps everything in (pid, logs, temp files, the cache). */
  prefix: string;
  /** `127.0.0.1:<port>` it listens on. */
  listen: string;
  certPath: string;
  keyPath: string;
  /** The origin registry, `host:port`, over TLS. */
  origin: string;
  originCaPath: string;
  /** The cache's directory (wiped for a cold round). */
  data: string;
  accessLog: string;
}

/** The whole nginx.conf for one cache: nothing is included from /etc/nginx. */
export function nginxConfig(c: NginxConfig): string {
  const p = (name: string) => join(c.prefix, name);
  // Blobs in slices; a manifest by digest (a few KiB, and the origin answers no Range for it) whole.
  const cached = (sliced: boolean) => `${sliced ? `
      slice ${SLICE};
      proxy_cache_key $uri$slice_range;
      proxy_set_header Range $slice_range;` : `
      proxy_cache_key $uri;`}
      proxy_cache registry;
      proxy_cache_valid 200 206 30d;
      proxy_cache_lock on;
      proxy_cache_lock_timeout ${LOCK_WAIT};
      proxy_cache_lock_age ${LOCK_WAIT};
      proxy_cache_convert_head on;
      proxy_force_ranges on;
      proxy_buffering on;
      proxy_ignore_headers Cache-Control Expires Set-Cookie Vary;
      add_header X-Cache-Status $upstream_cache_status always;
      proxy_pass https://origin;`;
  return `# Written by the fleet bench (scripts/bench/fleet/nginx.ts).
worker_processes 1;
# The bench's temporary directory is root's alone.
user root;
pid ${p('nginx.pid')};
error_log ${p('error.log')} warn;
events { worker_connections 1024; }
http {
  client_body_temp_path ${p('tmp/body')};
  proxy_temp_path ${p('tmp/proxy')};
  fastcgi_temp_path ${p('tmp/fastcgi')};
  uwsgi_temp_path ${p('tmp/uwsgi')};
  scgi_temp_path ${p('tmp/scgi')};
  log_format mirror '$request_method $uri $status $upstream_cache_status $body_bytes_sent range="$http_range"';
  access_log ${c.accessLog} mirror;
  sendfile on;
  proxy_cache_path ${c.data} levels=1:2 keys_zone=registry:10m max_size=20g inactive=7d use_temp_path=off;
  upstream origin {
    server ${c.origin};
    keepalive 16;
  }
  server {
    listen ${c.listen} ssl;
    ssl_certificate ${c.certPath};
    ssl_certificate_key ${c.keyPath};
    client_max_body_size 1m;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Host ${c.origin};
    proxy_ssl_trusted_certificate ${c.originCaPath};
    proxy_ssl_verify on;
    proxy_ssl_name localhost;
    proxy_ssl_session_reuse on;
    proxy_read_timeout 300s;
    # A mirror is read-only.
    if ($request_method !~ ^(GET|HEAD)$) { return 405; }
    location ~ "^/v2/.+/blobs/sha256:[0-9a-f]{64}$" {${cached(true)}
    }
    location ~ "^/v2/.+/manifests/sha256:[0-9a-f]{64}$" {${cached(false)}
    }
    location /v2/ {
      proxy_cache off;
      proxy_buffering off;
      proxy_pass https://origin;
    }
    location / { return 404; }
  }
}
`;
}

/** The access log counted by method, kind (blobs, manifests by digest or tag), status and cache status. */
function countRequests(text: string): string {
  const keys: string[] = [];
  let ranged = 0;
  for (const line of text.split('\n')) {
    const m = /^(\S+) \/v2\/\S*?\/(blobs|manifests)\/(\S+) (\d+) (\S+) \d+ range="(.*)"$/.exec(line);
    if (!m) continue;
    const kind = m[2] === 'manifests' ? (m[3]!.startsWith('sha256:') ? 'manifests@digest' : 'manifests:tag') : 'blobs';
    keys.push(`${m[1]} ${kind} ${m[4]} ${m[5] === '-' ? 'uncached' : m[5]}`);
    if (m[6] && m[6] !== '-') ranged++;
  }
  return countKeys(keys) + (ranged ? `; ${ranged} with a Range` : '');
}

export async function createNginxCache(parent: string, originHost: string, originCaPath: string): Promise<PullThroughCache> {
  const home = await cacheHome(parent, 'nginx-');
  const conf = join(home.dir, 'nginx.conf');
  await writeFile(conf, nginxConfig({
    prefix: home.dir, listen: home.host, certPath: home.cert.certPath, keyPath: home.cert.keyPath,
    origin: originHost, originCaPath, data: home.data, accessLog: home.log,
  }));
  return cacheProcess({
    engine: 'nginx', home, env: process.env, countRequests,
    argv: [NGINX_BIN, '-p', `${home.dir}/`, '-c', conf, '-e', join(home.dir, 'error.log'), '-g', 'daemon off;'],
    dirs: ['body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((d) => join(home.dir, 'tmp', d)),
  });
}
