// Renders one GET of HashiCorp's Consul API double (npm @hashicorp/consul-api-double, through the
// @hashicorp/api-double renderer it is written for) and prints {"status", "headers", "body"} as one JSON line.
// Serves nothing and opens no socket: the tests only parse what Consul's own double answers.
//
//   node render.js NODE_MODULES_DIR /v1/health/service/web SEED
'use strict';
const fs = require('fs');
const path = require('path');
const { promisify } = require('util');

const [modules, url, seed] = process.argv.slice(2);
const log = console.log;
console.log = (...args) => console.error(...args); // the renderer logs each request on stdout
const double = require(path.join(modules, '@hashicorp', 'api-double'));
const dir = path.join(modules, '@hashicorp', 'consul-api-double');
// sizes fixed through the double's own env(): a few nodes, every check rendered, no artificial latency
const env = { CONSUL_NODE_COUNT: process.env.CONSUL_NODE_COUNT || '6', CONSUL_LATENCY: '0' };
const controller = double(seed || '1', dir, promisify(fs.readFile), env, path.resolve)();
const u = new URL(url, 'http://double.invalid');
const request = {
  path: u.pathname, url, method: 'GET', headers: {}, cookies: {}, body: '',
  query: Object.fromEntries(u.searchParams.entries()),
};
const response = {
  code: 200, headers: {},
  set(h) { Object.assign(this.headers, h); return this; },
  status(c) { this.code = c; return this; },
  send(body) { log(JSON.stringify({ status: this.code, headers: this.headers, body: String(body) })); },
};
controller.serve(request, response, () => { console.error(`no double for ${url}`); process.exit(2); });
