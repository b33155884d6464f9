'use strict';
// What the bundle gets for `import … from 'undici'` (scripts/build.mjs aliases it here): only
// the parts src/ uses — Agent, EnvHttpProxyAgent, interceptors.redirect, request — taken from
// undici's own files. undici's index.js also loads fetch, WebSocket, EventSource, the cache
// API, cookies and the mock agents at start-up (and its cookies module pulls in Node's
// internal copy of undici): ~0.1 s of CPU and several MB of heap on every agent start.
// Keep in step with undici's index.js (`request` = its makeDispatcher(api.request)); add an
// export here when src/ imports a new name from 'undici' (the build fails on a missing one).
const Dispatcher = require('undici/lib/dispatcher/dispatcher');
const Agent = require('undici/lib/dispatcher/agent');
const EnvHttpProxyAgent = require('undici/lib/dispatcher/env-http-proxy-agent');
const errors = require('undici/lib/core/errors');
const util = require('undici/lib/core/util');
const api = require('undici/lib/api');
const { getGlobalDispatcher, setGlobalDispatcher } = require('undici/lib/global');

Object.assign(Dispatcher.prototype, api);

function makeDispatcher(fn) {
  return (url, opts, handler) => {
    if (typeof opts === 'function') {
      handler = opts;
      opts = null;
    }
    if (!url || (typeof url !== 'string' && typeof url !== 'object' && !(url instanceof URL))) {
      throw new errors.InvalidArgumentError('invalid url');
    }
    if (opts != null && typeof opts !== 'object') {
      throw new errors.InvalidArgumentError('invalid opts');
    }
    if (opts && opts.path != null) {
      if (typeof opts.path !== 'string') {
        throw new errors.InvalidArgumentError('invalid opts.path');
      }
      let path = opts.path;
      if (!opts.path.startsWith('/')) {
        path = `/${path}`;
      }
      url = new URL(util.parseOrigin(url).origin + path);
    } else {
      if (!opts) {
        opts = typeof url === 'object' ? url : {};
      }
      url = util.parseURL(url);
    }
    const { agent, dispatcher = getGlobalDispatcher() } = opts;
    if (agent) {
      throw new errors.InvalidArgumentError('unsupported opts.agent. Did you mean opts.client?');
    }
    return fn.call(dispatcher, {
      ...opts,
      origin: url.origin,
      path: url.search ? `${url.pathname}${url.search}` : url.pathname,
      method: opts.method || (opts.body ? 'PUT' : 'GET'),
    }, handler);
  };
}

module.exports = {
  Dispatcher,
  Agent,
  EnvHttpProxyAgent,
  errors,
  interceptors: {
    redirect: require('undici/lib/interceptor/redirect'),
  },
  request: makeDispatcher(api.request),
  getGlobalDispatcher,
  setGlobalDispatcher,
};
